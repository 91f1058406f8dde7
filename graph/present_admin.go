package graph

import (
	"context"
	"fmt"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/tenancy"
)

func presentBalanceChange(p billing.Posted) *model.BalanceChange {
	ref := ""
	if len(p.Entries) > 0 {
		ref = p.Entries[0].Reference
	}
	return &model.BalanceChange{
		Reference: ref, Duplicate: p.Duplicate, Currency: p.Balance.Currency,
		Cash: billing.FormatMicros(p.Balance.Cash), Credit: billing.FormatMicros(p.Balance.Credit),
	}
}

// eachOrgNamespace applies change (a suspension or a resumption, which
// records its own audit row with the reason) to every namespace of an
// org but those being deleted, and counts those whose state it changed.
func (r *mutationResolver) eachOrgNamespace(ctx context.Context, orgID int64, reason string,
	change func(ctx context.Context, nsID int64, reason string) error,
) (int, error) {
	reason, err := billing.AdminReason(reason)
	if err != nil {
		return 0, err
	}
	if _, err := r.tenancy.Org(ctx, orgID); err != nil {
		return 0, err
	}
	changed := 0
	page := tenancy.PageArgs{First: tenancy.MaxPageSize}
	for {
		c, err := r.tenancy.OrgNamespaces(ctx, orgID, page)
		if err != nil {
			return changed, err
		}
		for _, ns := range c.Nodes() {
			if ns.State == tenancy.NamespaceDeleting {
				continue
			}
			if err := change(ctx, ns.ID, reason); err != nil {
				return changed, fmt.Errorf("org %d: %w", orgID, err)
			}
			after, err := r.tenancy.Namespace(ctx, ns.ID)
			if err != nil {
				return changed, err
			}
			if after.State != ns.State {
				changed++
			}
		}
		if !c.PageInfo.HasNextPage {
			return changed, nil
		}
		page.After = c.PageInfo.EndCursor
	}
}
