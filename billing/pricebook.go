package billing

import (
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/tenantplane/tenantplane/collectors/usage"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// PriceMode says how a price turns a quantity into money.
type PriceMode string

// The price modes.
const (
	// PriceUnit charges one price per priced unit.
	PriceUnit PriceMode = "unit"
	// PriceGraduated charges each tier's price for the part of an org's
	// usage in a month that falls into the tier.
	PriceGraduated PriceMode = "graduated"
)

// Units per priced unit, for the resources the collectors record.
const (
	// MillicoreMinutesPerCoreHour: CPU is priced per core-hour.
	MillicoreMinutesPerCoreHour = 1000 * 60
	// MiBMinutesPerGiBHour: memory and storage are priced per GiB-hour.
	MiBMinutesPerGiBHour = 1024 * 60
	// DeviceMinutesPerDeviceHour: GPUs are priced per device-hour.
	DeviceMinutesPerDeviceHour = 60
	// BytesPerGiB: network traffic is priced per GiB.
	BytesPerGiB = 1 << 30
)

// PriceUnitDivisor returns how many usage units of resource make one
// priced unit: 60,000 millicore-minutes per core-hour, 61,440 MiB-minutes
// per GiB-hour, 60 device-minutes per device-hour, 2^30 bytes per GiB. A
// resource of a meter of its own is priced per usage unit.
func PriceUnitDivisor(resource string) int64 {
	switch {
	case resource == usage.CPU:
		return MillicoreMinutesPerCoreHour
	case resource == usage.Memory, resource == usage.Storage:
		return MiBMinutesPerGiBHour
	case resource == usage.GPU:
		return DeviceMinutesPerDeviceHour
	case strings.HasPrefix(resource, usage.NetworkPrefix):
		return BytesPerGiB
	}
	return 1
}

// PriceUnitName names the priced unit of resource, for people.
func PriceUnitName(resource string) string {
	switch {
	case resource == usage.CPU:
		return "core-hour"
	case resource == usage.Memory, resource == usage.Storage:
		return "GiB-hour"
	case resource == usage.GPU:
		return "device-hour"
	case strings.HasPrefix(resource, usage.NetworkPrefix):
		return "GiB"
	}
	return "unit"
}

// Tier is one step of a price: the usage up to UpToUnits priced units (0:
// without end) costs UnitPrice per priced unit.
type Tier struct {
	UpToUnits int64
	UnitPrice Micros
}

// Price is what one resource and class cost in one price book version.
// Class "" prices every class of the resource without a price of its own.
type Price struct {
	ID          int64
	VersionID   int64
	Resource    string
	Class       string
	Mode        PriceMode
	UnitDivisor int64
	Tiers       []Tier
}

// MaxTiers bounds the tiers of a price.
const MaxTiers = 32

// Validate checks a price as an admin sets it.
func (p Price) Validate() error {
	switch {
	case !usage.ValidResource(p.Resource):
		return errcode.Invalid("resource", fmt.Sprintf("%q is not a resource name", p.Resource))
	case !usage.ValidClass(p.Class):
		return errcode.Invalid("class", fmt.Sprintf("%q is not a class name", p.Class))
	case p.UnitDivisor <= 0:
		return errcode.Invalid("unitDivisor", "must be positive")
	case len(p.Tiers) == 0 || len(p.Tiers) > MaxTiers:
		return errcode.Invalid("tiers", fmt.Sprintf("must be 1 to %d tiers", MaxTiers))
	}
	switch p.Mode {
	case PriceUnit:
		if len(p.Tiers) != 1 || p.Tiers[0].UpToUnits != 0 {
			return errcode.Invalid("tiers", "a unit price has one tier without end")
		}
	case PriceGraduated:
	default:
		return errcode.Invalid("mode", "must be unit or graduated")
	}
	prev := int64(0)
	for i, t := range p.Tiers {
		last := i == len(p.Tiers)-1
		switch {
		case t.UnitPrice < 0:
			return errcode.Invalid("tiers", "prices must not be negative")
		case t.UnitPrice > 1_000_000*MicrosPerUnit:
			return errcode.Invalid("tiers", "a unit price is at most 1,000,000")
		case last && t.UpToUnits != 0:
			return errcode.Invalid("tiers", "the last tier has no end")
		case !last && t.UpToUnits <= prev:
			return errcode.Invalid("tiers", "tier ends must increase")
		case !last && t.UpToUnits > 1<<32:
			return errcode.Invalid("tiers", "a tier end is at most 2^32 units")
		}
		prev = t.UpToUnits
	}
	return nil
}

// cost returns the exact cost of the first x usage units of the month in
// units of micros×divisor: the sum over the tiers of the part of [0, x)
// that falls in each times its price. Below zero the first tier's price
// continues.
func (p Price) cost(x int64) *big.Int {
	total := new(big.Int)
	if x <= 0 {
		return total.Mul(big.NewInt(x), big.NewInt(p.Tiers[0].UnitPrice))
	}
	lo := int64(0)
	var part big.Int
	for _, t := range p.Tiers {
		hi := x
		if t.UpToUnits != 0 {
			hi = min(x, t.UpToUnits*p.UnitDivisor)
		}
		if hi > lo {
			total.Add(total, part.Mul(big.NewInt(hi-lo), big.NewInt(t.UnitPrice)))
		}
		if t.UpToUnits == 0 || hi == x {
			break
		}
		lo = t.UpToUnits * p.UnitDivisor
	}
	return total
}

// tierAt returns the tier that usage unit x (counted from 0) of the month
// falls in.
func (p Price) tierAt(x int64) Tier {
	for _, t := range p.Tiers {
		if t.UpToUnits == 0 || x < t.UpToUnits*p.UnitDivisor {
			return t
		}
	}
	return p.Tiers[len(p.Tiers)-1]
}

// Amount returns what quantity usage units cost when the org had already
// used start units of the resource and class in the month (graduated
// prices only; a unit price ignores start), rounded once, half to even,
// and the unit price of the tier the quantity ends in. A negative quantity
// (a correction) gives back what the same units cost.
func (p Price) Amount(start, quantity int64) (amount, unitPrice Micros, err error) {
	if p.Mode == PriceUnit || len(p.Tiers) == 1 {
		a, err := MulDivRound(quantity, p.Tiers[0].UnitPrice, p.UnitDivisor)
		return a, p.Tiers[0].UnitPrice, err
	}
	end := start + quantity
	n := p.cost(end)
	n.Sub(n, p.cost(start))
	a, err := roundBig(n, p.UnitDivisor)
	last := end - 1
	if quantity <= 0 {
		last = start - 1
	}
	return a, p.tierAt(max(last, 0)).UnitPrice, err
}

// roundBig returns n÷d rounded half to even.
func roundBig(n *big.Int, d int64) (int64, error) {
	bd := big.NewInt(d)
	q, r := new(big.Int).QuoRem(n, bd, new(big.Int)) // truncated towards zero
	twice := new(big.Int).Abs(r)
	twice.Lsh(twice, 1)
	if c := twice.Cmp(bd); c > 0 || c == 0 && q.Bit(0) == 1 {
		q.Add(q, big.NewInt(int64(n.Sign())))
	}
	if !q.IsInt64() {
		return 0, errcode.New(errcode.BadUserInput, "amount out of range")
	}
	return q.Int64(), nil
}

// PriceBook holds the prices of one currency in versions.
type PriceBook struct {
	ID        int64
	Name      string
	Currency  string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Validate checks a new price book.
func (b PriceBook) Validate() error {
	if !validName(b.Name) {
		return errcode.Invalid("name", "must be a lower-case DNS label of at most 63 characters")
	}
	if !ValidCurrency(b.Currency) {
		return errcode.Invalid("currency", "must be a three-letter upper-case code")
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// PriceBookVersion is one set of prices of a book. A draft has no
// EffectiveFrom; a published version prices every hour from EffectiveFrom
// until the next version's, and never changes.
type PriceBookVersion struct {
	ID            int64
	PriceBookID   int64
	Note          string
	EffectiveFrom *time.Time
	PublishedAt   *time.Time
	CreatedAt     time.Time
	Prices        []Price
}

// Draft reports whether the version is not published.
func (v PriceBookVersion) Draft() bool { return v.PublishedAt == nil }

// PriceFor returns the price of resource and class: its own, else the
// resource's price for every class; ok is false when neither exists, and
// the usage is free.
func (v *PriceBookVersion) PriceFor(resource, class string) (p *Price, ok bool) {
	var any *Price
	for i := range v.Prices {
		q := &v.Prices[i]
		if q.Resource != resource {
			continue
		}
		if q.Class == class {
			return q, true
		}
		if q.Class == "" {
			any = q
		}
	}
	return any, any != nil
}

// PriceCatalog is every published version of every price book, to find
// the version in force for an hour.
type PriceCatalog struct {
	books    map[int64]PriceBook
	versions map[int64][]*PriceBookVersion // by book, effective_from ascending
}

// NewPriceCatalog indexes books and their published versions; drafts are
// left out.
func NewPriceCatalog(books []PriceBook, versions []PriceBookVersion) *PriceCatalog {
	c := &PriceCatalog{books: map[int64]PriceBook{}, versions: map[int64][]*PriceBookVersion{}}
	for _, b := range books {
		c.books[b.ID] = b
	}
	for i := range versions {
		v := &versions[i]
		if v.EffectiveFrom == nil {
			continue
		}
		c.versions[v.PriceBookID] = append(c.versions[v.PriceBookID], v)
	}
	for _, vs := range c.versions {
		sort.Slice(vs, func(i, j int) bool { return vs[i].EffectiveFrom.Before(*vs[j].EffectiveFrom) })
	}
	return c
}

// Book returns a price book.
func (c *PriceCatalog) Book(id int64) (PriceBook, bool) {
	b, ok := c.books[id]
	return b, ok
}

// VersionAt returns the version of book in force at t: the published one
// with the latest EffectiveFrom at or before t.
func (c *PriceCatalog) VersionAt(book int64, t time.Time) (*PriceBookVersion, bool) {
	vs := c.versions[book]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].EffectiveFrom.After(t) })
	if i == 0 {
		return nil, false
	}
	return vs[i-1], true
}

// WithDraft returns a copy of the catalog in which draft takes effect for
// its book from from on, replacing whatever was in force then; the
// re-rating preview prices with it.
func (c *PriceCatalog) WithDraft(draft PriceBookVersion, from time.Time) *PriceCatalog {
	out := &PriceCatalog{books: c.books, versions: map[int64][]*PriceBookVersion{}}
	for k, vs := range c.versions {
		out.versions[k] = vs
	}
	d := draft
	f := from.UTC()
	d.EffectiveFrom = &f
	var vs []*PriceBookVersion
	for _, v := range c.versions[d.PriceBookID] {
		if v.EffectiveFrom.Before(f) {
			vs = append(vs, v)
		}
	}
	out.versions[d.PriceBookID] = append(vs, &d)
	return out
}

// PlanBillingMode says when an org on a plan pays.
type PlanBillingMode string

// The billing modes.
const (
	// PlanPrepaid orgs top up a balance that usage draws down.
	PlanPrepaid PlanBillingMode = "prepaid"
	// PlanPostpaid orgs are invoiced monthly for their usage.
	PlanPostpaid PlanBillingMode = "postpaid"
)

// PlanQuota is the quota a plan grants; 0 means none of it.
type PlanQuota struct {
	CPUMillicores int64
	MemoryMiB     int64
	StorageMiB    int64
	GPUs          int64
	Pods          int64
	Namespaces    int64
}

// Plan binds a price book, a billing mode and a quota; orgs name one.
type Plan struct {
	Name        string
	DisplayName string
	BillingMode PlanBillingMode
	PriceBookID int64
	Quota       PlanQuota
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Validate checks a plan as an admin sets it.
func (p Plan) Validate() error {
	switch {
	case !validName(p.Name):
		return errcode.Invalid("name", "must be a lower-case DNS label of at most 63 characters")
	case len(p.DisplayName) > 200:
		return errcode.Invalid("displayName", "must be at most 200 characters")
	case p.BillingMode != PlanPrepaid && p.BillingMode != PlanPostpaid:
		return errcode.Invalid("billingMode", "must be prepaid or postpaid")
	case p.PriceBookID <= 0:
		return errcode.Invalid("priceBookId", "is required")
	}
	q := p.Quota
	for _, v := range []int64{q.CPUMillicores, q.MemoryMiB, q.StorageMiB, q.GPUs, q.Pods, q.Namespaces} {
		if v < 0 {
			return errcode.Invalid("quota", "must not be negative")
		}
	}
	return nil
}
