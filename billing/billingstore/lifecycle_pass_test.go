package billingstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/tenancy"
)

// TestScheduledPassEvaluatesOnlyOrgsThatMayHaveChanged: after an org is
// evaluated, the scheduled pass leaves it alone until its balance, plan,
// credit or debt says otherwise; a lapsed credit moves it without any
// posting; a new configuration reaches every org on the first pass.
func TestScheduledPassEvaluatesOnlyOrgsThatMayHaveChanged(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, nil)
	ctx := context.Background()
	changed := func() []int64 {
		t.Helper()
		ids, err := e.store.DebtOrgs(ctx, 0, 100, false, e.clock.now())
		require.NoError(t, err)
		return ids
	}
	silently := func(p billing.Posting) {
		t.Helper()
		p.OrgID, p.Currency, p.Actor, p.At = e.org, "USD", "system:test", e.clock.now()
		p.Reference = fmt.Sprintf("pass:%d", refSerial.Add(1))
		_, err := e.store.Post(ctx, p)
		require.NoError(t, err)
	}

	// A new account is due until evaluated.
	silently(billing.Posting{Kind: billing.KindTopUp, Amount: 5 * unit})
	require.Equal(t, []int64{e.org}, changed())
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtLowBalance, e.state())
	require.Empty(t, changed())
	all, err := e.store.DebtOrgs(ctx, 0, 100, true, e.clock.now())
	require.NoError(t, err)
	require.Equal(t, []int64{e.org}, all)

	// A posting no one told the lifecycle about: due, then evaluated.
	silently(billing.Posting{Kind: billing.KindCredit, Amount: 50 * unit, ExpiresAt: new(e.clock.now().Add(time.Hour))})
	require.Equal(t, []int64{e.org}, changed())
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtNormal, e.state())
	require.Empty(t, changed())
	e.clock.advance(30 * time.Minute)
	require.Empty(t, changed())

	// The credit lapses: usable falls back to 5 with no posting, and the
	// pass warns again.
	e.clock.advance(31 * time.Minute)
	require.Equal(t, []int64{e.org}, changed())
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtLowBalance, e.state())
	require.Empty(t, changed())

	// Another plan.
	_, err = e.db.Pool.Exec(ctx, `INSERT INTO plans (name, billing_mode, price_book_id, created_at, updated_at)
		SELECT 'starter', 'prepaid', price_book_id, $1, $1 FROM plans WHERE name = 'free'`, t0)
	require.NoError(t, err)
	_, err = e.db.Pool.Exec(ctx, `UPDATE orgs SET plan = 'starter' WHERE id = $1`, e.org)
	require.NoError(t, err)
	require.Equal(t, []int64{e.org}, changed())
	require.NoError(t, e.lc.Pass(ctx))
	require.Empty(t, changed())

	// In debt, the grace period runs out with time: due on every pass,
	// and suspended on the one after the grace.
	silently(billing.Posting{Kind: billing.KindCharge, Amount: -10 * unit})
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtInDebt, e.state())
	require.Equal(t, []int64{e.org}, changed())
	e.clock.advance(25 * time.Hour)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtSuspended, e.state())
	require.Equal(t, []int64{e.org}, changed())

	// Paid: resumed by the pass, then left alone.
	silently(billing.Posting{Kind: billing.KindTopUp, Amount: 100 * unit})
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtNormal, e.state())
	require.Empty(t, changed())

	// A restart with higher thresholds: its first pass evaluates every
	// org, so the org is warned though nothing about it changed.
	higher, err := billing.NewLifecycle(func() billing.LifecycleConfig {
		c := billing.DefaultLifecycleConfig()
		c.Thresholds = billing.DebtThresholds{Low: 200 * unit, Critical: 20 * unit}
		return c
	}(), billing.LifecycleDeps{Store: e.store, Suspender: e.susp, Clock: e.clock.now})
	require.NoError(t, err)
	require.NoError(t, higher.Pass(ctx))
	require.Equal(t, billing.DebtLowBalance, e.state())
}

// TestAnAdminWhoSuspendsADebtSuspendedNamespaceKeepsItSuspended: billing
// suspended the org's namespaces for debt; a platform admin then suspends
// one of them too (an abuse report). The payment resumes the others and
// leaves that one to the admin, whose resumption alone brings it back.
func TestAnAdminWhoSuspendsADebtSuspendedNamespaceKeepsItSuspended(t *testing.T) {
	t.Parallel()
	e := setupLifecycle(t, func(c *billing.LifecycleConfig) { c.Grace = 0 })
	ctx := context.Background()
	e.post(-unit)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtSuspended, e.state())
	require.Equal(t, []tenancy.NamespaceState{"suspended", "suspended", "suspended"}, e.nsStates())

	admin := tenancy.WithActor(ctx, tenancy.Actor{UserID: e.owner.ID + 1000, PlatformAdmin: true})
	_, err := e.svc.SuspendNamespace(admin, e.ns[1].ID, "abuse report")
	require.NoError(t, err)
	// Twice changes nothing more.
	_, err = e.svc.SuspendNamespace(admin, e.ns[1].ID, "abuse report")
	require.NoError(t, err)
	var takeovers int
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'namespace.suspend'
		AND target = $1 AND detail->>'taken_from' = 'system:billing'`, tenancy.NamespaceKey(e.ns[1].ID)).Scan(&takeovers))
	require.Equal(t, 1, takeovers)

	e.post(50 * unit)
	require.NoError(t, e.lc.Pass(ctx))
	require.Equal(t, billing.DebtNormal, e.state())
	require.Equal(t, []tenancy.NamespaceState{"active", "suspended", "active"}, e.nsStates())
	var holds int
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM billing_namespace_holds`).Scan(&holds))
	require.Zero(t, holds, "the released holds are gone, the admin's namespace's too")

	_, err = e.svc.ResumeNamespace(admin, e.ns[1].ID, "cleared")
	require.NoError(t, err)
	require.Equal(t, []tenancy.NamespaceState{"active", "active", "active"}, e.nsStates())
}
