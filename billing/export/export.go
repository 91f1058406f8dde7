package export

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// Kind is what an export holds.
type Kind string

// The kinds of exports.
const (
	// Usage is the hourly usage rollups, corrections included.
	Usage Kind = "usage"
	// Charges is the rated charge lines, each with the usage and the
	// price that explain it.
	Charges Kind = "charges"
	// Invoices is the invoices, one row per invoice line with the
	// invoice's number, org, period, status and totals on each.
	Invoices Kind = "invoices"
	// Ledger is the ledger entries.
	Ledger Kind = "ledger"
	// Balances is every org's balance at the moment of the export.
	Balances Kind = "balances"
)

// Kinds lists every kind, in the order the documentation gives them.
var Kinds = []Kind{Usage, Charges, Invoices, Ledger, Balances}

// ParseKind reads a kind by name.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", errcode.Invalid("kind", "must be one of usage, charges, invoices, ledger, balances")
}

// timed reports whether rows of k belong to a time and take a time range.
func (k Kind) timed() bool { return k != Balances }

// perNamespace reports whether rows of k belong to a namespace and a
// resource, so that the namespace and resource filters apply.
func (k Kind) perNamespace() bool { return k == Usage || k == Charges }

// Format is how rows are encoded.
type Format string

// The formats.
const (
	// CSV is RFC 4180 with a header row, UTF-8, LF line ends (as Go's
	// encoding/csv writes them); fields are quoted when they hold a comma,
	// a double quote or a line break, and empty text is written "".
	CSV Format = "csv"
	// JSONLines is one JSON object per line.
	JSONLines Format = "jsonl"
)

// ParseFormat reads a format by name; "" is CSV.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "", "csv":
		return CSV, nil
	case "jsonl", "jsonlines", "ndjson":
		return JSONLines, nil
	}
	return "", errcode.Invalid("format", "must be csv or jsonl")
}

// ContentType is the media type of f.
func (f Format) ContentType() string {
	if f == JSONLines {
		return "application/jsonl; charset=utf-8"
	}
	return "text/csv; charset=utf-8; header=present"
}

// Ext is the file name extension of f.
func (f Format) Ext() string {
	if f == JSONLines {
		return "jsonl"
	}
	return "csv"
}

// Filter narrows an export. Zero fields do not filter.
type Filter struct {
	// From and To bound the rows' time (the hour of usage and charges,
	// the start of an invoice's period, the occurrence of ledger
	// entries), [From, To), UTC.
	From, To time.Time
	// OrgID keeps the rows of one org.
	OrgID int64
	// NamespaceID keeps the rows of one namespace (usage and charges).
	NamespaceID int64
	// Resource keeps the rows of one resource (usage and charges).
	Resource string
}

// Query is a validated export: what, how encoded and which rows.
type Query struct {
	Kind   Kind
	Format Format
	Filter Filter
	// Gzip compresses the output.
	Gzip bool
}

// Detail is the query as the audit log records it.
func (q Query) Detail() map[string]any {
	d := map[string]any{"kind": string(q.Kind), "format": string(q.Format), "gzip": q.Gzip}
	f := q.Filter
	if !f.From.IsZero() {
		d["from"] = f.From.Format(time.RFC3339)
		d["to"] = f.To.Format(time.RFC3339)
	}
	if f.OrgID != 0 {
		d["org_id"] = f.OrgID
	}
	if f.NamespaceID != 0 {
		d["namespace_id"] = f.NamespaceID
	}
	if f.Resource != "" {
		d["resource"] = f.Resource
	}
	return d
}

// Store reads the rows of an export. Export writes the encoded rows of q
// (not compressed) to w, read from one REPEATABLE READ read-only
// snapshot, so that a row written meanwhile is wholly in or wholly out;
// at is the moment balances are valued at. When w has a Flush() error
// method, Export calls it after the last row, and the export is complete
// only when it succeeds. Afterwards, whether it succeeded or not, it
// records the export with its filters, the rows written and whether it
// completed in the audit log. It returns the number of rows written.
type Store interface {
	Export(ctx context.Context, q Query, at time.Time, w io.Writer, by tenancy.Actor) (int64, error)
}

// Config configures an Exporter.
type Config struct {
	// MaxRange bounds To - From; default 366 days.
	MaxRange time.Duration
	// BufferBytes is the size of the write buffer between the store and
	// the output; default 256 KiB.
	BufferBytes int
	// GzipLevel is the compression level of gzip output, 1 (fastest) to
	// 9; default 1: exports are large and the network is seldom slower.
	GzipLevel int
	// Kinds are the kinds this build can export; default all.
	Kinds []Kind
}

// DefaultConfig is the configuration flags start from.
func DefaultConfig() Config {
	return Config{MaxRange: 366 * 24 * time.Hour, BufferBytes: 256 << 10, GzipLevel: gzip.BestSpeed,
		Kinds: slices.Clone(Kinds)}
}

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case c.MaxRange < time.Hour || c.MaxRange > 100*366*24*time.Hour:
		return fmt.Errorf("export config: max range %s is not between 1h and 100 years", c.MaxRange)
	case c.BufferBytes < 4<<10 || c.BufferBytes > 64<<20:
		return fmt.Errorf("export config: buffer of %d bytes is not between 4 KiB and 64 MiB", c.BufferBytes)
	case c.GzipLevel < gzip.BestSpeed || c.GzipLevel > gzip.BestCompression:
		return fmt.Errorf("export config: gzip level %d is not between 1 and 9", c.GzipLevel)
	case len(c.Kinds) == 0:
		return errors.New("export config: no kinds")
	}
	for _, k := range c.Kinds {
		if _, err := ParseKind(string(k)); err != nil {
			return fmt.Errorf("export config: unknown kind %q", k)
		}
	}
	return nil
}

// Exporter validates export requests and streams them from a Store.
type Exporter struct {
	cfg   Config
	store Store
	log   *slog.Logger
	now   func() time.Time
}

// New returns an Exporter; now is the clock balances are valued at.
func New(cfg Config, store Store, log *slog.Logger, now func() time.Time) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || now == nil {
		return nil, errors.New("export: a store and a clock are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Exporter{cfg: cfg, store: store, log: log, now: func() time.Time { return now().UTC() }}, nil
}

// Params are an export's filters as text, the form both the URL query
// and the command line give them in.
type Params struct {
	From, To, Org, Namespace, Resource, Format string
	Gzip                                       bool
}

// ParamsFromURL reads Params from a URL query; unknown or repeated
// parameters are refused, so that a misspelt filter never widens an
// export unnoticed.
func ParamsFromURL(v url.Values) (Params, error) {
	var p Params
	fields := map[string]*string{"from": &p.From, "to": &p.To, "org": &p.Org, "namespace": &p.Namespace,
		"resource": &p.Resource, "format": &p.Format}
	for k, vs := range v {
		if len(vs) != 1 {
			return p, errcode.Invalid(k, "must be given once")
		}
		if k == "gzip" {
			b, err := strconv.ParseBool(vs[0])
			if err != nil {
				return p, errcode.Invalid("gzip", "must be 1 or 0")
			}
			p.Gzip = b
			continue
		}
		f, ok := fields[k]
		if !ok {
			return p, errcode.Invalid(k, "is not a filter: use from, to, org, namespace, resource, format or gzip")
		}
		*f = vs[0]
	}
	return p, nil
}

// Parse validates p for kind k and returns the query.
func (e *Exporter) Parse(kind string, p Params) (Query, error) {
	k, err := ParseKind(kind)
	if err != nil {
		return Query{}, err
	}
	known := false
	for _, c := range e.cfg.Kinds {
		known = known || c == k
	}
	if !known {
		return Query{}, errcode.New(errcode.NotFound, "exports of "+string(k)+" are not available in this version")
	}
	q := Query{Kind: k, Gzip: p.Gzip}
	if q.Format, err = ParseFormat(p.Format); err != nil {
		return Query{}, err
	}
	f := &q.Filter
	if k.timed() {
		if f.From, err = parseTime("from", p.From); err != nil {
			return Query{}, err
		}
		if f.To, err = parseTime("to", p.To); err != nil {
			return Query{}, err
		}
		if !f.From.Before(f.To) {
			return Query{}, errcode.Invalid("to", "must be after from")
		}
		if f.To.Sub(f.From) > e.cfg.MaxRange {
			return Query{}, errcode.Invalid("to", fmt.Sprintf("the range must not exceed %s; export it in parts", e.cfg.MaxRange))
		}
	} else if p.From != "" || p.To != "" {
		return Query{}, errcode.Invalid("from", string(k)+" are taken at the moment of the export and take no time range")
	}
	if f.OrgID, err = parseID("org", p.Org); err != nil {
		return Query{}, err
	}
	if f.NamespaceID, err = parseID("namespace", p.Namespace); err != nil {
		return Query{}, err
	}
	if p.Resource != "" && !usage.ValidResource(p.Resource) {
		return Query{}, errcode.Invalid("resource", "must be a resource name such as cpu or network.internet.egress")
	}
	f.Resource = p.Resource
	if !k.perNamespace() {
		if f.NamespaceID != 0 {
			return Query{}, errcode.Invalid("namespace", string(k)+" belong to orgs, not namespaces: filter by org")
		}
		if f.Resource != "" {
			return Query{}, errcode.Invalid("resource", string(k)+" are not per resource")
		}
	}
	return q, nil
}

// timeBound keeps times within years the database and RFC 3339 handle.
var minTime, maxTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errcode.Invalid(field, "is required: an RFC 3339 time such as 2026-11-01T00:00:00Z")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		d, derr := time.Parse(time.DateOnly, s)
		if derr != nil {
			return time.Time{}, errcode.Invalid(field, "must be an RFC 3339 time such as 2026-11-01T00:00:00Z, or a date")
		}
		t = d
	}
	t = t.UTC()
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, errcode.Invalid(field, "must be between 2000 and 2200")
	}
	return t, nil
}

func parseID(field, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || id <= 0 {
		return 0, errcode.Invalid(field, "must be a positive ID")
	}
	return id, nil
}

// Run streams the export q to w, gzip-compressed when q.Gzip, and returns
// the number of rows. w receives the output in chunks of about the
// configured buffer size.
func (e *Exporter) Run(ctx context.Context, q Query, by tenancy.Actor, w io.Writer) (int64, error) {
	if by.UserID == 0 && by.System == "" {
		return 0, errors.New("export: the requester is required for the audit log")
	}
	out := &output{}
	if q.Gzip {
		gz, err := gzip.NewWriterLevel(w, e.cfg.GzipLevel)
		if err != nil {
			return 0, fmt.Errorf("export: %w", err)
		}
		out.gz = gz
		out.buf = bufio.NewWriterSize(gz, e.cfg.BufferBytes)
	} else {
		out.buf = bufio.NewWriterSize(w, e.cfg.BufferBytes)
	}
	start := time.Now()
	rows, err := e.store.Export(ctx, q, e.now(), out, by)
	if err != nil {
		return rows, fmt.Errorf("exporting %s: %w", q.Kind, err)
	}
	if err := out.Flush(); err != nil { // a no-op when the store flushed
		return rows, fmt.Errorf("exporting %s: writing: %w", q.Kind, err)
	}
	e.log.Info("export", "kind", q.Kind, "format", q.Format, "rows", rows, "actor", by.Key(),
		"request_id", by.RequestID, "duration", time.Since(start))
	return rows, nil
}

// FileName is the name suggested for the download of q, such as
// "usage-20261101-20261201.csv.gz".
func FileName(q Query) string {
	name := string(q.Kind)
	if !q.Filter.From.IsZero() {
		name += "-" + q.Filter.From.Format("20060102T150405Z") + "-" + q.Filter.To.Format("20060102T150405Z")
	}
	name += "." + q.Format.Ext()
	if q.Gzip {
		name += ".gz"
	}
	return name
}

// output is the encoding pipeline of one export: a buffer, then gzip
// when asked. Flush writes out everything and ends the gzip stream; it
// may be called more than once.
type output struct {
	buf *bufio.Writer
	gz  *gzip.Writer
	end bool
}

func (o *output) Write(p []byte) (int, error) { return o.buf.Write(p) }

// Flush implements the optional flush of Store.Export.
func (o *output) Flush() error {
	if err := o.buf.Flush(); err != nil {
		return err
	}
	if o.gz != nil && !o.end {
		o.end = true
		return o.gz.Close()
	}
	return nil
}
