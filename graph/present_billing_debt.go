package graph

import (
	"context"
	"strings"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// Debt answers the debt lifecycle's queries and mutations over ids the
// caller was authorized for; *billing.Lifecycle is one.
type Debt interface {
	Debt(ctx context.Context, orgID int64) (billing.DebtReport, error)
	Transitions(ctx context.Context, orgID, before int64, limit int) ([]billing.DebtTransition, error)
	SetWebhook(ctx context.Context, orgID int64, url string, by tenancy.Actor) (billing.WebhookEndpoint, string, error)
	RemoveWebhook(ctx context.Context, orgID int64, by tenancy.Actor) error
	Webhook(ctx context.Context, orgID int64) (billing.WebhookEndpoint, error)
	SetSpendingLimit(ctx context.Context, nsID int64, amount *billing.Micros, by tenancy.Actor) error
	SpendingLimit(ctx context.Context, nsID int64) (billing.SpendingLimit, error)
	SpendingLimits(ctx context.Context, orgID int64) ([]billing.SpendingLimit, error)
}

var _ Debt = (*billing.Lifecycle)(nil)

// errNoDebt answers debt fields on a server built without the lifecycle.
var errNoDebt = errcode.New(errcode.NotFound, "billing is not enabled on this server")

// debt returns the lifecycle, or errNoDebt.
func (r *Resolver) debtOrErr() (Debt, error) {
	if r.debt == nil {
		return nil, errNoDebt
	}
	return r.debt, nil
}

func presentOrgDebt(orgID int64, rep billing.DebtReport) *model.OrgDebt {
	st, f := rep.Status, rep.Forecast
	out := &model.OrgDebt{
		OrgID: orgID, State: model.DebtState(strings.ToUpper(string(st.State))), Since: st.Since,
		DebtSince: st.DebtSince, SuspendedAt: st.SuspendedAt, UsableMicros: st.Usable, Currency: st.Currency,
		BurnRateMicrosPerHour: f.BurnPerHour, SuspensionAt: f.SuspensionAt,
	}
	if f.TimeLeft != nil {
		secs := int64(f.TimeLeft.Seconds())
		out.TimeLeftSeconds = &secs
	}
	return out
}

func presentDebtTransition(t billing.DebtTransition) *model.DebtTransition {
	out := &model.DebtTransition{ID: t.ID, Event: string(t.Event), From: string(t.From), To: string(t.To),
		AmountMicros: t.Usable, Currency: t.Currency, Cause: t.Cause, At: t.At}
	if t.NamespaceID != 0 {
		id := t.NamespaceID
		out.NamespaceID = &id
	}
	return out
}

func presentBillingWebhook(w billing.WebhookEndpoint) *model.BillingWebhook {
	return &model.BillingWebhook{URL: w.URL, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
}

func presentSpendingLimit(l billing.SpendingLimit) *model.SpendingLimit {
	return &model.SpendingLimit{NamespaceID: l.NamespaceID, LimitMicros: l.Amount, Currency: l.Currency,
		MonthSpendMicros: l.MonthSpend, Reached: l.Held, UpdatedAt: l.UpdatedAt}
}
