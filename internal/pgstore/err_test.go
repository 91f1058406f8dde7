package pgstore_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/pgstore"
)

func TestErr(t *testing.T) {
	t.Parallel()
	require.NoError(t, pgstore.Err("reading", "org", nil))
	cases := []struct {
		name string
		in   error
		code errcode.Code
		msg  string
	}{
		{"no rows", fmt.Errorf("scan: %w", pgx.ErrNoRows), errcode.NotFound, "org not found"},
		{"unique", &pgconn.PgError{Code: "23505", Message: "duplicate key value violates unique constraint"}, errcode.Conflict, "org already exists"},
		{"foreign key", &pgconn.PgError{Code: "23503"}, errcode.NotFound, "a referenced object was not found"},
		{"domain error", errcode.Invalid("name", "too long"), errcode.BadUserInput, "name: too long"},
		{"other", &pgconn.PgError{Code: "42P01", Message: `relation "orgs" does not exist`}, errcode.Internal, `reading: : relation "orgs" does not exist (SQLSTATE 42P01)`},
	}
	for _, c := range cases {
		err := pgstore.Err("reading", "org", c.in)
		require.Equal(t, c.code, errcode.Of(err), c.name)
		require.Equal(t, c.msg, err.Error(), c.name)
		if c.code == errcode.Internal {
			require.True(t, errors.Is(err, c.in), "the cause stays in the chain for logs")
		}
	}
}
