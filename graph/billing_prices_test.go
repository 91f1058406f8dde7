package graph_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/tenancy"
)

var publishHour atomic.Int64

// pricingSpecs are the authorization matrix entries of the price book,
// plan and charge fields: platform admins manage prices; an org's owners
// and billing members, and platform admins, read its charges.
func pricingSpecs() map[string]spec {
	by := tenancy.Actor{System: "matrix"}
	draft := func(c *cell) int64 {
		v, err := c.f.e.Billing.CreatePriceBookVersion(context.Background(), 1, "matrix", 0, by)
		require.NoError(c.f.t, err)
		return v.ID
	}
	draftVars := func(c *cell) map[string]any {
		if !c.allowed() {
			return map[string]any{"id": "1"}
		}
		return map[string]any{"id": id(draft(c))}
	}
	charge := func(c *cell) map[string]any {
		var line int64
		require.NoError(c.f.t, c.f.e.DB.Pool.QueryRow(context.Background(), `INSERT INTO charge_lines (key, org_id, namespace_id,
			resource, class, hour, revision, quantity, amount_micros, currency, rated_at, usage_seq)
			VALUES ($1, $2, $3, 'cpu', '', '2026-01-01T00:00:00Z', 0, 60000, 40000, 'USD', now(), 1) RETURNING id`,
			c.f.unique("line"), c.target.org, c.target.ns).Scan(&line))
		return map[string]any{"org": id(c.target.org), "id": id(line)}
	}
	orgVars := func(c *cell) map[string]any { return map[string]any{"id": id(c.target.org)} }
	billers := []role{orgOwner, orgBilling}
	return map[string]spec{
		"Query.priceBooks":       {doc: `{ priceBooks { id name currency versions { id draft prices { resource } } } }`, padmin: ok},
		"Query.priceBookVersion": {doc: `{ priceBookVersion(id: "1") { id effectiveFrom prices { resource } } }`, padmin: ok},
		"Query.plans":            {doc: `{ plans { name billingMode priceBookId } }`, padmin: ok},
		"Query.reratingPreview": {doc: `{ reratingPreview(versionId: "1", from: "2026-01-01T00:00:00Z", to: "2026-01-01T01:00:00Z") { charged draft orgs { orgId } } }`,
			padmin: ok},
		"Query.orgCharges": {doc: `query($id: ID!) { orgCharges(orgId: $id, from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z") { nodes { id amount } pageInfo { hasNextPage } } }`,
			vars: orgVars, allow: billers, padmin: ok},
		"Query.charge": {doc: `query($org: ID!, $id: ID!) { charge(orgId: $org, id: $id) { id amount unitPrice samples { minute quantity } } }`,
			vars: charge, allow: billers, padmin: ok},
		"Mutation.createPriceBook": {doc: `mutation($n: String!) { createPriceBook(input: {name: $n, currency: "EUR"}) { id } }`,
			vars: func(c *cell) map[string]any { return map[string]any{"n": c.f.unique("book")} }, padmin: ok},
		"Mutation.createPriceBookVersion": {doc: `mutation { createPriceBookVersion(input: {priceBookId: "1", copyFrom: "1"}) { id draft } }`, padmin: ok},
		"Mutation.setPrice": {doc: `mutation($id: ID!) { setPrice(input: {versionId: $id, resource: "cpu", mode: GRADUATED, tiers: [{upToUnits: "10", unitPrice: "0.05"}, {unitPrice: "0.04"}]}) { prices { tiers { upToUnits unitPrice } } } }`,
			vars: draftVars, padmin: ok},
		"Mutation.deletePrice": {doc: `mutation($id: ID!) { deletePrice(versionId: $id, resource: "cpu") { id } }`,
			vars: func(c *cell) map[string]any {
				vars := draftVars(c)
				if c.allowed() {
					vid, err := strconv.ParseInt(vars["id"].(string), 10, 64)
					require.NoError(c.f.t, err)
					_, err = c.f.e.Billing.SetPrice(context.Background(), billing.Price{VersionID: vid, Resource: "cpu", Mode: billing.PriceUnit,
						UnitDivisor: 60_000, Tiers: []billing.Tier{{UnitPrice: 1}}}, by)
					require.NoError(c.f.t, err)
				}
				return vars
			}, padmin: ok},
		"Mutation.publishPriceBookVersion": {doc: `mutation($id: ID!, $at: Time!) { publishPriceBookVersion(id: $id, effectiveFrom: $at) { effectiveFrom draft } }`,
			vars: func(c *cell) map[string]any {
				vars := draftVars(c)
				vars["at"] = time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(publishHour.Add(1)) * time.Hour).Format(time.RFC3339)
				return vars
			}, padmin: ok},
		"Mutation.setPlan": {doc: `mutation { setPlan(input: {name: "free", billingMode: PREPAID, priceBookId: "1", cpuMillicores: "2000"}) { name cpuMillicores } }`,
			padmin: ok},
	}
}
