package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/stripepay"
	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/graph/generated"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/internal/reqmeta"
	"github.com/tenantplane/tenantplane/isolation"
	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/authz"
)

// Config configures the GraphQL handler. The zero value is valid: every
// limit takes its default.
type Config struct {
	// Dev serves GraphiQL to browsers that GET the handler without a query.
	Dev bool
	// Introspection answers __schema and __type queries; off in production.
	Introspection bool
	// Endpoint is the path GraphiQL sends queries to; default "/graphql".
	Endpoint string
	// MaxDepth bounds how deeply selections nest; default 12.
	MaxDepth int
	// MaxComplexity bounds an operation's cost, counting each field once and
	// each list field times its page size; default 50,000, enough for three
	// nested lists of 20 (me { orgs { namespaces { members } } }).
	MaxComplexity int
	// LoaderWait is how long a dataloader collects keys before it queries;
	// default 1ms.
	LoaderWait time.Duration
	// QueryCacheSize is how many parsed documents are kept; default 1000.
	QueryCacheSize int
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client address that rate limits and the audit log see; the zero
	// value trusts none, and the address is the TCP peer's.
	TrustedProxies reqmeta.Proxies
}

func (c *Config) validate() error {
	if c.Endpoint == "" {
		c.Endpoint = "/graphql"
	}
	if !strings.HasPrefix(c.Endpoint, "/") {
		return fmt.Errorf("graph config: endpoint %q must start with /", c.Endpoint)
	}
	if c.MaxDepth == 0 {
		c.MaxDepth = 12
	}
	if c.MaxComplexity == 0 {
		c.MaxComplexity = 50_000
	}
	if c.LoaderWait == 0 {
		c.LoaderWait = time.Millisecond
	}
	if c.QueryCacheSize == 0 {
		c.QueryCacheSize = 1000
	}
	switch {
	case c.MaxDepth < 2:
		return fmt.Errorf("graph config: max depth %d is below 2", c.MaxDepth)
	case c.MaxComplexity < 10:
		return fmt.Errorf("graph config: max complexity %d is below 10", c.MaxComplexity)
	case c.LoaderWait < 0 || c.LoaderWait > time.Second:
		return fmt.Errorf("graph config: loader wait %s is not within 0..1s", c.LoaderWait)
	case c.QueryCacheSize < 0:
		return fmt.Errorf("graph config: query cache size %d is negative", c.QueryCacheSize)
	}
	return nil
}

// Authorizer decides whether a user may perform an action in one of some
// domains; *authz.Authorizer is one. Check returns nil, or an errcode
// error: UNAUTHENTICATED, NOT_FOUND (the caller may not see the domain) or
// FORBIDDEN.
type Authorizer interface {
	Check(ctx context.Context, userID int64, action authz.Action, domains ...authz.Domain) error
	// Refresh reloads one user's roles in a domain (authz.Platform: in
	// all). Mutations that change roles call it, so that this replica
	// knows at once; the others learn through LISTEN/NOTIFY.
	Refresh(ctx context.Context, userID int64, domain authz.Domain) error
}

// Kubeconfigs issues kubeconfigs to the acting user (the tenancy.Actor in
// ctx) and revokes them; *isolation.Kubeconfigs is one. A ttl of zero
// means the default; the implementation bounds it.
type Kubeconfigs interface {
	Issue(ctx context.Context, nsID int64, ttl time.Duration) (isolation.Kubeconfig, error)
	RevokeAll(ctx context.Context, userID int64, reason string) error
}

// Suspender suspends and resumes namespaces, recording the reason;
// *isolation.Suspension is one.
type Suspender interface {
	Suspend(ctx context.Context, nsID int64, reason string) error
	ResumeWithReason(ctx context.Context, nsID int64, reason string) error
}

// Hosts claims, releases and lists the host names of namespaces for the
// acting user; *isolation.Hosts is one.
type Hosts interface {
	Claim(ctx context.Context, nsID int64, host string) (string, error)
	Release(ctx context.Context, nsID int64, host string) error
	List(ctx context.Context, nsID int64) ([]isolation.HostClaim, error)
}

// Usage answers usage queries over ids the caller was authorized for;
// *usage.Queries is one.
type Usage interface {
	Namespace(ctx context.Context, namespaceID int64, from, to time.Time, g usage.Granularity) (usage.Usage, error)
	Org(ctx context.Context, orgID int64, from, to time.Time, g usage.Granularity) (usage.Usage, error)
}

// Payments starts top-ups, keeps automatic top-up settings and reports
// reconciliation; *stripepay.Service is one.
type Payments interface {
	TopUp(ctx context.Context, orgID int64, amount billing.Micros, actor string) (stripepay.TopUp, error)
	SetAutoTopUp(ctx context.Context, a stripepay.AutoTopUp, actor string) (stripepay.AutoTopUp, error)
	AutoTopUp(ctx context.Context, orgID int64) (stripepay.AutoTopUp, error)
	LastReconciliation(ctx context.Context) (stripepay.Reconciliation, error)
}

// BillingAdmin performs platform admins' changes to money, plans and
// invoices, each audited with its reason; *billing.Admin is one.
type BillingAdmin interface {
	Post(ctx context.Context, in billing.AdminPosting) (billing.Posted, error)
	ChangePlan(ctx context.Context, orgID int64, plan, reason string) (string, error)
	VoidInvoice(ctx context.Context, orgID, id int64, reason string) (billing.Invoice, error)
	MarkInvoicePaid(ctx context.Context, orgID, id int64, reason string) (billing.Invoice, error)
}

// Deps are what the handler calls.
type Deps struct {
	// Tenancy answers every query and performs every mutation but those
	// below. Required.
	Tenancy *tenancy.Service
	// Authorizer is asked by @auth before every field. Required.
	Authorizer Authorizer
	// Kubeconfigs issues and revokes kubeconfigs. Required.
	Kubeconfigs Kubeconfigs
	// Suspender suspends and resumes namespaces. Required.
	Suspender Suspender
	// Hosts keeps the host names namespaces claim. Required.
	Hosts Hosts
	// Usage answers the usage queries. Required.
	Usage Usage
	// Ledger answers the balance, ledger and invoice queries. Required.
	Ledger BillingLedger
	// GiftCodes creates and redeems gift codes. Required.
	GiftCodes GiftCodes
	// Debt answers the debt lifecycle's fields; nil answers them NOT_FOUND.
	Debt Debt
	// Payments answers the Stripe fields; nil means payments are not
	// configured and those fields fail.
	Payments Payments
	// Pricing answers the price book, plan and charge fields. Required.
	Pricing Pricing
	// Admin adjusts balances, grants credit, changes plans and voids or
	// marks invoices paid. Required.
	Admin BillingAdmin
	// Logger receives internal errors with their request id; nil discards.
	Logger *slog.Logger
	// Clock tells the status of invitations; nil means time.Now in UTC.
	Clock func() time.Time
}

// RequestIDHeader carries the request id, set by the server's middleware
// or the client; the handler makes one up when it is absent or malformed.
const RequestIDHeader = reqmeta.Header

// NewHandler returns the GraphQL endpoint: queries over POST and GET,
// mutations over POST, GraphiQL for browsers in dev mode. It authenticates
// the bearer token of each request itself (see Authenticate).
func NewHandler(cfg Config, deps Deps) (http.Handler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Tenancy == nil || deps.Authorizer == nil || deps.Kubeconfigs == nil ||
		deps.Suspender == nil || deps.Hosts == nil || deps.Usage == nil || deps.Ledger == nil || deps.GiftCodes == nil ||
		deps.Pricing == nil || deps.Admin == nil {
		return nil, errors.New("graph: tenancy, authorizer, kubeconfigs, suspender, hosts, usage, ledger, gift codes, pricing and admin are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	srv := handler.New(NewExecutableSchema(deps))
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](cfg.QueryCacheSize))
	if cfg.Introspection {
		srv.Use(extension.Introspection{})
	}
	srv.Use(limits{maxDepth: cfg.MaxDepth, introspection: cfg.Introspection})
	srv.Use(newComplexityLimit(cfg.MaxComplexity, cfg.QueryCacheSize))
	srv.SetErrorPresenter(presentError(deps.Logger))
	srv.SetRecoverFunc(recoverPanic(deps.Logger))

	h := &httpHandler{cfg: cfg, deps: deps, gql: srv}
	if cfg.Dev {
		h.graphiql = playground.Handler("Tenantplane", cfg.Endpoint)
	}
	return h, nil
}

type httpHandler struct {
	cfg      Config
	deps     Deps
	gql      *handler.Server
	graphiql http.HandlerFunc
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := reqmeta.RequestID(r.Header.Get(RequestIDHeader))
	w.Header().Set(RequestIDHeader, reqID)
	if h.graphiql != nil && r.Method == http.MethodGet && r.URL.Query().Get("query") == "" &&
		strings.Contains(r.Header.Get("Accept"), "text/html") {
		h.graphiql(w, r)
		return
	}
	if r.Method == http.MethodGet && r.URL.Query().Get("query") == "" {
		writeError(w, http.StatusBadRequest, errcode.BadUserInput, "a query is required", reqID)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, errcode.BadUserInput, "use GET or POST", reqID)
		return
	}
	if r.Method == http.MethodGet && !onlyQueries(r.URL.Query().Get("query")) {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, errcode.BadUserInput, "GET requests only allow queries", reqID)
		return
	}
	ctx, err := Authenticate(r.Context(), h.deps.Tenancy, r, h.cfg.TrustedProxies.ClientIP(r), reqID)
	if err != nil {
		if errcode.Of(err) == errcode.Internal {
			h.deps.Logger.Error("graphql authenticate", "err", err, "request_id", reqID)
			writeError(w, http.StatusInternalServerError, errcode.Internal, internalMessage(reqID), reqID)
			return
		}
		writeError(w, http.StatusUnauthorized, errcode.Unauthenticated, "invalid or expired token", reqID)
		return
	}
	ctx = withRequest(ctx, newLoaders(h.deps.Tenancy, h.cfg.LoaderWait))
	h.gql.ServeHTTP(w, r.WithContext(ctx))
}

// Authenticate reads the bearer token of r, if any, through the tenancy
// service and returns a context carrying the tenancy.Actor (with the
// client address ip, see reqmeta.Proxies, and requestID) for the
// service's audit and rate limits, and the principal for the @auth
// directive. Without a token the actor is anonymous. A token that does
// not authenticate is an UNAUTHENTICATED error.
func Authenticate(ctx context.Context, svc *tenancy.Service, r *http.Request, ip netip.Addr, requestID string) (context.Context, error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return tenancy.WithActor(ctx, tenancy.Actor{IP: ip, RequestID: requestID}), nil
	}
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return ctx, errcode.New(errcode.Unauthenticated, "malformed authorization header")
	}
	p, err := svc.Authenticate(ctx, strings.TrimSpace(token))
	if err != nil {
		return ctx, err
	}
	ctx = tenancy.WithActor(ctx, p.Actor(ip, requestID))
	return context.WithValue(ctx, principalKey{}, p), nil
}

type principalKey struct{}

// PrincipalFrom returns the principal Authenticate put into ctx.
func PrincipalFrom(ctx context.Context) (tenancy.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(tenancy.Principal)
	return p, ok
}

// onlyQueries reports whether a document parses and holds queries only;
// a document that does not parse is left for the executor to report.
func onlyQueries(doc string) bool {
	q, err := parser.ParseQuery(&ast.Source{Input: doc})
	if err != nil {
		return true
	}
	for _, op := range q.Operations {
		if op.Operation != ast.Query {
			return false
		}
	}
	return true
}

// requestIDFrom returns the request id of the actor in ctx.
func requestIDFrom(ctx context.Context) string {
	if a, ok := tenancy.ActorFrom(ctx); ok {
		return a.RequestID
	}
	return ""
}

func internalMessage(reqID string) string { return "internal error (request id " + reqID + ")" }

// writeError answers with a GraphQL error response that never reached the
// executor.
func writeError(w http.ResponseWriter, status int, code errcode.Code, msg, reqID string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(graphql.Response{Errors: gqlerror.List{{
		Message:    msg,
		Extensions: map[string]any{"code": string(code), "requestId": reqID},
	}}})
}

// NewExecutableSchema returns the schema with its resolvers, the @auth
// directive and the complexity of each list; the handler serves it, and
// tests walk it.
func NewExecutableSchema(deps Deps) graphql.ExecutableSchema {
	now := deps.Clock
	if now == nil {
		now = func() time.Time { return time.Now().UTC() }
	}
	r := &Resolver{
		tenancy: deps.Tenancy, authz: deps.Authorizer, kubeconfigs: deps.Kubeconfigs,
		suspender: deps.Suspender, hosts: deps.Hosts, usage: deps.Usage, now: now, log: deps.Logger,
		ledger: deps.Ledger, giftCodes: deps.GiftCodes, debt: deps.Debt, payments: deps.Payments, pricing: deps.Pricing,
		admin: deps.Admin,
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	c := generated.Config{Resolvers: r}
	c.Directives.Auth = r.auth
	setComplexity(&c.Complexity)
	return generated.NewExecutableSchema(c)
}
