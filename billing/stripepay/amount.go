package stripepay

import (
	"strings"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

// Stripe states amounts in the smallest unit of a currency: cents for USD,
// yen for JPY, fils for KWD. These are the currencies whose smallest unit
// is not a hundredth, as Stripe lists them.
var (
	zeroDecimal = map[string]bool{
		"BIF": true, "CLP": true, "DJF": true, "GNF": true, "JPY": true, "KMF": true, "KRW": true, "MGA": true,
		"PYG": true, "RWF": true, "UGX": true, "VND": true, "VUV": true, "XAF": true, "XOF": true, "XPF": true,
	}
	threeDecimal = map[string]bool{"BHD": true, "JOD": true, "KWD": true, "OMR": true, "TND": true}
)

// microsPerMinor returns how many micros make one smallest unit of
// currency (upper-case).
func microsPerMinor(currency string) int64 {
	switch {
	case zeroDecimal[currency]:
		return billing.MicrosPerUnit
	case threeDecimal[currency]:
		return billing.MicrosPerUnit / 1000
	default:
		return billing.MicrosPerUnit / 100
	}
}

// ToMinor converts micros to Stripe's smallest unit of currency; amounts
// that are not whole smallest units are refused.
func ToMinor(m billing.Micros, currency string) (int64, error) {
	per := microsPerMinor(strings.ToUpper(currency))
	if m%per != 0 {
		return 0, errcode.Invalid("amount", "must be a whole number of the currency's smallest unit")
	}
	return m / per, nil
}

// FromMinor converts an amount in Stripe's smallest unit of currency
// (either case) to micros.
func FromMinor(minor int64, currency string) (billing.Micros, error) {
	per := microsPerMinor(strings.ToUpper(currency))
	m := minor * per
	if minor != 0 && m/per != minor {
		return 0, errcode.Invalid("amount", "out of range")
	}
	return m, nil
}
