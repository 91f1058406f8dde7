package tenancy

import "github.com/tenantplane/tenantplane/internal/errcode"

// Sentinels for errors.Is: every errcode error with the same code matches.
var (
	ErrNotFound        = &errcode.Error{Code: errcode.NotFound}
	ErrConflict        = &errcode.Error{Code: errcode.Conflict}
	ErrUnauthenticated = &errcode.Error{Code: errcode.Unauthenticated}
	ErrForbidden       = &errcode.Error{Code: errcode.Forbidden}
	ErrRateLimited     = &errcode.Error{Code: errcode.RateLimited}
	ErrBadUserInput    = &errcode.Error{Code: errcode.BadUserInput}
)
