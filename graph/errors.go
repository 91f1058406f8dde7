package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// presentError is the one place where errors become what clients see:
// extensions.code from errcode, the domain error's message (and field),
// and for anything else "internal error" with the request id, the real
// error going to the log only.
func presentError(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		out := &gqlerror.Error{Path: graphql.GetPath(ctx)}
		var gqlErr *gqlerror.Error
		if errors.As(err, &gqlErr) {
			out.Path, out.Locations = gqlErr.Path, gqlErr.Locations
		}
		if e, ok := errcode.As(err); ok && e.Code != errcode.Internal {
			out.Message = e.Message
			out.Extensions = map[string]any{"code": string(e.Code)}
			if e.Field != "" {
				out.Extensions["field"] = e.Field
			}
			return out
		}
		if gqlErr != nil && gqlErr.Err == nil {
			// Raised by gqlgen itself: the document or the variables are
			// wrong (parse, validation, complexity, depth).
			out.Message = gqlErr.Message
			if strings.HasPrefix(out.Message, "json request body could not be decoded") {
				out.Message = "request body is not valid JSON"
			}
			out.Extensions = map[string]any{"code": string(errcode.BadUserInput)}
			return out
		}
		reqID := requestIDFrom(ctx)
		log.Error("graphql internal error", "err", err, "request_id", reqID, "path", out.Path.String())
		out.Message = internalMessage(reqID)
		out.Extensions = map[string]any{"code": string(errcode.Internal), "requestId": reqID}
		return out
	}
}

// recoverPanic turns a panic in a resolver into an INTERNAL error, logging
// the stack with the request id.
func recoverPanic(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, v any) error {
		log.Error("graphql panic", "panic", fmt.Sprint(v), "request_id", requestIDFrom(ctx), "stack", string(debug.Stack()))
		return fmt.Errorf("panic: %v", v)
	}
}
