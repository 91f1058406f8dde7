package billingstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

var (
	_ billing.PriceBookStore = (*Store)(nil)
	_ billing.ChargeReader   = (*Store)(nil)
	_ billing.PreviewStore   = (*Store)(nil)
)

const (
	qBook       = `SELECT id, name, currency, created_at, updated_at FROM price_books WHERE id = $1`
	qInsertBook = `INSERT INTO price_books (name, currency, created_at, updated_at) VALUES ($1, $2, $3, $3)
	RETURNING id, name, currency, created_at, updated_at`
	qInsertVersion = `INSERT INTO price_book_versions (price_book_id, note, created_at) VALUES ($1, $2, $3) RETURNING id`
	qVersion       = `SELECT id, price_book_id, note, effective_from, published_at, created_at
	FROM price_book_versions WHERE id = $1`
	qLockVersion = `SELECT price_book_id, published_at IS NOT NULL FROM price_book_versions WHERE id = $1 FOR UPDATE`
	qCopyPrices  = `WITH src AS (
    SELECT id, resource, class, mode, unit_divisor FROM prices WHERE version_id = $1
), ins AS (
    INSERT INTO prices (version_id, resource, class, mode, unit_divisor)
    SELECT $2, resource, class, mode, unit_divisor FROM src ORDER BY resource, class
    RETURNING id, resource, class
)
INSERT INTO price_tiers (price_id, idx, up_to_units, unit_price_micros)
SELECT ins.id, t.idx, t.up_to_units, t.unit_price_micros
FROM ins JOIN src USING (resource, class) JOIN price_tiers t ON t.price_id = src.id`
	qDeletePrice = `DELETE FROM prices WHERE version_id = $1 AND resource = $2 AND class = $3`
	qInsertPrice = `INSERT INTO prices (version_id, resource, class, mode, unit_divisor) VALUES ($1, $2, $3, $4, $5)
	RETURNING id`
	qInsertTiers = `INSERT INTO price_tiers (price_id, idx, up_to_units, unit_price_micros)
	SELECT $1, i - 1, nullif(u, 0), p FROM unnest($2::bigint[], $3::bigint[]) WITH ORDINALITY AS t(u, p, i)`
	qPublish = `UPDATE price_book_versions SET effective_from = $2, published_at = $3 WHERE id = $1`
	qPlans   = `SELECT name, display_name, billing_mode, price_book_id, cpu_millicores, memory_mib, storage_mib,
	gpus, pods, namespaces, created_at, updated_at FROM plans`
	qPlansAll = qPlans + ` ORDER BY name`
	qPlan     = qPlans + ` WHERE name = $1`
	// qLockPlan keeps orgs from moving to the plan while it changes.
	qLockPlan = `SELECT name FROM plans WHERE name = $1 FOR UPDATE`
	// qPlanOrgsBilledElse finds an org on the plan whose account is in
	// another currency than price book $2's.
	qPlanOrgsBilledElse = `SELECT o.id, a.currency, b.currency FROM orgs o JOIN billing_accounts a ON a.org_id = o.id
	JOIN price_books b ON b.id = $2 WHERE o.plan = $1 AND a.currency <> b.currency LIMIT 1`
	qUpsertPlan = `INSERT INTO plans (name, display_name, billing_mode, price_book_id, cpu_millicores, memory_mib,
	storage_mib, gpus, pods, namespaces, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
	ON CONFLICT (name) DO UPDATE SET display_name = EXCLUDED.display_name, billing_mode = EXCLUDED.billing_mode,
	price_book_id = EXCLUDED.price_book_id, cpu_millicores = EXCLUDED.cpu_millicores,
	memory_mib = EXCLUDED.memory_mib, storage_mib = EXCLUDED.storage_mib, gpus = EXCLUDED.gpus,
	pods = EXCLUDED.pods, namespaces = EXCLUDED.namespaces, updated_at = EXCLUDED.updated_at`
)

func scanBook(r pgx.Row) (billing.PriceBook, error) {
	var b billing.PriceBook
	err := r.Scan(&b.ID, &b.Name, &b.Currency, &b.CreatedAt, &b.UpdatedAt)
	b.CreatedAt, b.UpdatedAt = b.CreatedAt.UTC(), b.UpdatedAt.UTC()
	return b, err
}

// PriceBooks implements billing.PriceBookStore.
func (s *Store) PriceBooks(ctx context.Context) ([]billing.PriceBook, error) {
	rows, err := s.pool.Query(ctx, qBooks)
	if err != nil {
		return nil, storeErr("reading price books", "price book", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.PriceBook, error) { return scanBook(r) })
	return out, storeErr("reading price books", "price book", err)
}

// PriceBook implements billing.PriceBookStore.
func (s *Store) PriceBook(ctx context.Context, id int64) (billing.PriceBook, error) {
	b, err := scanBook(s.pool.QueryRow(ctx, qBook, id))
	return b, storeErr("reading price book", "price book", err)
}

// CreatePriceBook implements billing.PriceBookStore.
func (s *Store) CreatePriceBook(ctx context.Context, b billing.PriceBook, by tenancy.Actor) (billing.PriceBook, error) {
	var out billing.PriceBook
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now := s.now()
		var err error
		if out, err = scanBook(tx.QueryRow(ctx, qInsertBook, b.Name, b.Currency, now)); err != nil {
			return storeErr("creating price book", "price book", err)
		}
		return writeAudit(ctx, tx, audit(by, now, "billing.price_book.create", "price_book:"+strconv.FormatInt(out.ID, 10),
			map[string]any{"name": b.Name, "currency": b.Currency}))
	})
	return out, err
}

// PriceBookVersions implements billing.PriceBookStore.
func (s *Store) PriceBookVersions(ctx context.Context, bookID int64) ([]billing.PriceBookVersion, error) {
	if _, err := s.PriceBook(ctx, bookID); err != nil {
		return nil, err
	}
	return versions(ctx, s.pool, bookID, false)
}

// PriceBookVersion implements billing.PriceBookStore.
func (s *Store) PriceBookVersion(ctx context.Context, id int64) (billing.PriceBookVersion, error) {
	return version(ctx, s.pool, id)
}

func version(ctx context.Context, db dbtx, id int64) (billing.PriceBookVersion, error) {
	var v billing.PriceBookVersion
	err := db.QueryRow(ctx, qVersion, id).Scan(&v.ID, &v.PriceBookID, &v.Note, &v.EffectiveFrom, &v.PublishedAt, &v.CreatedAt)
	if err != nil {
		return v, storeErr("reading price book version", "price book version", err)
	}
	vs, err := versions(ctx, db, v.PriceBookID, false)
	if err != nil {
		return v, err
	}
	for _, w := range vs {
		if w.ID == id {
			return w, nil
		}
	}
	return v, errcode.New(errcode.NotFound, "price book version not found")
}

// CreatePriceBookVersion implements billing.PriceBookStore.
func (s *Store) CreatePriceBookVersion(ctx context.Context, bookID int64, note string, copyFrom int64, by tenancy.Actor) (billing.PriceBookVersion, error) {
	var out billing.PriceBookVersion
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now := s.now()
		var id int64
		if err := tx.QueryRow(ctx, qInsertVersion, bookID, note, now).Scan(&id); err != nil {
			return storeErr("creating price book version", "price book", err)
		}
		if copyFrom != 0 {
			var srcBook int64
			var published bool
			if err := tx.QueryRow(ctx, qLockVersion, copyFrom).Scan(&srcBook, &published); err != nil {
				return storeErr("reading price book version", "price book version", err)
			}
			if srcBook != bookID {
				return errcode.Invalid("copyFrom", "must be a version of the same price book")
			}
			if _, err := tx.Exec(ctx, qCopyPrices, copyFrom, id); err != nil {
				return storeErr("copying prices", "price", err)
			}
		}
		if err := writeAudit(ctx, tx, audit(by, now, "billing.price_book_version.create", "price_book_version:"+strconv.FormatInt(id, 10),
			map[string]any{"priceBookId": bookID, "copyFrom": copyFrom, "note": note})); err != nil {
			return err
		}
		var err error
		out, err = version(ctx, tx, id)
		return err
	})
	return out, err
}

// lockDraft locks a version and fails with CONFLICT unless it is a draft.
func lockDraft(ctx context.Context, tx pgx.Tx, id int64) error {
	var book int64
	var published bool
	if err := tx.QueryRow(ctx, qLockVersion, id).Scan(&book, &published); err != nil {
		return storeErr("locking price book version", "price book version", err)
	}
	if published {
		return errcode.New(errcode.Conflict, "the version is published: its prices cannot change")
	}
	return nil
}

// SetPrice implements billing.PriceBookStore.
func (s *Store) SetPrice(ctx context.Context, p billing.Price, by tenancy.Actor) (billing.PriceBookVersion, error) {
	var out billing.PriceBookVersion
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockDraft(ctx, tx, p.VersionID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, qDeletePrice, p.VersionID, p.Resource, p.Class); err != nil {
			return storeErr("replacing price", "price", err)
		}
		var id int64
		if err := tx.QueryRow(ctx, qInsertPrice, p.VersionID, p.Resource, p.Class, string(p.Mode), p.UnitDivisor).Scan(&id); err != nil {
			return storeErr("writing price", "price", err)
		}
		upTo, price := make([]int64, len(p.Tiers)), make([]int64, len(p.Tiers))
		tiers := make([]map[string]any, len(p.Tiers))
		for i, t := range p.Tiers {
			upTo[i], price[i] = t.UpToUnits, t.UnitPrice
			tiers[i] = map[string]any{"upToUnits": t.UpToUnits, "unitPrice": billing.FormatMicros(t.UnitPrice)}
		}
		if _, err := tx.Exec(ctx, qInsertTiers, id, upTo, price); err != nil {
			return storeErr("writing price tiers", "price", err)
		}
		now := s.now()
		if err := writeAudit(ctx, tx, audit(by, now, "billing.price.set", "price_book_version:"+strconv.FormatInt(p.VersionID, 10),
			map[string]any{"resource": p.Resource, "class": p.Class, "mode": string(p.Mode), "unitDivisor": p.UnitDivisor, "tiers": tiers})); err != nil {
			return err
		}
		var err error
		out, err = version(ctx, tx, p.VersionID)
		return err
	})
	return out, err
}

// DeletePrice implements billing.PriceBookStore.
func (s *Store) DeletePrice(ctx context.Context, versionID int64, resource, class string, by tenancy.Actor) (billing.PriceBookVersion, error) {
	var out billing.PriceBookVersion
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockDraft(ctx, tx, versionID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, qDeletePrice, versionID, resource, class)
		if err != nil {
			return storeErr("deleting price", "price", err)
		}
		if tag.RowsAffected() == 0 {
			return errcode.New(errcode.NotFound, "price not found")
		}
		if err := writeAudit(ctx, tx, audit(by, s.now(), "billing.price.delete", "price_book_version:"+strconv.FormatInt(versionID, 10),
			map[string]any{"resource": resource, "class": class})); err != nil {
			return err
		}
		out, err = version(ctx, tx, versionID)
		return err
	})
	return out, err
}

// PublishPriceBookVersion implements billing.PriceBookStore.
func (s *Store) PublishPriceBookVersion(ctx context.Context, id int64, effectiveFrom, now time.Time, by tenancy.Actor) (billing.PriceBookVersion, error) {
	var out billing.PriceBookVersion
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockDraft(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, qPublish, id, effectiveFrom.UTC(), now.UTC()); err != nil {
			return storeErr("publishing price book version", "price book version with that effective time", err)
		}
		if err := writeAudit(ctx, tx, audit(by, s.now(), "billing.price_book_version.publish", "price_book_version:"+strconv.FormatInt(id, 10),
			map[string]any{"effectiveFrom": effectiveFrom.UTC().Format(time.RFC3339)})); err != nil {
			return err
		}
		var err error
		out, err = version(ctx, tx, id)
		return err
	})
	return out, err
}

func scanPlan(r pgx.Row) (billing.Plan, error) {
	var p billing.Plan
	var mode string
	q := &p.Quota
	err := r.Scan(&p.Name, &p.DisplayName, &mode, &p.PriceBookID, &q.CPUMillicores, &q.MemoryMiB, &q.StorageMiB,
		&q.GPUs, &q.Pods, &q.Namespaces, &p.CreatedAt, &p.UpdatedAt)
	p.BillingMode = billing.PlanBillingMode(mode)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

// Plans implements billing.PriceBookStore.
func (s *Store) Plans(ctx context.Context) ([]billing.Plan, error) {
	rows, err := s.pool.Query(ctx, qPlansAll)
	if err != nil {
		return nil, storeErr("reading plans", "plan", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Plan, error) { return scanPlan(r) })
	return out, storeErr("reading plans", "plan", err)
}

// Plan implements billing.PriceBookStore.
func (s *Store) Plan(ctx context.Context, name string) (billing.Plan, error) {
	p, err := scanPlan(s.pool.QueryRow(ctx, qPlan, name))
	return p, storeErr("reading plan", "plan", err)
}

// SetPlan implements billing.PriceBookStore.
func (s *Store) SetPlan(ctx context.Context, p billing.Plan, by tenancy.Actor) (billing.Plan, error) {
	var out billing.Plan
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qLockPlan, p.Name); err != nil {
			return storeErr("locking plan", "plan", err)
		}
		// Its orgs are billed in one currency: a charge in another would
		// stop every org's rating at its batch.
		var org int64
		var billed, priced string
		err := tx.QueryRow(ctx, qPlanOrgsBilledElse, p.Name, p.PriceBookID).Scan(&org, &billed, &priced)
		if err == nil {
			return errcode.New(errcode.Conflict, fmt.Sprintf("org %d on plan %q is billed in %s; that price book is in %s", org, p.Name, billed, priced))
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return storeErr("checking plan currency", "plan", err)
		}
		now := s.now()
		q := p.Quota
		if _, err := tx.Exec(ctx, qUpsertPlan, p.Name, p.DisplayName, string(p.BillingMode), p.PriceBookID,
			q.CPUMillicores, q.MemoryMiB, q.StorageMiB, q.GPUs, q.Pods, q.Namespaces, now); err != nil {
			return storeErr("writing plan", "plan", err)
		}
		if err := writeAudit(ctx, tx, audit(by, now, "billing.plan.set", "plan:"+p.Name,
			map[string]any{"billingMode": string(p.BillingMode), "priceBookId": p.PriceBookID, "quota": q})); err != nil {
			return err
		}
		out, err = scanPlan(tx.QueryRow(ctx, qPlan, p.Name))
		return storeErr("reading plan", "plan", err)
	})
	return out, err
}

const (
	qChargeCols = `SELECT id, key, org_id, namespace_id, resource, class, hour, revision, quantity, amount_micros,
	currency, coalesce(price_book_version_id, 0), coalesce(price_id, 0), unit_price_micros, unit_divisor,
	tier_start, coalesce(ledger_reference, ''), usage_seq, rated_at FROM charge_lines`
	qCharge     = qChargeCols + ` WHERE id = $1`
	qOrgCharges = qChargeCols + ` WHERE org_id = $1 AND hour >= $2 AND hour < $3 AND id > $4 ORDER BY id LIMIT $5`
	// qChargeSamples reads the minute rows behind a line: revision 0 is
	// the hour as it closed, a correction is the hour as it is now.
	qChargeSamples = `SELECT minute, source, key, quantity FROM usage_minute
	WHERE namespace_id = $1 AND resource = $2 AND class = $3 AND minute >= $4 AND minute < $4 + interval '1 hour'
	ORDER BY minute, source, key`
)

func scanCharge(r pgx.Row) (billing.ChargeLine, error) {
	var l billing.ChargeLine
	err := r.Scan(&l.ID, &l.Key, &l.OrgID, &l.NamespaceID, &l.Resource, &l.Class, &l.Hour, &l.Revision, &l.Quantity,
		&l.Amount, &l.Currency, &l.PriceBookVersionID, &l.PriceID, &l.UnitPrice, &l.UnitDivisor, &l.TierStart,
		&l.LedgerReference, &l.UsageSeq, &l.RatedAt)
	l.Hour, l.RatedAt = l.Hour.UTC(), l.RatedAt.UTC()
	return l, err
}

// Charge implements billing.ChargeReader.
func (s *Store) Charge(ctx context.Context, id int64) (billing.ChargeLine, error) {
	l, err := scanCharge(s.pool.QueryRow(ctx, qCharge, id))
	return l, storeErr("reading charge", "charge", err)
}

// OrgCharges implements billing.ChargeReader.
func (s *Store) OrgCharges(ctx context.Context, orgID int64, from, to time.Time, afterID int64, limit int) ([]billing.ChargeLine, error) {
	rows, err := s.pool.Query(ctx, qOrgCharges, orgID, from, to, afterID, limit)
	if err != nil {
		return nil, storeErr("reading charges", "charge", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.ChargeLine, error) { return scanCharge(r) })
	return out, storeErr("reading charges", "charge", err)
}

// ChargeSamples implements billing.ChargeReader.
func (s *Store) ChargeSamples(ctx context.Context, l billing.ChargeLine) ([]billing.ChargeSample, error) {
	rows, err := s.pool.Query(ctx, qChargeSamples, l.NamespaceID, l.Resource, l.Class, l.Hour)
	if err != nil {
		return nil, storeErr("reading usage samples", "usage", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.ChargeSample, error) {
		var c billing.ChargeSample
		err := r.Scan(&c.Minute, &c.Source, &c.Key, &c.Quantity)
		c.Minute = c.Minute.UTC()
		return c, err
	})
	return out, storeErr("reading usage samples", "usage", err)
}

const (
	qPreviewUsage = `SELECT u.namespace_id, u.hour, u.resource, u.class, sum(u.quantity)::bigint, max(u.seq), n.org_id
FROM usage_hourly u
JOIN namespaces n ON n.id = u.namespace_id
JOIN orgs o ON o.id = n.org_id
JOIN plans p ON p.name = o.plan
WHERE p.price_book_id = $1 AND u.hour >= $2 AND u.hour < $3
GROUP BY u.hour, u.namespace_id, u.resource, u.class, n.org_id
ORDER BY u.hour, u.namespace_id, u.resource, u.class`
	qChargedByBook = `SELECT c.org_id, sum(c.amount_micros)::bigint FROM charge_lines c
JOIN orgs o ON o.id = c.org_id JOIN plans p ON p.name = o.plan
WHERE p.price_book_id = $1 AND c.hour >= $2 AND c.hour < $3
GROUP BY c.org_id`
	qMonthToDateBefore = `SELECT coalesce((SELECT sum(c.quantity) FROM charge_lines c
	WHERE c.org_id = k.org_id AND c.resource = k.resource AND c.class = k.class
	  AND c.hour >= k.month AND c.hour < least(k.month + interval '1 month', $5)), 0)::bigint
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) WITH ORDINALITY AS k(org_id, resource, class, month, i)
ORDER BY k.i`
)

// PreviewUsage implements billing.PreviewStore.
func (s *Store) PreviewUsage(ctx context.Context, bookID int64, from, to time.Time) ([]billing.ChargeUsage, error) {
	rows, err := s.pool.Query(ctx, qPreviewUsage, bookID, from, to)
	if err != nil {
		return nil, storeErr("reading usage", "usage", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.ChargeUsage, error) {
		u := billing.ChargeUsage{PriceBookID: bookID}
		err := r.Scan(&u.NamespaceID, &u.Hour, &u.Resource, &u.Class, &u.Quantity, &u.Seq, &u.OrgID)
		u.Hour = u.Hour.UTC()
		return u, err
	})
	return out, storeErr("reading usage", "usage", err)
}

// ChargedByBook implements billing.PreviewStore.
func (s *Store) ChargedByBook(ctx context.Context, bookID int64, from, to time.Time) (map[int64]billing.Micros, error) {
	rows, err := s.pool.Query(ctx, qChargedByBook, bookID, from, to)
	if err != nil {
		return nil, storeErr("reading charges", "charge", err)
	}
	out := map[int64]billing.Micros{}
	var org, sum int64
	_, err = pgx.ForEachRow(rows, []any{&org, &sum}, func() error { out[org] = sum; return nil })
	return out, storeErr("reading charges", "charge", err)
}

// MonthToDateBefore implements billing.PreviewStore.
func (s *Store) MonthToDateBefore(ctx context.Context, keys []billing.ChargeMonthKey, t time.Time) (map[billing.ChargeMonthKey]int64, error) {
	return monthSums(ctx, s.pool, qMonthToDateBefore, keys, t)
}

// monthSums runs q, a query over the arrays of keys' orgs, resources,
// classes and months ($1..$4, then more) that returns one sum per key in
// the order of keys, and maps each key to its sum.
func monthSums(ctx context.Context, db dbtx, q string, keys []billing.ChargeMonthKey, more ...any) (map[billing.ChargeMonthKey]int64, error) {
	orgs, res, cls, months := make([]int64, len(keys)), make([]string, len(keys)), make([]string, len(keys)), make([]time.Time, len(keys))
	for i, k := range keys {
		orgs[i], res[i], cls[i], months[i] = k.OrgID, k.Resource, k.Class, k.Month
	}
	rows, err := db.Query(ctx, q, append([]any{orgs, res, cls, months}, more...)...)
	if err != nil {
		return nil, storeErr("reading usage of the month", "charge line", err)
	}
	sums, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, storeErr("reading usage of the month", "charge line", err)
	}
	if len(sums) != len(keys) {
		return nil, fmt.Errorf("reading usage of the month: %d sums for %d keys", len(sums), len(keys))
	}
	out := make(map[billing.ChargeMonthKey]int64, len(keys))
	for i, k := range keys {
		out[k] = sums[i]
	}
	return out, nil
}
