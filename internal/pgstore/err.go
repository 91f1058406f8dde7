package pgstore

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// Err turns a storage error into a domain error about what (such as
// "invoice"): no rows → NOT_FOUND, unique violation → CONFLICT, foreign
// key violation → NOT_FOUND (a referenced row is missing). A domain error
// passes through as it is; anything else is wrapped with op and stays
// internal, so its SQL never reaches a client.
func Err(op, what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return errcode.New(errcode.NotFound, what+" not found")
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pe.Code {
		case "23505":
			return errcode.New(errcode.Conflict, what+" already exists")
		case "23503":
			return errcode.New(errcode.NotFound, "a referenced object was not found")
		}
	}
	if _, ok := errcode.As(err); ok {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}
