package billingstore_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// model is an independent account of one org's money: the grants and
// cash a sequence of postings must leave.
type model struct {
	cash   int64
	grants []*modelGrant
}

type modelGrant struct {
	id        int
	remaining int64
	expires   *time.Time
}

func (m *model) credit() int64 {
	var sum int64
	for _, g := range m.grants {
		sum += g.remaining
	}
	return sum
}

func (m *model) usable(at time.Time) int64 {
	var sum int64
	for _, g := range m.grants {
		if g.expires == nil || g.expires.After(at) {
			sum += g.remaining
		}
	}
	return sum
}

// charge pays amount from the grants usable at at, earliest expiry first
// (those that never expire last), then from cash.
func (m *model) charge(amount int64, at time.Time) {
	order := slices.Clone(m.grants)
	slices.SortStableFunc(order, func(a, b *modelGrant) int {
		switch {
		case a.expires == nil && b.expires == nil:
			return cmp.Compare(a.id, b.id)
		case a.expires == nil:
			return 1
		case b.expires == nil:
			return -1
		}
		if c := a.expires.Compare(*b.expires); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	for _, g := range order {
		if amount == 0 {
			break
		}
		if g.remaining == 0 || (g.expires != nil && !g.expires.After(at)) {
			continue
		}
		use := min(amount, g.remaining)
		g.remaining -= use
		amount -= use
	}
	m.cash -= amount
}

func (m *model) expire(now time.Time) int {
	n := 0
	for _, g := range m.grants {
		if g.remaining > 0 && g.expires != nil && !g.expires.After(now) {
			g.remaining = 0
			n++
		}
	}
	return n
}

// TestBalanceEqualsLedgerProperty posts random sequences of credits with
// and without expiry, charges, top-ups, refunds, adjustments, repeated
// references and expiry passes, and checks after each step that the
// balance equals an independent model, and at the end that it equals the
// sum of the ledger read page by page and that Verify finds nothing.
func TestBalanceEqualsLedgerProperty(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	c := newClock(t0)
	s := billingstore.New(db.Pool, c.now)
	const orgs, steps = 8, 150
	for o := range orgs {
		rng := rand.New(rand.NewPCG(uint64(o), 99))
		org := newOrg(t, db.Pool, fmt.Sprintf("prop%d", o))
		m := &model{}
		at := t0
		var refs []billing.Posting
		for step := range steps {
			at = at.Add(time.Duration(rng.IntN(180)) * time.Minute)
			ref := fmt.Sprintf("o%d:s%d", o, step)
			var p billing.Posting
			switch k := rng.IntN(100); {
			case k < 20:
				p = posting(org, billing.KindCredit, 1+rng.Int64N(5_000_000), ref, at)
				if rng.IntN(3) > 0 {
					exp := at.Add(time.Duration(1+rng.IntN(72)) * time.Hour)
					p.ExpiresAt = &exp
				}
				if rng.IntN(4) == 0 {
					p.Kind = billing.KindGiftCode
				}
			case k < 60:
				p = posting(org, billing.KindCharge, -(1 + rng.Int64N(2_000_000)), ref, at)
			case k < 70:
				p = posting(org, billing.KindTopUp, 1+rng.Int64N(10_000_000), ref, at)
			case k < 76:
				p = posting(org, billing.KindRefund, -(1 + rng.Int64N(1_000_000)), ref, at)
			case k < 82:
				p = posting(org, billing.KindAdjustment, rng.Int64N(2_000_000)-1_000_000+1, ref, at)
				if p.Amount == 0 {
					p.Amount = 1
				}
			case k < 88:
				p = posting(org, billing.KindCharge, 1+rng.Int64N(100_000), ref, at) // a correction back
			case k < 94 && len(refs) > 0:
				again := refs[rng.IntN(len(refs))]
				out, err := s.Post(ctx, again)
				require.NoError(t, err)
				require.True(t, out.Duplicate, "a reference posts once")
				continue
			default:
				c.set(at)
				expired := func() (n int) {
					require.NoError(t, db.Pool.QueryRow(ctx,
						`SELECT count(*) FROM ledger_entries WHERE org_id = $1 AND kind = 'credit_expiry'`, org).Scan(&n))
					return n
				}
				before := expired()
				_, err := s.ExpireCredits(ctx, at) // other orgs' grants may expire too
				require.NoError(t, err)
				require.Equal(t, m.expire(at), expired()-before, "grants written off")
				continue
			}
			out, err := s.Post(ctx, p)
			require.NoError(t, err, "%+v", p)
			refs = append(refs, p)
			switch {
			case p.Kind == billing.KindCredit || p.Kind == billing.KindGiftCode:
				m.grants = append(m.grants, &modelGrant{id: len(m.grants), remaining: p.Amount, expires: p.ExpiresAt})
			case p.Kind == billing.KindCharge && p.Amount < 0:
				m.charge(-p.Amount, at)
			default:
				m.cash += p.Amount
			}
			bal, err := s.Balance(ctx, org, at, "USD")
			require.NoError(t, err)
			require.Equal(t, out.Balance.Cash, bal.Cash)
			require.Equal(t, []int64{m.cash, m.credit(), m.usable(at)}, []int64{bal.Cash, bal.Credit, bal.UsableCredit},
				"org %d step %d %s %d", o, step, p.Kind, p.Amount)
		}

		// The balance is the sum of the ledger, read in keyset pages.
		var cash, credit int64
		var before int64
		seen := map[int64]bool{}
		for {
			page, err := s.Entries(ctx, org, before, 7)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				require.False(t, seen[e.ID], "an entry on two pages")
				seen[e.ID] = true
				require.Equal(t, org, e.OrgID)
				if e.Account == billing.Credit {
					credit += e.Amount
				} else {
					cash += e.Amount
				}
			}
			require.True(t, slices.IsSortedFunc(page, func(a, b billing.Entry) int { return cmp.Compare(b.ID, a.ID) }), "newest first")
			before = page[len(page)-1].ID
		}
		bal, err := s.Balance(ctx, org, at, "USD")
		require.NoError(t, err)
		require.Equal(t, []int64{bal.Cash, bal.Credit}, []int64{cash, credit})
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE org_id = $1`, org).Scan(&n))
		require.Len(t, seen, n)

		grants, err := s.CreditGrants(ctx, org, false, 0)
		require.NoError(t, err)
		var left int64
		for _, g := range grants {
			require.Positive(t, g.Remaining)
			left += g.Remaining
		}
		require.Equal(t, bal.Credit, left)
		all, err := s.CreditGrants(ctx, org, true, 1000)
		require.NoError(t, err)
		require.Len(t, all, len(m.grants))
	}
	// The sequences did exercise what they are meant to.
	var expiries, splits int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE kind = 'credit_expiry'`).Scan(&expiries))
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE kind = 'charge' AND part > 0`).Scan(&splits))
	require.Positive(t, expiries)
	require.Positive(t, splits)
	mm, err := s.Verify(ctx)
	require.NoError(t, err)
	require.Empty(t, mm)
}
