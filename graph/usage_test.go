package graph_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/graph/graphtest"
	"github.com/tenantplane/tenantplane/tenancy"
)

const usageFields = `from to granularity series { resource class unit points { start quantity } } gaps { source start end reason }`

type usageReport struct {
	From, To    time.Time
	Granularity string
	Series      []struct {
		Resource, Class, Unit string
		Points                []struct {
			Start    time.Time
			Quantity string
		}
	}
	Gaps []struct {
		Source     string
		Start, End time.Time
		Reason     string
	}
}

func TestUsageReports(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	ctx := context.Background()
	owner := e.SignUp(t, "owner@example.com")
	viewer := e.SignUp(t, "viewer@example.com")
	_, err := e.Service.AddMember(e.As(owner.ID, false), owner.NamespaceID, viewer.ID, tenancy.RoleViewer)
	require.NoError(t, err)
	second, err := e.Service.CreateNamespace(e.As(owner.ID, false), owner.OrgID, "second")
	require.NoError(t, err)
	e.SyncAuthz(t)

	t0 := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	_, err = e.Usage.EnsurePartitions(ctx, t0, t0.Add(48*time.Hour))
	require.NoError(t, err)
	big := int64(5_000_000_000) // more than GraphQL's Int holds
	require.NoError(t, e.Usage.WriteMinutes(ctx, usage.MinuteBatch{
		Source: usage.SourceCompute, From: t0, Through: t0.Add(3 * time.Minute),
		Samples: []usage.Sample{
			{NamespaceID: owner.NamespaceID, Resource: usage.CPU, Minute: t0, Quantity: big},
			{NamespaceID: owner.NamespaceID, Resource: usage.CPU, Minute: t0.Add(time.Minute), Quantity: 7},
			{NamespaceID: owner.NamespaceID, Resource: "network.internet.egress", Class: "internet", Minute: t0, Quantity: 100},
			{NamespaceID: second.ID, Resource: usage.CPU, Minute: t0, Quantity: 3},
		},
		Gaps: []usage.Gap{{Source: usage.SourceCompute, Start: t0.Add(2 * time.Minute), End: t0.Add(3 * time.Minute), Reason: usage.GapNotObserved}},
	}))
	rangeVars := func(k string, id int64, g string) map[string]any {
		return map[string]any{k: fmt.Sprint(id), "from": t0.Format(time.RFC3339), "to": t0.Add(3 * time.Minute).Format(time.RFC3339), "g": g}
	}

	var ns struct{ Usage usageReport }
	e.MustDo(t, viewer.Token, `query($ns: ID!, $from: Time!, $to: Time!, $g: Granularity!) {
		usage(namespaceId: $ns, from: $from, to: $to, granularity: $g) { `+usageFields+` } }`,
		rangeVars("ns", owner.NamespaceID, "MINUTE")).Decode(t, &ns)
	u := ns.Usage
	require.Equal(t, "MINUTE", u.Granularity)
	require.True(t, u.From.Equal(t0))
	require.True(t, u.To.Equal(t0.Add(3*time.Minute)))
	require.Len(t, u.Series, 2)
	require.Equal(t, "cpu", u.Series[0].Resource)
	require.Equal(t, "", u.Series[0].Class)
	require.Equal(t, "millicore-minutes", u.Series[0].Unit)
	require.Len(t, u.Series[0].Points, 2)
	require.True(t, u.Series[0].Points[0].Start.Equal(t0))
	require.Equal(t, "5000000000", u.Series[0].Points[0].Quantity)
	require.Equal(t, "7", u.Series[0].Points[1].Quantity)
	require.Equal(t, "network.internet.egress", u.Series[1].Resource)
	require.Equal(t, "internet", u.Series[1].Class)
	require.Equal(t, "bytes", u.Series[1].Unit)
	require.Equal(t, "100", u.Series[1].Points[0].Quantity)
	require.Len(t, u.Gaps, 1)
	require.Equal(t, usage.GapNotObserved, u.Gaps[0].Reason)
	require.True(t, u.Gaps[0].Start.Equal(t0.Add(2*time.Minute)))

	// The org's report sums its namespaces; namespace members who are no
	// org members do not see the org.
	var org struct{ OrgUsage usageReport }
	orgQuery := `query($org: ID!, $from: Time!, $to: Time!, $g: Granularity!) {
		orgUsage(orgId: $org, from: $from, to: $to, granularity: $g) { ` + usageFields + ` } }`
	e.MustDo(t, owner.Token, orgQuery, rangeVars("org", owner.OrgID, "MINUTE")).Decode(t, &org)
	require.Equal(t, "cpu", org.OrgUsage.Series[0].Resource)
	require.Equal(t, fmt.Sprint(big+3), org.OrgUsage.Series[0].Points[0].Quantity)
	r := e.Do(t, viewer.Token, orgQuery, rangeVars("org", owner.OrgID, "MINUTE"))
	require.Len(t, r.Errors, 1)
	require.Equal(t, "NOT_FOUND", r.Errors[0].Code())

	// Ranges must be whole steps of the granularity.
	r = e.Do(t, viewer.Token, `query($ns: ID!, $from: Time!, $to: Time!, $g: Granularity!) {
		usage(namespaceId: $ns, from: $from, to: $to, granularity: $g) { from } }`,
		rangeVars("ns", owner.NamespaceID, "HOUR"))
	require.Len(t, r.Errors, 1)
	require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
}
