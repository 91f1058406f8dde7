package collectors

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// Meter is one writer of the ingest API: the ServiceAccounts that may write
// as it, and the resources it may write.
type Meter struct {
	// Name is the source its events are stored under.
	Name string
	// ServiceAccounts are "namespace/name" of the ServiceAccounts that
	// write as this meter.
	ServiceAccounts []string
	// Resources it may write: exact names, or a prefix ending in "*"
	// ("network.*").
	Resources []string
}

func (m Meter) allows(resource string) bool {
	for _, r := range m.Resources {
		if p, ok := strings.CutSuffix(r, "*"); ok && strings.HasPrefix(resource, p) || r == resource {
			return true
		}
	}
	return false
}

// IngestConfig configures POST /v1/usage.
type IngestConfig struct {
	// Meters are the writers; at least one.
	Meters []Meter
	// MaxEvents bounds a batch; default 10,000.
	MaxEvents int
	// MaxBodyBytes bounds a request body; default 4 MiB.
	MaxBodyBytes int64
	// LateWindow is how old an event may be; default 24 hours. It must not
	// exceed the store upkeep's LateWindow.
	LateWindow time.Duration
	// FutureSkew is how far ahead of our clock an event may be, for clock
	// skew between hosts; default 5 seconds.
	FutureSkew time.Duration
	// TokenCacheTTL is how long a TokenReview answer is reused; default
	// 10 seconds.
	TokenCacheTTL time.Duration
	// Audiences, when set, are the audiences a token must be for.
	Audiences []string
}

func (c *IngestConfig) withDefaults() error {
	if c.MaxEvents == 0 {
		c.MaxEvents = 10_000
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 4 << 20
	}
	if c.LateWindow == 0 {
		c.LateWindow = 24 * time.Hour
	}
	if c.FutureSkew == 0 {
		c.FutureSkew = 5 * time.Second
	}
	if c.TokenCacheTTL == 0 {
		c.TokenCacheTTL = 10 * time.Second
	}
	switch {
	case len(c.Meters) == 0:
		return errors.New("at least one meter is required")
	case c.MaxEvents < 1 || c.MaxBodyBytes < 1 || c.LateWindow < 0 || c.FutureSkew < 0 || c.TokenCacheTTL < 0:
		return errors.New("limits and windows must be positive")
	}
	seen := map[string]bool{}
	for _, m := range c.Meters {
		if !usage.ValidSource(m.Name) || m.Name == usage.SourceCompute || m.Name == usage.SourceStorage {
			return fmt.Errorf("meter name %q is not a source name or is a collector's", m.Name)
		}
		if len(m.ServiceAccounts) == 0 || len(m.Resources) == 0 {
			return fmt.Errorf("meter %s needs service accounts and resources", m.Name)
		}
		for _, sa := range m.ServiceAccounts {
			ns, name, ok := strings.Cut(sa, "/")
			if !ok || ns == "" || name == "" {
				return fmt.Errorf("meter %s: service account %q is not namespace/name", m.Name, sa)
			}
			if seen[sa] {
				return fmt.Errorf("service account %s belongs to more than one meter", sa)
			}
			seen[sa] = true
		}
	}
	return nil
}

// Ingest is the http.Handler of POST /v1/usage: batches of events from
// meters authenticated by a ServiceAccount token (TokenReview) and
// authorized per meter. Valid events are stored before it answers 200;
// each invalid one is rejected on its own.
type Ingest struct {
	cfg     IngestConfig
	reviews authenticationclient.TokenReviewsGetter
	store   interface {
		usage.Writer
		usage.Namespaces
	}
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	bySA    map[string]*Meter

	cacheMu sync.Mutex
	cache   map[[32]byte]tokenAnswer
}

type tokenAnswer struct {
	user    string // "" when the token is not valid
	expires time.Time
}

// NewIngest returns the ingest handler. reviews is the TokenReview API of
// the cluster that issues the meters' tokens. reg may be nil.
func NewIngest(cfg IngestConfig, reviews authenticationclient.TokenReviewsGetter, store usage.Store, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*Ingest, error) {
	if reviews == nil || store == nil || log == nil || now == nil {
		return nil, errors.New("usage ingest: token reviews, store, logger and clock are required")
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, fmt.Errorf("usage ingest: %w", err)
	}
	h := &Ingest{cfg: cfg, reviews: reviews, store: store, log: log, now: now, bySA: map[string]*Meter{}, cache: map[[32]byte]tokenAnswer{}}
	h.metrics = newIngestMetrics(reg)
	for i := range h.cfg.Meters {
		m := &h.cfg.Meters[i]
		for _, sa := range m.ServiceAccounts {
			ns, name, _ := strings.Cut(sa, "/")
			h.bySA["system:serviceaccount:"+ns+":"+name] = m
		}
	}
	return h, nil
}

// Event is one metered quantity as a meter sends it.
type Event struct {
	// Namespace is the tenant's Kubernetes namespace.
	Namespace string `json:"namespace"`
	Resource  string `json:"resource"`
	Class     string `json:"class"`
	// Quantity is a non-negative integer in the resource's unit.
	Quantity json.Number `json:"quantity"`
	// Time is when the usage happened, RFC 3339; it is counted in its
	// minute.
	Time string `json:"time"`
	// Key is the idempotency key: a repeated event (same namespace,
	// resource, class, minute and key) is ignored.
	Key string `json:"key"`
}

// IngestRequest is the body of POST /v1/usage.
type IngestRequest struct {
	Events []Event `json:"events"`
}

// Rejection says why one event of a batch was not accepted.
type Rejection struct {
	Index   int    `json:"index"`
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// IngestResponse is the answer to a batch: Accepted events are stored
// (Stored of them new, Duplicates already there); the rest are Rejected.
type IngestResponse struct {
	Accepted   int         `json:"accepted"`
	Stored     int         `json:"stored"`
	Duplicates int         `json:"duplicates"`
	Rejected   []Rejection `json:"rejected"`
}

// ServeHTTP implements http.Handler.
func (h *Ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		ingestError(w, http.StatusMethodNotAllowed, errcode.BadUserInput, "use POST")
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		ingestError(w, http.StatusUnauthorized, errcode.Unauthenticated, "a ServiceAccount bearer token is required")
		return
	}
	user, err := h.authenticate(r.Context(), token)
	if err != nil {
		h.log.ErrorContext(r.Context(), "token review", "err", err)
		ingestError(w, http.StatusServiceUnavailable, errcode.Internal, "cannot check the token now; retry")
		return
	}
	if user == "" {
		ingestError(w, http.StatusUnauthorized, errcode.Unauthenticated, "the token is not valid")
		return
	}
	meter := h.bySA[user]
	if meter == nil {
		ingestError(w, http.StatusForbidden, errcode.Forbidden, "this ServiceAccount is not a meter")
		return
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		ingestError(w, http.StatusRequestEntityTooLarge, errcode.BadUserInput, fmt.Sprintf("the body is larger than %d bytes", h.cfg.MaxBodyBytes))
		return
	}
	var req IngestRequest
	// goccy/go-json decodes a batch about five times faster than
	// encoding/json, which was most of this handler's CPU.
	dec := gojson.NewDecoder(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err := dec.Decode(&req); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			ingestError(w, http.StatusRequestEntityTooLarge, errcode.BadUserInput, fmt.Sprintf("the body is larger than %d bytes", h.cfg.MaxBodyBytes))
			return
		}
		ingestError(w, http.StatusBadRequest, errcode.BadUserInput, "the body is not a JSON batch of events")
		return
	}
	if len(req.Events) > h.cfg.MaxEvents {
		ingestError(w, http.StatusRequestEntityTooLarge, errcode.BadUserInput, fmt.Sprintf("a batch holds at most %d events", h.cfg.MaxEvents))
		return
	}
	resp, err := h.ingest(r.Context(), meter, req.Events)
	if err != nil {
		h.log.ErrorContext(r.Context(), "storing usage events", "meter", meter.Name, "err", err)
		ingestError(w, http.StatusServiceUnavailable, errcode.Internal, "the events could not be stored; retry the batch")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// ingest validates events, stores the valid ones and says what became of
// each.
func (h *Ingest) ingest(ctx context.Context, meter *Meter, events []Event) (IngestResponse, error) {
	now := h.now().UTC()
	resp := IngestResponse{Rejected: []Rejection{}}
	samples := make([]usage.Sample, 0, len(events))
	index := make([]int, 0, len(events)) // event index of each sample
	names := map[string]int64{}
	for i := range events {
		s, err := h.parse(meter, &events[i], now)
		if err != nil {
			resp.Rejected = append(resp.Rejected, rejection(i, err))
			continue
		}
		names[events[i].Namespace] = 0
		samples = append(samples, s)
		index = append(index, i)
	}
	if len(samples) > 0 {
		list := make([]string, 0, len(names))
		for n := range names {
			list = append(list, n)
		}
		ids, err := h.store.NamespaceIDs(ctx, list)
		if err != nil {
			return IngestResponse{}, err
		}
		kept := samples[:0]
		for j, s := range samples {
			i := index[j]
			id, ok := ids[events[i].Namespace]
			if !ok {
				resp.Rejected = append(resp.Rejected, Rejection{Index: i, Code: string(errcode.NotFound), Field: "namespace", Message: "no tenant namespace " + strconv.Quote(events[i].Namespace)})
				continue
			}
			s.NamespaceID = id
			kept = append(kept, s)
		}
		samples = kept
	}
	if len(samples) > 0 {
		// In key order, consecutive rows land on the same index pages.
		slices.SortFunc(samples, func(a, b usage.Sample) int {
			return cmp.Or(cmp.Compare(a.NamespaceID, b.NamespaceID), a.Minute.Compare(b.Minute),
				strings.Compare(a.Resource, b.Resource), strings.Compare(a.Class, b.Class), strings.Compare(a.Key, b.Key))
		})
		res, err := h.store.Write(ctx, meter.Name, samples)
		if err != nil {
			return IngestResponse{}, err
		}
		resp.Stored, resp.Duplicates = res.Inserted, res.Duplicates
	}
	resp.Accepted = len(samples)
	h.metrics.ingested.WithLabelValues(meter.Name, "stored").Add(float64(resp.Stored))
	h.metrics.ingested.WithLabelValues(meter.Name, "duplicate").Add(float64(resp.Duplicates))
	h.metrics.ingested.WithLabelValues(meter.Name, "rejected").Add(float64(len(resp.Rejected)))
	sortRejections(resp.Rejected)
	return resp, nil
}

func (h *Ingest) parse(meter *Meter, e *Event, now time.Time) (usage.Sample, error) {
	if e.Namespace == "" {
		return usage.Sample{}, errcode.Invalid("namespace", "is required")
	}
	if !usage.ValidResource(e.Resource) {
		return usage.Sample{}, errcode.Invalid("resource", "is not a resource name")
	}
	if !meter.allows(e.Resource) {
		return usage.Sample{}, &errcode.Error{Code: errcode.Forbidden, Field: "resource", Message: "this meter may not write " + e.Resource}
	}
	if !usage.ValidClass(e.Class) {
		return usage.Sample{}, errcode.Invalid("class", "is not a class name")
	}
	if !usage.ValidNetwork(e.Resource, e.Class) {
		return usage.Sample{}, errcode.Invalid("resource", "a network resource is network.<class>.<egress|ingress>, with that class as its class")
	}
	q, err := strconv.ParseInt(string(e.Quantity), 10, 64)
	if err != nil {
		return usage.Sample{}, errcode.Invalid("quantity", "must be an integer")
	}
	if q < 0 {
		return usage.Sample{}, errcode.Invalid("quantity", "must not be negative")
	}
	t, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil {
		return usage.Sample{}, errcode.Invalid("time", "must be an RFC 3339 time")
	}
	t = t.UTC()
	if t.After(now.Add(h.cfg.FutureSkew)) {
		return usage.Sample{}, errcode.Invalid("time", "is in the future")
	}
	if t.Before(now.Add(-h.cfg.LateWindow)) {
		return usage.Sample{}, errcode.Invalid("time", "is older than the accepted window of "+h.cfg.LateWindow.String())
	}
	if !usage.ValidKey(e.Key) {
		return usage.Sample{}, errcode.Invalid("key", "must be 1 to 128 printable characters without spaces")
	}
	return usage.Sample{Resource: e.Resource, Class: e.Class, Minute: t.Truncate(time.Minute), Quantity: q, Key: e.Key}, nil
}

func rejection(i int, err error) Rejection {
	e, ok := errcode.As(err)
	if !ok {
		return Rejection{Index: i, Code: string(errcode.BadUserInput), Message: err.Error()}
	}
	return Rejection{Index: i, Code: string(e.Code), Field: e.Field, Message: e.Message}
}

func sortRejections(r []Rejection) {
	// Rejections from parsing come in order, namespace ones after them;
	// an insertion sort keeps the usual, nearly sorted case linear.
	for i := 1; i < len(r); i++ {
		for j := i; j > 0 && r[j].Index < r[j-1].Index; j-- {
			r[j], r[j-1] = r[j-1], r[j]
		}
	}
}

// authenticate returns the user name the token authenticates, "" when it
// does not; answers are cached for TokenCacheTTL under the token's hash.
func (h *Ingest) authenticate(ctx context.Context, token string) (string, error) {
	key := sha256.Sum256([]byte(token))
	now := h.now()
	h.cacheMu.Lock()
	a, ok := h.cache[key]
	h.cacheMu.Unlock()
	if ok && now.Before(a.expires) {
		return a.user, nil
	}
	tr, err := h.reviews.TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: h.cfg.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating token review: %w", err)
	}
	user := ""
	if tr.Status.Authenticated {
		user = tr.Status.User.Username
	}
	h.cacheMu.Lock()
	defer h.cacheMu.Unlock()
	if len(h.cache) > 10_000 {
		for k, v := range h.cache {
			if !now.Before(v.expires) {
				delete(h.cache, k)
			}
		}
	}
	h.cache[key] = tokenAnswer{user: user, expires: now.Add(h.cfg.TokenCacheTTL)}
	return user, nil
}

func ingestError(w http.ResponseWriter, status int, code errcode.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": string(code), "message": msg}})
}
