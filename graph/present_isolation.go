package graph

import (
	"context"
	"strings"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/isolation"
)

// freshNamespace reads a namespace past the request's loader, which may
// hold it as it was before a mutation changed it.
func (r *Resolver) freshNamespace(ctx context.Context, id int64) (*model.Namespace, error) {
	n, err := r.tenancy.Namespace(ctx, id)
	if err != nil {
		return nil, err
	}
	return presentNamespace(n), nil
}

func presentHostClaim(c isolation.HostClaim) *model.HostClaim {
	return &model.HostClaim{Host: c.Host, CreatedAt: c.CreatedAt.UTC()}
}

func parseGranularity(g model.Granularity) usage.Granularity {
	return usage.Granularity(strings.ToLower(string(g)))
}

func presentUsage(u usage.Usage) *model.UsageReport {
	out := &model.UsageReport{
		From: u.From.UTC(), To: u.To.UTC(),
		Granularity: model.Granularity(strings.ToUpper(string(u.Granularity))),
		Series:      make([]*model.UsageSeries, len(u.Series)),
		Gaps:        make([]*model.UsageGap, len(u.Gaps)),
	}
	for i, s := range u.Series {
		ms := &model.UsageSeries{Resource: s.Resource, Class: s.Class, Unit: s.Unit, Points: make([]*model.UsagePoint, len(s.Points))}
		for j, p := range s.Points {
			ms.Points[j] = &model.UsagePoint{Start: p.Start.UTC(), Quantity: p.Quantity}
		}
		out.Series[i] = ms
	}
	for i, g := range u.Gaps {
		out.Gaps[i] = &model.UsageGap{Source: g.Source, Start: g.Start.UTC(), End: g.End.UTC(), Reason: g.Reason}
	}
	return out
}
