package graph

import (
	"context"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	gqlerrcode "github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// complexityLimit refuses operations whose complexity exceeds max, as
// gqlgen's FixedComplexityLimit does, and remembers the complexity of
// operations that declare no variables, which their text alone decides:
// a console sends the same few documents over and over, and walking one
// costs as much as some of its fields.
type complexityLimit struct {
	max   int
	es    graphql.ExecutableSchema
	cache *lru.LRU[int]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = (*complexityLimit)(nil)

func newComplexityLimit(limit, cacheSize int) *complexityLimit {
	return &complexityLimit{max: limit, cache: lru.New[int](max(cacheSize, 1))}
}

func (c *complexityLimit) ExtensionName() string { return "ComplexityLimit" }

func (c *complexityLimit) Validate(es graphql.ExecutableSchema) error {
	c.es = es
	return nil
}

func (c *complexityLimit) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	op := oc.Operation
	if op == nil {
		return nil
	}
	var (
		n      int
		cached bool
		key    string
	)
	if len(op.VariableDefinitions) == 0 {
		key = oc.OperationName + "\x00" + oc.RawQuery
		n, cached = c.cache.Get(ctx, key)
	}
	if !cached {
		n = complexity.Calculate(ctx, c.es, op, oc.Variables)
		if key != "" {
			c.cache.Add(ctx, key, n)
		}
	}
	oc.Stats.SetExtension(c.ExtensionName(), &extension.ComplexityStats{Complexity: n, ComplexityLimit: c.max})
	if n > c.max {
		err := gqlerror.Errorf("operation has complexity %d, which exceeds the limit of %d", n, c.max)
		gqlerrcode.Set(err, "COMPLEXITY_LIMIT_EXCEEDED")
		return err
	}
	return nil
}
