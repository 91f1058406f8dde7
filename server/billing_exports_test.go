package server

import (
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/billingstore"
	"github.com/tenantplane/tenantplane/internal/testenv"
)

func TestExportCommand(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	store := billingstore.New(db.Pool, func() time.Time { return t0 })
	var org int64
	require.NoError(t, db.Pool.QueryRow(ctx, `INSERT INTO orgs (name, created_at, updated_at) VALUES ('acme', $1, $1) RETURNING id`, t0).Scan(&org))
	amounts := []int64{12_500_000, -1_234_567, -1, 7}
	for i, a := range amounts {
		kind := billing.KindTopUp
		if a < 0 {
			kind = billing.KindCharge
		}
		_, err := store.Post(ctx, billing.Posting{OrgID: org, Kind: kind, Amount: a, Currency: "USD",
			Reference: fmt.Sprintf("ref:%d", i), Actor: "system:test", At: t0.Add(time.Duration(i) * time.Hour), Description: "a, \"b\""})
		require.NoError(t, err)
	}

	out := filepath.Join(t.TempDir(), "ledger.csv.gz")
	code, stdout, stderr := run(t, "export", "ledger", "--database-url", db.URL, "--from", "2026-11-01", "--to", "2026-11-02",
		"--org", fmt.Sprint(org), "--gzip", "--output", out)
	require.Equal(t, 0, code, stderr)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "exported 4 ledger rows")
	f, err := os.Open(out)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	recs, err := csv.NewReader(zr).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 1+len(amounts))
	require.Equal(t, "amount", recs[0][6])
	for i, a := range amounts {
		got, err := billing.ParseMicros(recs[i+1][6])
		require.NoError(t, err)
		require.Equal(t, a, got)
		require.Equal(t, `a, "b"`, recs[i+1][10])
	}
	left, err := filepath.Glob(filepath.Join(filepath.Dir(out), ".*partial*"))
	require.NoError(t, err)
	require.Empty(t, left, "no partial file is left behind")

	code, stdout, stderr = run(t, "export", "balances", "--database-url", db.URL, "--format", "jsonl")
	require.Equal(t, 0, code, stderr)
	var bal map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(stdout)), &bal))
	require.Equal(t, "11.265439", bal["cash"])

	var audited int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'billing.export' AND actor = 'system:cli'
		AND (detail->>'complete')::boolean`).Scan(&audited))
	require.Equal(t, 2, audited)

	// Errors name the filter; no output file appears.
	bad := filepath.Join(t.TempDir(), "bad.csv")
	code, _, stderr = run(t, "export", "ledger", "--database-url", db.URL, "--from", "2026-11-02", "--to", "2026-11-01", "--output", bad)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "to: must be after from")
	_, err = os.Stat(bad)
	require.ErrorIs(t, err, os.ErrNotExist)
	code, _, stderr = run(t, "export", "ledger", "--from", "2026-11-01", "--to", "2026-11-02")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--database-url")
	code, _, stderr = run(t, "export", "ledger", "--database-url", db.URL, "--export-gzip-level", "12")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "gzip level")
}
