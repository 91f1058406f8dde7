package billingstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

// balanceSpy records, for each org it is told of, the balance it reads
// then, from outside the rating transaction.
type balanceSpy struct {
	s    *billingstore.Store
	mu   sync.Mutex
	seen map[int64][]billing.Micros
	errs []error
}

func (b *balanceSpy) BalanceChanged(ctx context.Context, orgID int64) {
	bal, err := b.s.Balance(ctx, orgID, rt0, "USD")
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs = append(b.errs, err)
	b.seen[orgID] = append(b.seen[orgID], bal.Usable())
}

// The rater tells its observer of every org it charged, once per batch,
// after the batch committed: the observer already reads the charge.
func TestRaterTellsTheObserverOfEachOrgCharged(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	s := billingstore.New(db.Pool, func() time.Time { return rt0 })
	setupPrices(t, s)
	f := seedUsage(t, db.Pool, 3, 1, 11)
	spy := &balanceSpy{s: s, seen: map[int64][]billing.Micros{}}
	r := newRater(t, s, 1_000_000)
	r.ObserveBalances(spy)
	run, err := r.RateAll(ctx)
	require.NoError(t, err)
	require.Positive(t, run.Lines)

	want := map[int64][]billing.Micros{}
	for org, amount := range f.expected() {
		want[org] = []billing.Micros{-amount}
	}
	require.Len(t, want, len(f.orgs))
	require.Equal(t, want, spy.seen, "each org once, its charge already committed")
	for _, err := range spy.errs {
		require.NoError(t, err)
	}
}
