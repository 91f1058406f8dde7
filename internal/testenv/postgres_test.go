package testenv_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/testenv"
	"github.com/tenantplane/tenantplane/schema/dbmigrate"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestPostgresMigrationRoundTrip(t *testing.T) {
	t.Parallel()
	db := testenv.EmptyPostgres(t)
	ctx := context.Background()

	m, err := dbmigrate.New(db.URL, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Close()) })

	versions, err := dbmigrate.Versions()
	require.NoError(t, err)
	require.NotEmpty(t, versions)

	st, err := m.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, uint(0), st.Current)
	require.Equal(t, versions, st.Pending)

	tables := func() []string {
		rows, err := db.Pool.Query(ctx, `SELECT tablename FROM pg_tables
			WHERE schemaname = 'public' AND tablename <> $1 ORDER BY 1`, dbmigrate.Table)
		require.NoError(t, err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return names
	}

	require.NoError(t, m.Up(ctx))
	afterUp := tables()
	require.Contains(t, afterUp, "audit_log")
	st, err = m.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, versions[len(versions)-1], st.Current)
	require.False(t, st.Dirty)
	require.Empty(t, st.Pending)

	require.NoError(t, m.Up(ctx), "a second up is a no-op")

	require.NoError(t, m.Down(ctx, 0))
	require.Empty(t, tables(), "down removes every table")

	require.NoError(t, m.Up(ctx))
	require.Equal(t, afterUp, tables(), "up after down gives the same tables")
}

func TestPostgresMigrationsRaceUnderLock(t *testing.T) {
	t.Parallel()
	db := testenv.EmptyPostgres(t)
	ctx := context.Background()

	const replicas = 4
	errs := make(chan error, replicas)
	for range replicas {
		go func() {
			m, err := dbmigrate.New(db.URL, nil)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = m.Close() }()
			errs <- m.Up(ctx)
		}()
	}
	for range replicas {
		require.NoError(t, <-errs)
	}
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'audit_log'`).Scan(&n))
	require.Equal(t, 1, n)
}

func TestPostgresDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := testenv.Postgres(t), testenv.Postgres(t)
	ctx := context.Background()
	_, err := a.Pool.Exec(ctx, `INSERT INTO audit_log (at, actor, action) VALUES (now(), 'user:1', 'test')`)
	require.NoError(t, err)
	var n int
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n))
	require.Zero(t, n)
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n))
	require.Equal(t, 1, n)
}
