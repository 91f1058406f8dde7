package export

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/reqmeta"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/authz"
)

// Action is the permission an HTTP caller needs, on the platform.
const Action authz.Action = "org.export"

// Authenticator turns a bearer token into the user it belongs to;
// *tenancy.Service is one.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (tenancy.Principal, error)
}

// Authorizer decides whether a user may act; *authz.Authorizer is one.
type Authorizer interface {
	Check(ctx context.Context, userID int64, action authz.Action, domains ...authz.Domain) error
}

// Handler serves GET /admin/exports/{kind}: the caller's bearer token must
// belong to a user whom the policy grants Action on the platform. Errors
// before the first byte are JSON, {"error": {"code", "message", "field",
// "requestId"}}, with a stable code; an error after it aborts the
// response, so that a truncated export never looks complete.
type Handler struct {
	exp   *Exporter
	authn Authenticator
	authz Authorizer
	log   *slog.Logger
	// writeTimeout is how long each chunk may take to write; the
	// server's own write timeout is extended by it as the export goes.
	writeTimeout time.Duration
	// proxies are the peers whose X-Forwarded-For names the client.
	proxies reqmeta.Proxies
}

// NewHandler returns the HTTP handler of exports. writeTimeout is how
// long a client may take to take each chunk of the output; proxies are
// the peers trusted to name the client address for the audit log.
func NewHandler(exp *Exporter, authn Authenticator, az Authorizer, writeTimeout time.Duration, proxies reqmeta.Proxies, log *slog.Logger) (*Handler, error) {
	if exp == nil || authn == nil || az == nil {
		return nil, errors.New("export handler: exporter, authenticator and authorizer are required")
	}
	if writeTimeout <= 0 {
		return nil, errors.New("export handler: write timeout must be positive")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{exp: exp, authn: authn, authz: az, log: log, writeTimeout: writeTimeout, proxies: proxies}, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := reqmeta.RequestID(r.Header.Get(reqmeta.Header))
	w.Header().Set(reqmeta.Header, reqID)
	ctx := r.Context()
	p, err := h.authenticate(ctx, r)
	if err != nil {
		h.fail(w, reqID, err)
		return
	}
	if err := h.authz.Check(ctx, p.UserID, Action, authz.Platform); err != nil {
		h.fail(w, reqID, err)
		return
	}
	params, err := ParamsFromURL(r.URL.Query())
	if err != nil {
		h.fail(w, reqID, err)
		return
	}
	if !params.Gzip && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		params.Gzip = true
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Add("Vary", "Accept-Encoding")
	} else if params.Gzip {
		w.Header().Set("Content-Type", "application/gzip")
	}
	q, err := h.exp.Parse(r.PathValue("kind"), params)
	if err != nil {
		w.Header().Del("Content-Encoding")
		w.Header().Del("Content-Type")
		h.fail(w, reqID, err)
		return
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", q.Format.ContentType())
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+FileName(q)+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")

	by := p.Actor(h.proxies.ClientIP(r), reqID)
	sw := &streamWriter{w: w, rc: http.NewResponseController(w), timeout: h.writeTimeout}
	rows, err := h.exp.Run(tenancy.WithActor(ctx, by), q, by, sw)
	if err == nil {
		return
	}
	if !sw.started {
		w.Header().Del("Content-Encoding")
		w.Header().Del("Content-Disposition")
		w.Header().Set("Content-Type", "application/json")
		h.fail(w, reqID, err)
		return
	}
	if ctx.Err() == nil {
		h.log.Error("export failed while streaming", "err", err, "rows", rows, "request_id", reqID)
	}
	// The status is gone: breaking the connection is the only way to tell
	// the client that what it received is incomplete.
	panic(http.ErrAbortHandler)
}

func (h *Handler) authenticate(ctx context.Context, r *http.Request) (tenancy.Principal, error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return tenancy.Principal{}, errcode.New(errcode.Unauthenticated, "a bearer token is required")
	}
	scheme, token, ok := strings.Cut(auth, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return tenancy.Principal{}, errcode.New(errcode.Unauthenticated, "malformed authorization header")
	}
	p, err := h.authn.Authenticate(ctx, token)
	if err != nil {
		if errcode.Of(err) == errcode.Internal {
			return p, err
		}
		return p, errcode.New(errcode.Unauthenticated, "invalid or expired token")
	}
	return p, nil
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

var statusOf = map[errcode.Code]int{
	errcode.Unauthenticated: http.StatusUnauthorized,
	errcode.Forbidden:       http.StatusForbidden,
	errcode.NotFound:        http.StatusNotFound,
	errcode.BadUserInput:    http.StatusBadRequest,
	errcode.Conflict:        http.StatusConflict,
	errcode.RateLimited:     http.StatusTooManyRequests,
}

// fail writes err as the JSON error body; internal errors are logged and
// never shown.
func (h *Handler) fail(w http.ResponseWriter, reqID string, err error) {
	body := map[string]string{"code": string(errcode.Internal), "message": "internal error (request id " + reqID + ")", "requestId": reqID}
	status := http.StatusInternalServerError
	if e, ok := errcode.As(err); ok && e.Code != errcode.Internal {
		body["code"], body["message"] = string(e.Code), e.Message
		if e.Field != "" {
			body["field"] = e.Field
		}
		status = statusOf[e.Code]
		if e.Code == errcode.NotFound && errors.Is(err, authz.ErrNotFound) {
			status = http.StatusForbidden // the platform domain always exists
			body["code"], body["message"] = string(errcode.Forbidden), "not allowed"
		}
	} else {
		h.log.Error("export", "err", err, "request_id", reqID)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tenantplane"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
}

// streamWriter sends the response as the export produces it, and extends
// the connection's write deadline before each chunk, so that an export
// may run past the server's write timeout while a stalled client may not.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	started bool
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.started = true
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout)) // not every writer supports deadlines
	return s.w.Write(p)
}
