package billingstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/tenancy"
)

// TestAnOrgStaysBilledInOneCurrency: neither moving an org to a plan
// priced in another currency than its account's, nor pointing a plan at
// a price book in another currency than its orgs' accounts, is allowed; a
// charge in the other currency would stop every org's rating at its batch.
func TestAnOrgStaysBilledInOneCurrency(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	s := billingstore.New(db.Pool, func() time.Time { return t0 })
	by := tenancy.Actor{UserID: 1}
	audit := func() billing.AdminAudit {
		return billing.AdminAudit{By: by, Action: "org.plan", Target: "org", Detail: map[string]any{}}
	}
	eur, err := s.CreatePriceBook(ctx, billing.PriceBook{Name: "euro", Currency: "EUR"}, by)
	require.NoError(t, err)
	_, err = s.SetPlan(ctx, billing.Plan{Name: "euro", BillingMode: billing.PlanPrepaid, PriceBookID: eur.ID}, by)
	require.NoError(t, err)

	billed := newOrg(t, db.Pool, "billed")
	_, err = s.Post(ctx, posting(billed, billing.KindTopUp, 10*unit, "top-up:1", t0))
	require.NoError(t, err)
	_, err = s.SetOrgPlan(ctx, billed, "euro", audit())
	require.Equal(t, errcode.Conflict, errcode.Of(err), "%v", err)
	require.ErrorContains(t, err, "priced in EUR; the org is billed in USD")
	var plan string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT plan FROM orgs WHERE id = $1`, billed).Scan(&plan))
	require.Equal(t, "free", plan)

	// An org with no account yet may move: its first charge opens the
	// account in the plan's currency.
	fresh := newOrg(t, db.Pool, "fresh")
	old, err := s.SetOrgPlan(ctx, fresh, "euro", audit())
	require.NoError(t, err)
	require.Equal(t, "free", old)

	// The free plan has an org billed in USD: it cannot be priced in EUR.
	free, err := s.Plan(ctx, "free")
	require.NoError(t, err)
	free.PriceBookID = eur.ID
	_, err = s.SetPlan(ctx, free, by)
	require.Equal(t, errcode.Conflict, errcode.Of(err), "%v", err)
	require.ErrorContains(t, err, "is billed in USD; that price book is in EUR")
	// The euro plan's orgs have no account: it may change its book.
	usd, err := s.CreatePriceBook(ctx, billing.PriceBook{Name: "dollar", Currency: "USD"}, by)
	require.NoError(t, err)
	_, err = s.SetPlan(ctx, billing.Plan{Name: "euro", BillingMode: billing.PlanPrepaid, PriceBookID: usd.ID}, by)
	require.NoError(t, err)
}
