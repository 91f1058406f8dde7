package billingstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

var _ billing.ChargeStore = (*Store)(nil)

const (
	// qLockRating serialises rating: a second rater waits here for the
	// first to commit, then reads the watermark it left.
	qLockRating = `SELECT last_seq FROM rating_state FOR UPDATE`
	qSetRating  = `UPDATE rating_state SET last_seq = $1, rated_at = $2`
	// qUsageAfter reads the next rollup rows with the org of their
	// namespace and the price book of the org's plan; a row of a
	// namespace that is gone has org 0 and is passed over.
	qUsageAfter = `SELECT u.namespace_id, u.hour, u.resource, u.class, u.revision, u.quantity, u.seq,
	coalesce(n.org_id, 0), coalesce(p.price_book_id, 0)
FROM (SELECT * FROM usage_hourly WHERE seq > $1 ORDER BY seq LIMIT $2) u
LEFT JOIN namespaces n ON n.id = u.namespace_id
LEFT JOIN orgs o ON o.id = n.org_id
LEFT JOIN plans p ON p.name = o.plan
ORDER BY u.seq`
	qMonthToDate = `SELECT coalesce((SELECT sum(c.quantity) FROM charge_lines c
	WHERE c.org_id = k.org_id AND c.resource = k.resource AND c.class = k.class
	  AND c.hour >= k.month AND c.hour < k.month + interval '1 month'), 0)::bigint
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) WITH ORDINALITY AS k(org_id, resource, class, month, i)
ORDER BY k.i`
	qCreateChargeStaging = `CREATE TEMP TABLE IF NOT EXISTS charge_staging (
    key text, org_id bigint, namespace_id bigint, resource text, class text, hour timestamptz, revision int,
    quantity bigint, amount_micros bigint, currency text, price_book_version_id bigint, ledger_reference text,
    rated_at timestamptz, price_id bigint, unit_price_micros bigint, unit_divisor bigint, tier_start bigint,
    usage_seq bigint
) ON COMMIT DELETE ROWS`
	// qInsertStagedCharges writes the staged lines whose keys are new and
	// returns them.
	qInsertStagedCharges = `INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour, revision,
    quantity, amount_micros, currency, price_book_version_id, ledger_reference, rated_at, price_id,
    unit_price_micros, unit_divisor, tier_start, usage_seq)
SELECT key, org_id, namespace_id, resource, class, hour, revision, quantity, amount_micros, currency,
    price_book_version_id, ledger_reference, rated_at, price_id, unit_price_micros, unit_divisor, tier_start,
    usage_seq
FROM charge_staging ORDER BY usage_seq
ON CONFLICT (key) DO NOTHING
RETURNING key`
	qUnreference = `UPDATE charge_lines SET ledger_reference = NULL WHERE key = ANY($1)`
)

// chargeLineColumns are the columns rating writes, in charge_lines and in
// the staging table alike.
var chargeLineColumns = []string{"key", "org_id", "namespace_id", "resource", "class", "hour", "revision",
	"quantity", "amount_micros", "currency", "price_book_version_id", "ledger_reference", "rated_at", "price_id",
	"unit_price_micros", "unit_divisor", "tier_start", "usage_seq"}

// RatingReference is the ledger reference of the posting of an org's new
// lines in the rating batch that ends at seq.
func RatingReference(lastSeq, orgID int64) string {
	return "rating:" + strconv.FormatInt(lastSeq, 10) + ":org:" + strconv.FormatInt(orgID, 10)
}

// RateNext implements billing.ChargeStore.
func (s *Store) RateNext(ctx context.Context, limit int, rate billing.ChargeRateFunc) (billing.ChargeBatch, error) {
	if limit <= 0 {
		return billing.ChargeBatch{}, errcode.Invalid("limit", "must be positive")
	}
	var out billing.ChargeBatch
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = billing.ChargeBatch{}
		var last int64
		if err := tx.QueryRow(ctx, qLockRating).Scan(&last); err != nil {
			return storeErr("locking rating watermark", "rating state", err)
		}
		out.LastSeq = last
		rows, err := tx.Query(ctx, qUsageAfter, last, limit)
		if err != nil {
			return storeErr("reading usage rollups", "usage", err)
		}
		var all []billing.ChargeUsage
		var u billing.ChargeUsage
		if _, err := pgx.ForEachRow(rows, []any{&u.NamespaceID, &u.Hour, &u.Resource, &u.Class, &u.Revision,
			&u.Quantity, &u.Seq, &u.OrgID, &u.PriceBookID}, func() error {
			u.Hour = u.Hour.UTC()
			all = append(all, u)
			return nil
		}); err != nil {
			return storeErr("reading usage rollups", "usage", err)
		}
		if len(all) == 0 {
			return nil
		}
		out.Rows = len(all)
		out.LastSeq = all[len(all)-1].Seq
		use := all[:0:0]
		for _, r := range all {
			if r.OrgID != 0 && r.PriceBookID != 0 {
				use = append(use, r)
			}
		}
		lines, err := rate(ctx, use, func(ctx context.Context, keys []billing.ChargeMonthKey) (map[billing.ChargeMonthKey]int64, error) {
			return monthToDate(ctx, tx, keys)
		})
		if err != nil {
			return err
		}
		if err := s.writeCharges(ctx, tx, lines, &out); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, qSetRating, out.LastSeq, s.now())
		return storeErr("moving rating watermark", "rating state", err)
	})
	if err != nil {
		return billing.ChargeBatch{}, err
	}
	return out, nil
}

// monthToDate returns each key's rated usage in its month so far.
func monthToDate(ctx context.Context, db dbtx, keys []billing.ChargeMonthKey) (map[billing.ChargeMonthKey]int64, error) {
	return monthSums(ctx, db, qMonthToDate, keys)
}

// orgSum is what an org's lines of a batch add up to.
type orgSum struct {
	amount   int64
	currency string
	at       time.Time
	n        int
}

// writeCharges writes the lines whose keys are new and posts
// each org's new lines as one ledger charge whose reference they keep.
func (s *Store) writeCharges(ctx context.Context, tx pgx.Tx, lines []billing.ChargeLine, out *billing.ChargeBatch) error {
	if len(lines) == 0 {
		return nil
	}
	sums := map[int64]*orgSum{}
	for _, l := range lines {
		o := sums[l.OrgID]
		if o == nil {
			o = &orgSum{currency: l.Currency}
			sums[l.OrgID] = o
		}
		if l.Currency != o.currency {
			return fmt.Errorf("rating org %d: lines in %s and %s in one batch", l.OrgID, o.currency, l.Currency)
		}
		o.amount += l.Amount
		o.n++
		if end := l.Hour.Add(time.Hour); end.After(o.at) {
			o.at = end
		}
	}
	refOf := func(org int64) string {
		if sums[org].amount == 0 {
			return ""
		}
		return RatingReference(out.LastSeq, org)
	}
	row := func(i int) ([]any, error) {
		l := &lines[i]
		var ref *string
		if r := refOf(l.OrgID); r != "" {
			ref = &r
		}
		return []any{l.Key, l.OrgID, l.NamespaceID, l.Resource, l.Class, l.Hour, l.Revision, l.Quantity,
			l.Amount, l.Currency, nullID(l.PriceBookVersionID), ref, l.RatedAt, nullID(l.PriceID), l.UnitPrice,
			l.UnitDivisor, l.TierStart, l.UsageSeq}, nil
	}
	// Every key of a batch is new unless the watermark was moved back by
	// hand: the lines are copied straight into charge_lines, and if a key
	// is there already the unique index stops the copy, which is rolled
	// back to its savepoint and made again through the staging table that
	// skips the keys already written.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return storeErr("writing charge lines", "charge line", err)
	}
	_, err = sp.CopyFrom(ctx, pgx.Identifier{"charge_lines"}, chargeLineColumns, pgx.CopyFromSlice(len(lines), row))
	if err == nil {
		out.Lines = len(lines)
		if err := sp.Commit(ctx); err != nil {
			return storeErr("writing charge lines", "charge line", err)
		}
	} else {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			return storeErr("writing charge lines", "charge line", err)
		}
		if err := sp.Rollback(ctx); err != nil {
			return storeErr("writing charge lines", "charge line", err)
		}
		if err := s.writeStagedCharges(ctx, tx, lines, row, sums, out); err != nil {
			return err
		}
	}
	orgs := make([]int64, 0, len(sums))
	for org, o := range sums {
		if o.amount != 0 {
			orgs = append(orgs, org)
		}
	}
	sort.Slice(orgs, func(i, j int) bool { return orgs[i] < orgs[j] })
	ps := make([]billing.Posting, len(orgs))
	for i, org := range orgs {
		o := sums[org]
		out.Amount += o.amount
		ps[i] = billing.Posting{
			OrgID: org, Kind: billing.KindCharge, Amount: -o.amount, Currency: o.currency,
			Reference: RatingReference(out.LastSeq, org), Actor: "system:billing", At: o.at,
			Description: fmt.Sprintf("usage: %d charge lines", o.n),
		}
	}
	n, err := s.postCharges(ctx, tx, ps)
	if err != nil {
		return fmt.Errorf("posting charges: %w", err)
	}
	out.Postings = n
	return nil
}

// writeStagedCharges writes the lines whose keys are new through the
// staging table, and leaves the others out of the org sums that are
// posted.
func (s *Store) writeStagedCharges(ctx context.Context, tx pgx.Tx, lines []billing.ChargeLine,
	row func(int) ([]any, error), sums map[int64]*orgSum, out *billing.ChargeBatch) error {
	if _, err := tx.Exec(ctx, qCreateChargeStaging); err != nil {
		return storeErr("staging charge lines", "charge line", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"charge_staging"}, chargeLineColumns,
		pgx.CopyFromSlice(len(lines), row)); err != nil {
		return storeErr("staging charge lines", "charge line", err)
	}
	rows, err := tx.Query(ctx, qInsertStagedCharges)
	if err != nil {
		return storeErr("writing charge lines", "charge line", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return storeErr("writing charge lines", "charge line", err)
	}
	out.Lines = len(keys)
	if len(keys) == len(lines) {
		return nil
	}
	// Post only the new lines, and leave orgs whose new lines sum to zero
	// without a reference.
	isNew := make(map[string]bool, len(keys))
	for _, k := range keys {
		isNew[k] = true
	}
	for _, o := range sums {
		o.amount, o.n = 0, 0
	}
	for _, l := range lines {
		if isNew[l.Key] {
			sums[l.OrgID].amount += l.Amount
			sums[l.OrgID].n++
		}
	}
	var unref []string
	for _, l := range lines {
		if isNew[l.Key] && sums[l.OrgID].amount == 0 {
			unref = append(unref, l.Key)
		}
	}
	if _, err := tx.Exec(ctx, qUnreference, unref); err != nil {
		return storeErr("writing charge lines", "charge line", err)
	}
	return nil
}

// nullID is id, or NULL when it is 0.
func nullID(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}

const (
	qBooks    = `SELECT id, name, currency, created_at, updated_at FROM price_books ORDER BY id`
	qVersions = `SELECT id, price_book_id, note, effective_from, published_at, created_at
	FROM price_book_versions WHERE ($1::bigint = 0 OR price_book_id = $1) AND (NOT $2 OR published_at IS NOT NULL)
	ORDER BY price_book_id, id`
	qPrices = `SELECT p.id, p.version_id, p.resource, p.class, p.mode, p.unit_divisor,
	array_agg(coalesce(t.up_to_units, 0) ORDER BY t.idx), array_agg(t.unit_price_micros ORDER BY t.idx)
	FROM prices p JOIN price_tiers t ON t.price_id = p.id
	WHERE p.version_id = ANY($1)
	GROUP BY p.id ORDER BY p.version_id, p.resource, p.class`
)

// PriceCatalog implements billing.ChargeStore.
func (s *Store) PriceCatalog(ctx context.Context) (*billing.PriceCatalog, error) {
	books, err := s.PriceBooks(ctx)
	if err != nil {
		return nil, err
	}
	vs, err := versions(ctx, s.pool, 0, true)
	if err != nil {
		return nil, err
	}
	return billing.NewPriceCatalog(books, vs), nil
}

// versions reads the versions of book (0: every book), published ones
// only when published is true, with their prices.
func versions(ctx context.Context, db dbtx, book int64, published bool) ([]billing.PriceBookVersion, error) {
	rows, err := db.Query(ctx, qVersions, book, published)
	if err != nil {
		return nil, storeErr("reading price book versions", "price book version", err)
	}
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.PriceBookVersion, error) {
		var v billing.PriceBookVersion
		err := r.Scan(&v.ID, &v.PriceBookID, &v.Note, &v.EffectiveFrom, &v.PublishedAt, &v.CreatedAt)
		v.EffectiveFrom, v.PublishedAt, v.CreatedAt = utcPtr(v.EffectiveFrom), utcPtr(v.PublishedAt), v.CreatedAt.UTC()
		return v, err
	})
	if err != nil {
		return nil, storeErr("reading price book versions", "price book version", err)
	}
	if len(vs) == 0 {
		return vs, nil
	}
	ids := make([]int64, len(vs))
	at := make(map[int64]int, len(vs))
	for i, v := range vs {
		ids[i] = v.ID
		at[v.ID] = i
	}
	rows, err = db.Query(ctx, qPrices, ids)
	if err != nil {
		return nil, storeErr("reading prices", "price", err)
	}
	var p billing.Price
	var mode string
	var upTo, price []int64
	if _, err := pgx.ForEachRow(rows, []any{&p.ID, &p.VersionID, &p.Resource, &p.Class, &mode, &p.UnitDivisor, &upTo, &price}, func() error {
		q := p
		q.Mode = billing.PriceMode(mode)
		q.Tiers = make([]billing.Tier, len(upTo))
		for i := range upTo {
			q.Tiers[i] = billing.Tier{UpToUnits: upTo[i], UnitPrice: price[i]}
		}
		v := &vs[at[q.VersionID]]
		v.Prices = append(v.Prices, q)
		return nil
	}); err != nil {
		return nil, storeErr("reading prices", "price", err)
	}
	return vs, nil
}
