package stripepay

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tenantplane/tenantplane/billing"
)

// Metadata keys we set on Stripe objects to find our own again.
const (
	metaOrg     = "tenantplane_org_id"
	metaTopUp   = "tenantplane_topup_id"
	metaInvoice = "tenantplane_invoice_id"
	metaPurpose = "tenantplane_purpose"

	purposeTopUp   = "top_up"
	purposeInvoice = "invoice"
)

// api makes the calls to Stripe, each with the idempotency key its caller
// derives from our own ids, so a retry never creates a second object.
type api struct {
	c *client.API
}

func newAPI(cfg Config) *api {
	bc := &stripe.BackendConfig{
		HTTPClient:        cfg.HTTPClient,
		MaxNetworkRetries: stripe.Int64(2),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	if cfg.APIURL != "" {
		bc.URL = stripe.String(strings.TrimSuffix(cfg.APIURL, "/"))
	}
	backends := &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, bc),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, bc),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, bc),
	}
	return &api{c: client.New(cfg.APIKey, backends)}
}

func params(ctx context.Context, key string) stripe.Params {
	p := stripe.Params{Context: ctx}
	if key != "" {
		p.SetIdempotencyKey(key)
	}
	return p
}

func (a *api) createCustomer(ctx context.Context, orgID int64, email, name string) (string, error) {
	p := &stripe.CustomerParams{Params: params(ctx, fmt.Sprintf("tenantplane-customer-%d", orgID)),
		Email: stripe.String(email), Name: stripe.String(name)}
	p.AddMetadata(metaOrg, strconv.FormatInt(orgID, 10))
	c, err := a.c.Customers.New(p)
	if err != nil {
		return "", fmt.Errorf("creating stripe customer of org %d: %w", orgID, err)
	}
	return c.ID, nil
}

func (a *api) updateCustomer(ctx context.Context, id, email, name string) error {
	p := &stripe.CustomerParams{Params: params(ctx, ""), Email: stripe.String(email), Name: stripe.String(name)}
	if _, err := a.c.Customers.Update(id, p); err != nil {
		return fmt.Errorf("updating stripe customer %s: %w", id, err)
	}
	return nil
}

type checkout struct {
	customerID   string
	topUpID      int64
	orgID        int64
	minor        int64
	currency     string
	success      string
	cancel       string
	saveForLater bool
}

func topUpMetadata(orgID, topUpID int64) map[string]string {
	return map[string]string{
		metaOrg:     strconv.FormatInt(orgID, 10),
		metaTopUp:   strconv.FormatInt(topUpID, 10),
		metaPurpose: purposeTopUp,
	}
}

func (a *api) createCheckout(ctx context.Context, in checkout) (id, url string, err error) {
	meta := topUpMetadata(in.orgID, in.topUpID)
	p := &stripe.CheckoutSessionParams{
		Params:            params(ctx, fmt.Sprintf("tenantplane-topup-%d", in.topUpID)),
		Mode:              stripe.String(string(stripe.CheckoutSessionModePayment)),
		Customer:          stripe.String(in.customerID),
		ClientReferenceID: stripe.String(strconv.FormatInt(in.topUpID, 10)),
		SuccessURL:        stripe.String(in.success),
		CancelURL:         stripe.String(in.cancel),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{
			Quantity: stripe.Int64(1),
			PriceData: &stripe.CheckoutSessionLineItemPriceDataParams{
				Currency:    stripe.String(strings.ToLower(in.currency)),
				UnitAmount:  stripe.Int64(in.minor),
				ProductData: &stripe.CheckoutSessionLineItemPriceDataProductDataParams{Name: stripe.String("Balance top-up")},
			},
		}},
		PaymentIntentData: &stripe.CheckoutSessionPaymentIntentDataParams{Metadata: meta},
	}
	if in.saveForLater {
		p.PaymentIntentData.SetupFutureUsage = stripe.String(string(stripe.PaymentIntentSetupFutureUsageOffSession))
	}
	p.Metadata = meta
	s, err := a.c.CheckoutSessions.New(p)
	if err != nil {
		return "", "", fmt.Errorf("creating checkout session of top-up %d: %w", in.topUpID, err)
	}
	return s.ID, s.URL, nil
}

// offSession charges a saved payment method without the payer present.
type offSession struct {
	customerID      string
	paymentMethodID string
	topUpID         int64
	orgID           int64
	minor           int64
	currency        string
}

func (a *api) chargeOffSession(ctx context.Context, in offSession) (*stripe.PaymentIntent, error) {
	p := &stripe.PaymentIntentParams{
		Params:        params(ctx, fmt.Sprintf("tenantplane-autotopup-%d", in.topUpID)),
		Amount:        stripe.Int64(in.minor),
		Currency:      stripe.String(strings.ToLower(in.currency)),
		Customer:      stripe.String(in.customerID),
		PaymentMethod: stripe.String(in.paymentMethodID),
		OffSession:    stripe.Bool(true),
		Confirm:       stripe.Bool(true),
		Metadata:      topUpMetadata(in.orgID, in.topUpID),
	}
	pi, err := a.c.PaymentIntents.New(p)
	if err != nil {
		return nil, fmt.Errorf("charging automatic top-up %d: %w", in.topUpID, err)
	}
	return pi, nil
}

// invoiceItem is one item of an invoice pushed to Stripe; key tells it
// apart within its invoice for its idempotency key.
type invoiceItem struct {
	key         string
	description string
	minor       int64
}

func (a *api) pushInvoice(ctx context.Context, customerID string, inv billing.Invoice, items []invoiceItem, daysUntilDue int64) (*stripe.Invoice, error) {
	meta := map[string]string{
		metaOrg:     strconv.FormatInt(inv.OrgID, 10),
		metaInvoice: strconv.FormatInt(inv.ID, 10),
		metaPurpose: purposeInvoice,
	}
	cur := strings.ToLower(inv.Currency)
	ip := &stripe.InvoiceParams{
		Params:                      params(ctx, fmt.Sprintf("tenantplane-invoice-%d", inv.ID)),
		Customer:                    stripe.String(customerID),
		Currency:                    stripe.String(cur),
		CollectionMethod:            stripe.String(string(stripe.InvoiceCollectionMethodSendInvoice)),
		DaysUntilDue:                stripe.Int64(daysUntilDue),
		AutoAdvance:                 stripe.Bool(false),
		PendingInvoiceItemsBehavior: stripe.String("exclude"),
		Description:                 stripe.String(inv.DisplayNumber()),
		Metadata:                    meta,
	}
	si, err := a.c.Invoices.New(ip)
	if err != nil {
		return nil, fmt.Errorf("creating stripe invoice of invoice %d: %w", inv.ID, err)
	}
	for _, it := range items {
		p := &stripe.InvoiceItemParams{
			Params:      params(ctx, fmt.Sprintf("tenantplane-invoice-%d-item-%s", inv.ID, it.key)),
			Customer:    stripe.String(customerID),
			Invoice:     stripe.String(si.ID),
			Amount:      stripe.Int64(it.minor),
			Currency:    stripe.String(cur),
			Description: stripe.String(it.description),
			Metadata:    meta,
		}
		if _, err := a.c.InvoiceItems.New(p); err != nil {
			return nil, fmt.Errorf("adding item %s of invoice %d: %w", it.key, inv.ID, err)
		}
	}
	fp := &stripe.InvoiceFinalizeInvoiceParams{Params: params(ctx, fmt.Sprintf("tenantplane-invoice-%d-finalize", inv.ID)),
		AutoAdvance: stripe.Bool(false)}
	fin, err := a.c.Invoices.FinalizeInvoice(si.ID, fp)
	if err != nil {
		return nil, fmt.Errorf("finalizing stripe invoice %s of invoice %d: %w", si.ID, inv.ID, err)
	}
	return fin, nil
}

// remotePayment is a PaymentIntent as reconciliation sees it.
type remotePayment struct {
	ID       string
	Status   string
	Amount   int64 // received, smallest unit
	Currency string
	Metadata map[string]string
	Created  time.Time
}

// remoteEvent is an event as reconciliation sees it.
type remoteEvent struct {
	ID      string
	Type    string
	Created time.Time
}

func (a *api) listPayments(ctx context.Context, since time.Time, limit int) ([]remotePayment, error) {
	p := &stripe.PaymentIntentListParams{ListParams: stripe.ListParams{Context: ctx, Limit: stripe.Int64(100)},
		CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: since.Unix()}}
	var out []remotePayment
	it := a.c.PaymentIntents.List(p)
	for it.Next() && len(out) < limit {
		pi := it.PaymentIntent()
		out = append(out, remotePayment{ID: pi.ID, Status: string(pi.Status), Amount: pi.AmountReceived,
			Currency: string(pi.Currency), Metadata: pi.Metadata, Created: time.Unix(pi.Created, 0).UTC()})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing stripe payment intents: %w", err)
	}
	return out, nil
}

func (a *api) listEvents(ctx context.Context, since time.Time, types []string, limit int) ([]remoteEvent, error) {
	p := &stripe.EventListParams{ListParams: stripe.ListParams{Context: ctx, Limit: stripe.Int64(100)},
		CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: since.Unix()}, Types: stripe.StringSlice(types)}
	var out []remoteEvent
	it := a.c.Events.List(p)
	for it.Next() && len(out) < limit {
		e := it.Event()
		out = append(out, remoteEvent{ID: e.ID, Type: string(e.Type), Created: time.Unix(e.Created, 0).UTC()})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("listing stripe events: %w", err)
	}
	return out, nil
}
