package graph

import (
	"context"
	"time"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/graph/generated"
	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/tenancy"
)

// BillingLedger reads an org's money and invoices for callers @auth has
// authorised; *billingstore.Store is one.
type BillingLedger interface {
	// OrgBalance is the org's balance with credit usable at now, zero in
	// its plan's currency before its first entry.
	OrgBalance(ctx context.Context, orgID int64, now time.Time) (billing.Balance, error)
	// Entries is a keyset page of the org's entries, newest first, below
	// beforeID when it is positive.
	Entries(ctx context.Context, orgID, beforeID int64, limit int) ([]billing.Entry, error)
	CreditGrants(ctx context.Context, orgID int64, all bool, limit int) ([]billing.CreditGrant, error)
	Invoice(ctx context.Context, orgID, id int64) (billing.Invoice, error)
	Invoices(ctx context.Context, orgID, beforeID int64, limit int) ([]billing.Invoice, error)
}

// GiftCodes creates, lists and redeems gift codes; *billing.GiftCodes is
// one.
type GiftCodes interface {
	Create(ctx context.Context, in billing.GiftCodeInput) (string, billing.GiftCode, error)
	Redeem(ctx context.Context, orgID int64, code string) (billing.GiftCodeRedemption, error)
	List(ctx context.Context, beforeID int64, limit int) ([]billing.GiftCode, error)
}

// keysetPage fetches one page newest first through fetch(beforeID,
// limit+1) and wraps it as a connection whose cursors are the IDs.
func keysetPage[T any](first *int, after *string, id func(T) int64, fetch func(beforeID int64, limit int) ([]T, error)) (tenancy.Connection[T], error) {
	q, err := pageArgs(first, after).Query()
	if err != nil {
		return tenancy.Connection[T]{}, err
	}
	var before int64
	if q.HasAfter {
		before = q.After.ID
		if before <= 0 {
			return tenancy.Connection[T]{}, nil
		}
	}
	items, err := fetch(before, q.Limit+1)
	if err != nil {
		return tenancy.Connection[T]{}, err
	}
	return tenancy.NewConnection(q, items, func(v T) tenancy.Cursor { return tenancy.Cursor{ID: id(v)} }), nil
}

// storeEdges presents a page a store read as the edges and page info of
// a connection type, each built only when the selection shows it.
func storeEdges[T, N, E any](ctx context.Context, c tenancy.Connection[T], present func(T) N, edge func(N, string) E) ([]E, *model.PageInfo) {
	_, edges, info := connection(ctx, storePage(c), func(e tenancy.Edge[T]) N { return present(e.Node) }, edge)
	return edges, info
}

func presentBalance(b billing.Balance) *model.OrgBalance {
	out := &model.OrgBalance{
		OrgID: b.OrgID, Currency: b.Currency, CashMicros: b.Cash, CreditMicros: b.Credit,
		UsableCreditMicros: b.UsableCredit, UsableMicros: b.Usable(),
	}
	if !b.UpdatedAt.IsZero() {
		t := b.UpdatedAt
		out.UpdatedAt = &t
	}
	return out
}

func presentEntry(e billing.Entry) *model.LedgerEntry {
	out := &model.LedgerEntry{
		ID: e.ID, Kind: string(e.Kind), Account: string(e.Account), AmountMicros: e.Amount, Currency: e.Currency,
		Reference: e.Reference, Description: e.Description, Actor: e.Actor, OccurredAt: e.OccurredAt, CreatedAt: e.CreatedAt,
	}
	if e.CreditGrantID > 0 {
		id := e.CreditGrantID
		out.CreditGrantID = &id
	}
	return out
}

func presentGrant(g billing.CreditGrant) *model.CreditGrant {
	return &model.CreditGrant{
		ID: g.ID, Source: string(g.Source), AmountMicros: g.Amount, RemainingMicros: g.Remaining,
		ExpiresAt: g.ExpiresAt, Reference: g.Reference, CreatedAt: g.CreatedAt,
	}
}

func presentInvoice(inv billing.Invoice) *model.Invoice {
	out := &model.Invoice{
		ID: inv.ID, OrgID: inv.OrgID, PeriodStart: inv.PeriodStart, PeriodEnd: inv.PeriodEnd,
		BillingMode: string(inv.BillingMode), Status: enum(string(inv.Status), model.AllInvoiceStatus),
		Currency: inv.Currency, SubtotalMicros: inv.Subtotal, TaxRateBps: int(inv.TaxRateBPS), TaxMicros: inv.Tax,
		TotalMicros: inv.Total, CreatedAt: inv.CreatedAt, FinalizedAt: inv.FinalizedAt, PaidAt: inv.PaidAt,
		VoidedAt: inv.VoidedAt, VoidReason: inv.VoidReason, Lines: make([]*model.InvoiceLine, len(inv.Lines)),
	}
	if n := inv.DisplayNumber(); n != "" {
		out.Number = &n
	}
	for i, l := range inv.Lines {
		out.Lines[i] = &model.InvoiceLine{
			NamespaceID: l.NamespaceID, Namespace: l.Namespace, Resource: l.Resource, Quantity: l.Quantity, AmountMicros: l.Amount,
		}
	}
	return out
}

func presentGiftCode(g billing.GiftCode) *model.GiftCode {
	out := &model.GiftCode{
		ID: g.ID, AmountMicros: g.Amount, Currency: g.Currency, ExpiresAt: g.ExpiresAt, MaxRedemptions: g.MaxRedemptions,
		Redemptions: g.Redemptions, Note: g.Note, CreatedBy: g.CreatedBy, CreatedAt: g.CreatedAt,
	}
	if g.CreditValidFor > 0 {
		s := int64(g.CreditValidFor / time.Second)
		out.CreditValidForSeconds = &s
	}
	return out
}

// setBillingComplexity prices the billing lists at their page size.
func setBillingComplexity(c *generated.ComplexityRoot) {
	c.Query.LedgerEntries = func(child int, _ int64, first *int, _ *string) int { return pageCost(child, first) }
	c.Query.Invoices = func(child int, _ int64, first *int, _ *string) int { return pageCost(child, first) }
	c.Query.GiftCodes = func(child int, first *int, _ *string) int { return pageCost(child, first) }
	c.Query.CreditGrants = func(child int, _ int64, _ *bool) int { return pageCost(child, nil) }
}
