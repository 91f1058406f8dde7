package usage

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// QueryConfig bounds the usage queries.
type QueryConfig struct {
	// MaxPoints is the most points one series may have; 0 means 10,080
	// (a week of minutes).
	MaxPoints int
}

// Queries answers the usage and orgUsage API fields. Authorization is the
// caller's: these functions trust the ids they are given.
type Queries struct {
	r   Reader
	cfg QueryConfig
}

// NewQueries returns the query functions over r.
func NewQueries(r Reader, cfg QueryConfig) (*Queries, error) {
	if r == nil {
		return nil, fmt.Errorf("usage queries: reader is required")
	}
	if cfg.MaxPoints < 0 {
		return nil, fmt.Errorf("usage queries: max points must not be negative")
	}
	if cfg.MaxPoints == 0 {
		cfg.MaxPoints = 7 * 24 * 60
	}
	return &Queries{r: r, cfg: cfg}, nil
}

// Usage is the answer to a usage query: one series per resource and class,
// and the collector gaps in the range, whose minutes hold lower bounds.
type Usage struct {
	From        time.Time
	To          time.Time
	Granularity Granularity
	Series      []Series
	Gaps        []Gap
}

// Series is the usage of one resource and class over time. Points with no
// usage are left out.
type Series struct {
	Resource string
	Class    string
	Unit     string
	Points   []Point
}

// Namespace returns the usage of one namespace in [from, to), which must be
// whole steps of g.
func (q *Queries) Namespace(ctx context.Context, namespaceID int64, from, to time.Time, g Granularity) (Usage, error) {
	if namespaceID <= 0 {
		return Usage{}, errcode.Invalid("namespace", "must be a namespace id")
	}
	return q.query(ctx, Scope{NamespaceID: namespaceID}, from, to, g)
}

// Org returns the usage of all the namespaces of an org, summed, in
// [from, to), which must be whole steps of g.
func (q *Queries) Org(ctx context.Context, orgID int64, from, to time.Time, g Granularity) (Usage, error) {
	if orgID <= 0 {
		return Usage{}, errcode.Invalid("org", "must be an org id")
	}
	return q.query(ctx, Scope{OrgID: orgID}, from, to, g)
}

func (q *Queries) query(ctx context.Context, scope Scope, from, to time.Time, g Granularity) (Usage, error) {
	from, to = from.UTC(), to.UTC()
	if err := q.validRange(from, to, g); err != nil {
		return Usage{}, err
	}
	m, err := q.r.Series(ctx, scope, from, to, g)
	if err != nil {
		return Usage{}, fmt.Errorf("reading usage series: %w", err)
	}
	gaps, err := q.r.Gaps(ctx, from, to)
	if err != nil {
		return Usage{}, fmt.Errorf("reading usage gaps: %w", err)
	}
	u := Usage{From: from, To: to, Granularity: g, Gaps: gaps}
	for k, pts := range m {
		u.Series = append(u.Series, Series{Resource: k.Resource, Class: k.Class, Unit: Unit(k.Resource), Points: pts})
	}
	sort.Slice(u.Series, func(i, j int) bool {
		a, b := u.Series[i], u.Series[j]
		if a.Resource != b.Resource {
			return a.Resource < b.Resource
		}
		return a.Class < b.Class
	})
	return u, nil
}

func (q *Queries) validRange(from, to time.Time, g Granularity) error {
	if !g.Valid() {
		return errcode.Invalid("granularity", "must be minute, hour or day")
	}
	step := g.Step()
	switch {
	case !to.After(from):
		return errcode.Invalid("to", "must be after from")
	case !from.Equal(from.Truncate(step)):
		return errcode.Invalid("from", fmt.Sprintf("must be a whole %s (UTC)", g))
	case !to.Equal(to.Truncate(step)):
		return errcode.Invalid("to", fmt.Sprintf("must be a whole %s (UTC)", g))
	case to.Sub(from)/step > time.Duration(q.cfg.MaxPoints):
		return errcode.Invalid("to", fmt.Sprintf("the range is more than %d %ss", q.cfg.MaxPoints, g))
	}
	return nil
}
