package graph

import (
	"context"
	"time"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/graph/model"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

// Pricing is the billing service behind the price book, plan and charge
// fields; *billing.Pricing is one.
type Pricing interface {
	PriceBooks(ctx context.Context) ([]billing.PriceBook, error)
	CreatePriceBook(ctx context.Context, name, currency string, by tenancy.Actor) (billing.PriceBook, error)
	Versions(ctx context.Context, bookID int64) ([]billing.PriceBookVersion, error)
	Version(ctx context.Context, id int64) (billing.PriceBookVersion, error)
	CreateDraft(ctx context.Context, bookID int64, note string, copyFrom int64, by tenancy.Actor) (billing.PriceBookVersion, error)
	SetPrice(ctx context.Context, p billing.Price, by tenancy.Actor) (billing.PriceBookVersion, error)
	DeletePrice(ctx context.Context, versionID int64, resource, class string, by tenancy.Actor) (billing.PriceBookVersion, error)
	Publish(ctx context.Context, versionID int64, effectiveFrom time.Time, by tenancy.Actor) (billing.PriceBookVersion, error)
	Plans(ctx context.Context) ([]billing.Plan, error)
	SetPlan(ctx context.Context, p billing.Plan, by tenancy.Actor) (billing.Plan, error)
	Charge(ctx context.Context, orgID, id int64) (billing.ChargeLine, error)
	ChargeSamples(ctx context.Context, l billing.ChargeLine) ([]billing.ChargeSample, error)
	OrgCharges(ctx context.Context, orgID int64, from, to time.Time, afterID int64, limit int) ([]billing.ChargeLine, bool, error)
	PreviewRerating(ctx context.Context, versionID int64, from, to time.Time) (billing.ChargePreview, error)
}

func presentPriceBook(b billing.PriceBook) *model.PriceBook {
	return &model.PriceBook{ID: b.ID, Name: b.Name, Currency: b.Currency, CreatedAt: b.CreatedAt}
}

func presentVersion(v billing.PriceBookVersion) *model.PriceBookVersion {
	out := &model.PriceBookVersion{ID: v.ID, PriceBookID: v.PriceBookID, Note: v.Note, EffectiveFrom: v.EffectiveFrom,
		PublishedAt: v.PublishedAt, Draft: v.Draft(), CreatedAt: v.CreatedAt, Prices: []*model.Price{}}
	for _, p := range v.Prices {
		mp := &model.Price{Resource: p.Resource, Class: p.Class, Mode: model.PriceModeUnit, Unit: billing.PriceUnitName(p.Resource),
			UnitDivisor: p.UnitDivisor}
		if p.Mode == billing.PriceGraduated {
			mp.Mode = model.PriceModeGraduated
		}
		for _, t := range p.Tiers {
			mt := &model.PriceTier{UnitPrice: billing.FormatMicros(t.UnitPrice)}
			if t.UpToUnits != 0 {
				u := t.UpToUnits
				mt.UpToUnits = &u
			}
			mp.Tiers = append(mp.Tiers, mt)
		}
		out.Prices = append(out.Prices, mp)
	}
	return out
}

func presentPlan(p billing.Plan) *model.Plan {
	q := p.Quota
	out := &model.Plan{Name: p.Name, DisplayName: p.DisplayName, BillingMode: model.BillingModePrepaid, PriceBookID: p.PriceBookID,
		CPUMillicores: q.CPUMillicores, MemoryMiB: q.MemoryMiB, StorageMiB: q.StorageMiB, Gpus: q.GPUs, Pods: q.Pods, Namespaces: q.Namespaces}
	if p.BillingMode == billing.PlanPostpaid {
		out.BillingMode = model.BillingModePostpaid
	}
	return out
}

func presentCharge(l billing.ChargeLine) *model.ChargeLine {
	out := &model.ChargeLine{ID: l.ID, OrgID: l.OrgID, NamespaceID: l.NamespaceID, Resource: l.Resource, Class: l.Class,
		Hour: l.Hour, Revision: l.Revision, Quantity: l.Quantity, Unit: usage.Unit(l.Resource),
		Amount: billing.FormatMicros(l.Amount), Currency: l.Currency, UnitPrice: billing.FormatMicros(l.UnitPrice),
		UnitDivisor: l.UnitDivisor, TierStart: l.TierStart, RatedAt: l.RatedAt}
	if l.PriceBookVersionID != 0 {
		v := l.PriceBookVersionID
		out.PriceBookVersionID = &v
	}
	if l.LedgerReference != "" {
		r := l.LedgerReference
		out.LedgerReference = &r
	}
	return out
}

func priceInput(in model.SetPriceInput) (billing.Price, error) {
	p := billing.Price{VersionID: in.VersionID, Resource: in.Resource, Class: deref(in.Class), Mode: billing.PriceUnit}
	if in.Mode == model.PriceModeGraduated {
		p.Mode = billing.PriceGraduated
	}
	if in.UnitDivisor != nil {
		p.UnitDivisor = *in.UnitDivisor
		if p.UnitDivisor <= 0 {
			return p, errcode.Invalid("unitDivisor", "must be positive")
		}
	}
	for _, t := range in.Tiers {
		price, err := billing.ParseMicros(t.UnitPrice)
		if err != nil {
			return p, errcode.Invalid("tiers.unitPrice", "must be a decimal amount with at most six decimals")
		}
		tier := billing.Tier{UnitPrice: price}
		if t.UpToUnits != nil {
			tier.UpToUnits = *t.UpToUnits
		}
		p.Tiers = append(p.Tiers, tier)
	}
	return p, nil
}

func planInput(in model.SetPlanInput) billing.Plan {
	v := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	p := billing.Plan{Name: in.Name, DisplayName: deref(in.DisplayName), BillingMode: billing.PlanPrepaid, PriceBookID: in.PriceBookID,
		Quota: billing.PlanQuota{CPUMillicores: v(in.CPUMillicores), MemoryMiB: v(in.MemoryMiB), StorageMiB: v(in.StorageMiB),
			GPUs: v(in.Gpus), Pods: v(in.Pods), Namespaces: v(in.Namespaces)}}
	if in.BillingMode == model.BillingModePostpaid {
		p.BillingMode = billing.PlanPostpaid
	}
	return p
}
