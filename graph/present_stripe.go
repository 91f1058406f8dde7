package graph

import (
	"context"
	"strings"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/stripepay"
	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

var errNoPayments = errcode.New(errcode.NotFound, "payments are not configured on this server")

// paymentsFor returns the payments dependency, or NOT_FOUND when the
// server runs without Stripe.
func (r *Resolver) paymentsFor(context.Context) (Payments, error) {
	if r.payments == nil {
		return nil, errNoPayments
	}
	return r.payments, nil
}

// callerKey names the signed-in caller for the audit log, "user:42".
func callerKey(ctx context.Context) string {
	if p, ok := PrincipalFrom(ctx); ok && p.UserID > 0 {
		return tenancy.UserKey(p.UserID)
	}
	return "anonymous"
}

func presentTopUp(t stripepay.TopUp) *model.TopUp {
	return &model.TopUp{ID: t.ID, OrgID: t.OrgID, Amount: billing.FormatMicros(t.Amount), Currency: t.Currency,
		Status: model.TopUpStatus(strings.ToUpper(string(t.Status))), CheckoutURL: t.CheckoutURL, CreatedAt: t.CreatedAt}
}

func presentAutoTopUp(a stripepay.AutoTopUp) *model.AutoTopUp {
	return &model.AutoTopUp{OrgID: a.OrgID, Enabled: a.Enabled, Threshold: billing.FormatMicros(a.Threshold),
		Amount: billing.FormatMicros(a.Amount), PaymentMethodID: a.PaymentMethodID}
}

func presentReconciliation(r stripepay.Reconciliation) *model.StripeReconciliation {
	out := &model.StripeReconciliation{StartedAt: r.StartedAt, Since: r.Since, Payments: r.Payments, Events: r.Events,
		Discrepancies: make([]*model.StripeDiscrepancy, 0, len(r.Discrepancies))}
	for _, d := range r.Discrepancies {
		md := &model.StripeDiscrepancy{Kind: d.Kind, ObjectID: d.ObjectID, Detail: d.Detail}
		if d.OrgID > 0 {
			org := d.OrgID
			md.OrgID = &org
		}
		out.Discrepancies = append(out.Discrepancies, md)
	}
	return out
}
