package tenancy

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// Page sizes for every list.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// PageArgs asks for one page of a list, Relay style: up to First items
// after the opaque cursor After (empty for the first page).
type PageArgs struct {
	First int
	After string
}

// Edge is one item of a page with the cursor that points at it.
type Edge[T any] struct {
	Node   T
	Cursor string
}

// PageInfo tells whether more items follow the page.
type PageInfo struct {
	HasNextPage bool
	StartCursor string
	EndCursor   string
}

// Connection is one page of a list.
type Connection[T any] struct {
	Edges    []Edge[T]
	PageInfo PageInfo
}

// Nodes returns the items of the page.
func (c Connection[T]) Nodes() []T {
	out := make([]T, len(c.Edges))
	for i, e := range c.Edges {
		out[i] = e.Node
	}
	return out
}

// Cursor is the sort key of one list item: an ID, and for lists sorted by
// time (the audit log) a time before it.
type Cursor struct {
	Time time.Time
	ID   int64
}

const cursorVersion = "c1"

// Encode returns the cursor as opaque URL-safe base64.
func (c Cursor) Encode() string {
	s := cursorVersion + ":" + strconv.FormatInt(c.ID, 10)
	if !c.Time.IsZero() {
		s += ":" + strconv.FormatInt(c.Time.UnixNano(), 10)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// DecodeCursor parses a cursor made by Encode. A malformed cursor is a
// BAD_USER_INPUT error on the field "after".
func DecodeCursor(s string) (Cursor, error) {
	bad := errcode.Invalid("after", "malformed cursor")
	if len(s) > 128 {
		return Cursor{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != cursorVersion {
		return Cursor{}, bad
	}
	id, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || id < 0 {
		return Cursor{}, bad
	}
	c := Cursor{ID: id}
	if len(parts) == 3 {
		ns, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			return Cursor{}, bad
		}
		c.Time = time.Unix(0, ns).UTC()
	}
	return c, nil
}

// PageQuery is a validated page request as the store sees it: Limit items
// (the store fetches one more to learn whether a next page exists) after
// After, when HasAfter.
type PageQuery struct {
	Limit    int
	After    Cursor
	HasAfter bool
}

// Query validates the page arguments: First defaults to DefaultPageSize and
// must be 1..MaxPageSize; After must be a cursor made by this package.
func (p PageArgs) Query() (PageQuery, error) {
	q := PageQuery{Limit: p.First}
	switch {
	case p.First == 0:
		q.Limit = DefaultPageSize
	case p.First < 0 || p.First > MaxPageSize:
		return PageQuery{}, errcode.Invalid("first", fmt.Sprintf("must be between 1 and %d", MaxPageSize))
	}
	if p.After != "" {
		c, err := DecodeCursor(p.After)
		if err != nil {
			return PageQuery{}, err
		}
		q.After, q.HasAfter = c, true
	}
	return q, nil
}

// NewConnection builds a page from up to q.Limit+1 items fetched by the
// store, using key to make each item's cursor.
func NewConnection[T any](q PageQuery, items []T, key func(T) Cursor) Connection[T] {
	var c Connection[T]
	if len(items) > q.Limit {
		items = items[:q.Limit]
		c.PageInfo.HasNextPage = true
	}
	c.Edges = make([]Edge[T], len(items))
	for i, it := range items {
		c.Edges[i] = Edge[T]{Node: it, Cursor: key(it).Encode()}
	}
	if len(c.Edges) > 0 {
		c.PageInfo.StartCursor = c.Edges[0].Cursor
		c.PageInfo.EndCursor = c.Edges[len(c.Edges)-1].Cursor
	}
	return c
}

// listPage is every keyset-paged list: check the page arguments, fetch one
// page and wrap it as a connection whose cursors are the items' IDs.
func listPage[T any](page PageArgs, what string, fetch func(PageQuery) ([]T, error), id func(T) int64) (Connection[T], error) {
	q, err := page.Query()
	if err != nil {
		return Connection[T]{}, err
	}
	items, err := fetch(q)
	if err != nil {
		return Connection[T]{}, fmt.Errorf("%s: %w", what, err)
	}
	return NewConnection(q, items, func(v T) Cursor { return Cursor{ID: id(v)} }), nil
}
