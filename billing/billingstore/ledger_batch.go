package billingstore

import (
	"context"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// The set-based path of the ledger, for rating: it posts many charges in a
// few statements, with the invariants of post: a reference is posted once
// and by one org, an org is billed in one currency, a negative charge is
// paid from the grants usable at its time, earliest expiry first, then
// cash, and each balance row moves by exactly the sum of its new entries.
// Account rows are locked in org order before the grants, as post locks
// them.
const (
	qEnsureAccounts = `INSERT INTO billing_accounts (org_id, currency, created_at, updated_at)
	SELECT org_id, currency, $3, $3 FROM unnest($1::bigint[], $2::text[]) AS a(org_id, currency)
	ON CONFLICT (org_id) DO NOTHING`
	qLockAccounts = `SELECT org_id, currency FROM billing_accounts WHERE org_id = ANY($1) ORDER BY org_id FOR UPDATE`
	qPriorRefs    = `SELECT reference, org_id FROM ledger_entries WHERE reference = ANY($1) AND part = 0`
	// qOpenGrants locks every grant of the orgs with money left; which of
	// them a charge may use depends on its time and is decided in Go.
	qOpenGrants = `SELECT id, org_id, remaining_micros, expires_at FROM credit_grants
	WHERE org_id = ANY($1) AND remaining_micros > 0
	ORDER BY org_id, expires_at NULLS LAST, id FOR UPDATE`
	qUseGrants = `UPDATE credit_grants g SET remaining_micros = g.remaining_micros + d.delta
	FROM unnest($1::bigint[], $2::bigint[]) AS d(id, delta) WHERE g.id = d.id`
	qMoveBalances = `UPDATE billing_accounts a SET cash_micros = a.cash_micros + d.cash,
	credit_micros = a.credit_micros + d.credit, entry_count = a.entry_count + d.n, updated_at = $5
	FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS d(org_id, cash, credit, n)
	WHERE a.org_id = d.org_id`
)

// ledgerEntryColumns are the columns postCharges copies into
// ledger_entries.
var ledgerEntryColumns = []string{"org_id", "kind", "account", "credit_grant_id", "amount_micros", "currency",
	"reference", "part", "description", "actor", "occurred_at", "created_at"}

type openGrant struct {
	id, org   int64
	remaining int64
	expires   *time.Time
}

// postCharges posts ps, charges only, inside tx as post would one by one
// in their order, and returns how many were new. Postings whose reference
// is already in the ledger change nothing.
func (s *Store) postCharges(ctx context.Context, tx pgx.Tx, ps []billing.Posting) (int, error) {
	if len(ps) == 0 {
		return 0, nil
	}
	now := s.now()
	refs := make([]string, len(ps))
	inBatch := make(map[string]bool, len(ps))
	var orgs []int64
	orgCurrency := map[int64]string{}
	for i, p := range ps {
		if err := p.Validate(); err != nil {
			return 0, err
		}
		if p.Kind != billing.KindCharge {
			return 0, errcode.Invalid("kind", "only charges are posted in batches")
		}
		if inBatch[p.Reference] {
			return 0, errcode.New(errcode.Conflict, "reference "+p.Reference+" twice in one batch")
		}
		inBatch[p.Reference] = true
		refs[i] = p.Reference
		if _, ok := orgCurrency[p.OrgID]; !ok {
			orgCurrency[p.OrgID] = p.Currency
			orgs = append(orgs, p.OrgID)
		}
	}
	sort.Slice(orgs, func(i, j int) bool { return orgs[i] < orgs[j] })
	currencies := make([]string, len(orgs))
	for i, o := range orgs {
		currencies[i] = orgCurrency[o]
	}
	if _, err := tx.Exec(ctx, qEnsureAccounts, orgs, currencies, now); err != nil {
		return 0, storeErr("creating billing accounts", "org", err)
	}
	rows, err := tx.Query(ctx, qLockAccounts, orgs)
	if err != nil {
		return 0, storeErr("locking billing accounts", "billing account", err)
	}
	billed := map[int64]string{}
	var org int64
	var cur string
	if _, err := pgx.ForEachRow(rows, []any{&org, &cur}, func() error { billed[org] = cur; return nil }); err != nil {
		return 0, storeErr("locking billing accounts", "billing account", err)
	}
	rows, err = tx.Query(ctx, qPriorRefs, refs)
	if err != nil {
		return 0, storeErr("reading ledger entries", "ledger entry", err)
	}
	prior := map[string]int64{}
	var ref string
	if _, err := pgx.ForEachRow(rows, []any{&ref, &org}, func() error { prior[ref] = org; return nil }); err != nil {
		return 0, storeErr("reading ledger entries", "ledger entry", err)
	}
	rows, err = tx.Query(ctx, qOpenGrants, orgs)
	if err != nil {
		return 0, storeErr("listing credit grants", "credit grant", err)
	}
	grants := map[int64][]*openGrant{}
	var g openGrant
	if _, err := pgx.ForEachRow(rows, []any{&g.id, &g.org, &g.remaining, &g.expires}, func() error {
		c := g
		grants[c.org] = append(grants[c.org], &c)
		return nil
	}); err != nil {
		return 0, storeErr("listing credit grants", "credit grant", err)
	}

	var entries [][]any
	type move struct{ cash, credit, n int64 }
	moves := map[int64]*move{}
	used := map[int64]int64{}
	add := func(p billing.Posting, part int, account billing.Account, grant, amount int64, at time.Time) {
		var g *int64
		if grant != 0 {
			g = &grant
		}
		entries = append(entries, []any{p.OrgID, string(p.Kind), string(account), g, amount, p.Currency,
			p.Reference, int16(part), p.Description, p.Actor, at, now})
		m := moves[p.OrgID]
		if m == nil {
			m = &move{}
			moves[p.OrgID] = m
		}
		if account == billing.Credit {
			m.credit += amount
		} else {
			m.cash += amount
		}
		m.n++
	}
	posted := 0
	for _, p := range ps {
		if o, ok := prior[p.Reference]; ok {
			if o != p.OrgID {
				return 0, errcode.New(errcode.Conflict, "reference already used by another org")
			}
			continue
		}
		if c := billed[p.OrgID]; c != p.Currency {
			return 0, errcode.New(errcode.Conflict, "the org is billed in "+c+", not "+p.Currency)
		}
		posted++
		at := p.At.UTC()
		if p.Amount > 0 {
			add(p, 0, billing.Cash, 0, p.Amount, at)
			continue
		}
		due, part := -p.Amount, 0
		for _, g := range grants[p.OrgID] {
			if due == 0 {
				break
			}
			if g.remaining == 0 || g.expires != nil && !g.expires.After(at) {
				continue
			}
			use := min(due, g.remaining)
			g.remaining -= use
			used[g.id] -= use
			add(p, part, billing.Credit, g.id, -use, at)
			part++
			due -= use
		}
		if due > 0 {
			add(p, part, billing.Cash, 0, -due, at)
		}
	}
	if posted == 0 {
		return 0, nil
	}
	if len(used) > 0 {
		ids := make([]int64, 0, len(used))
		for id := range used {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		deltas := make([]int64, len(ids))
		for i, id := range ids {
			deltas[i] = used[id]
		}
		if _, err := tx.Exec(ctx, qUseGrants, ids, deltas); err != nil {
			return 0, storeErr("using credit grants", "credit grant", err)
		}
	}
	// The references were checked above with every account of the batch
	// locked; the unique (reference, part) still stops a second copy.
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ledger_entries"}, ledgerEntryColumns, pgx.CopyFromRows(entries)); err != nil {
		return 0, storeErr("writing ledger entries", "ledger entry", err)
	}
	mo := make([]int64, 0, len(moves))
	for o := range moves {
		mo = append(mo, o)
	}
	sort.Slice(mo, func(i, j int) bool { return mo[i] < mo[j] })
	cash, credit, n := make([]int64, len(mo)), make([]int64, len(mo)), make([]int64, len(mo))
	for i, o := range mo {
		cash[i], credit[i], n[i] = moves[o].cash, moves[o].credit, moves[o].n
	}
	if _, err := tx.Exec(ctx, qMoveBalances, mo, cash, credit, n, now); err != nil {
		return 0, storeErr("updating balances", "billing account", err)
	}
	return posted, nil
}

// PostCharges posts charges in one transaction through the set-based
// path; rating uses it inside its own transaction, and tests compare it
// with Post.
func (s *Store) PostCharges(ctx context.Context, ps []billing.Posting) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		n, err = s.postCharges(ctx, tx, ps)
		return err
	})
	return n, err
}
