package billing

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// Micros is an amount of money in millionths of a currency unit:
// 1,000,000 micros is one dollar, euro or franc. Amounts are signed.
type Micros = int64

// MicrosPerUnit is how many micros make one unit of a currency.
const MicrosPerUnit = 1_000_000

// ValidCurrency reports whether c is an upper-case ISO 4217 style code of
// three letters.
func ValidCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

// MulDivRound returns a×b÷d rounded half to even, computed exactly in 128
// bits, for any int64 a and b and a positive d. It fails only when d is
// not positive or the result does not fit in an int64.
func MulDivRound(a, b, d int64) (int64, error) {
	if d <= 0 {
		return 0, fmt.Errorf("dividing by %d", d)
	}
	neg := (a < 0) != (b < 0)
	hi, lo := bits.Mul64(absU(a), absU(b))
	ud := uint64(d)
	if hi >= ud {
		return 0, errcode.New(errcode.BadUserInput, "amount out of range")
	}
	q, r := bits.Div64(hi, lo, ud)
	// r < d < 2^63, so 2r cannot overflow.
	if twice := 2 * r; twice > ud || (twice == ud && q&1 == 1) {
		q++
	}
	return signed(q, neg && q != 0)
}

// RoundDiv returns n÷d rounded half to even for a positive d.
func RoundDiv(n, d int64) (int64, error) { return MulDivRound(n, 1, d) }

func absU(v int64) uint64 {
	if v < 0 {
		return uint64(-(v + 1)) + 1 // no overflow at math.MinInt64
	}
	return uint64(v)
}

func signed(q uint64, neg bool) (int64, error) {
	if neg {
		if q > uint64(math.MaxInt64)+1 {
			return 0, errcode.New(errcode.BadUserInput, "amount out of range")
		}
		return -int64(q-1) - 1, nil
	}
	if q > math.MaxInt64 {
		return 0, errcode.New(errcode.BadUserInput, "amount out of range")
	}
	return int64(q), nil
}

// FormatMicros writes m as a decimal string in currency units with six
// decimals, such as "-12.345000". It is exact for every int64.
func FormatMicros(m Micros) string {
	sign := ""
	u := absU(m)
	if m < 0 {
		sign = "-"
	}
	return fmt.Sprintf("%s%d.%06d", sign, u/MicrosPerUnit, u%MicrosPerUnit)
}

// ParseMicros reads a decimal amount in currency units, such as "12.5",
// "-0.000001" or "100", into micros. More than six decimals, exponents,
// and values outside int64 are refused.
func ParseMicros(s string) (Micros, error) {
	bad := errcode.Invalid("amount", "must be a decimal number of currency units with at most six decimals")
	if s == "" || len(s) > 32 {
		return 0, bad
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && (frac == "" || len(frac) > 6)) || !digits(whole) || !digits(frac) {
		return 0, bad
	}
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil {
		return 0, bad
	}
	frac += strings.Repeat("0", 6-len(frac))
	f, _ := strconv.ParseUint(frac, 10, 64)
	hi, lo := bits.Mul64(w, MicrosPerUnit)
	sum, carry := bits.Add64(lo, f, 0)
	if hi != 0 || carry != 0 {
		return 0, bad
	}
	v, err := signed(sum, neg && sum != 0)
	if err != nil {
		return 0, bad
	}
	return v, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
