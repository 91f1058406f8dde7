package billing_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
)

func TestGiftCodeSecretsNormalizeAndHash(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		code, err := billing.NewGiftCodeSecret()
		require.NoError(t, err)
		require.Len(t, code, 24)
		require.Equal(t, 4, strings.Count(code, "-"))
		norm := billing.NormalizeGiftCode(code)
		require.Len(t, norm, 20, code)
		require.False(t, seen[norm], "codes repeat")
		seen[norm] = true
		// However it is typed, it hashes the same.
		typed := strings.ToLower(strings.ReplaceAll(code, "-", " "))
		require.Equal(t, billing.HashGiftCode(norm), billing.HashGiftCode(billing.NormalizeGiftCode(typed)))
	}
	cases := []struct{ in, want string }{
		{"7QK2-M9XD-0AR4-PZ3E-HV6T", "7QK2M9XD0AR4PZ3EHV6T"},
		{"7qk2 m9xd 0ar4 pz3e hv6t", "7QK2M9XD0AR4PZ3EHV6T"},
		{"7QK2-M9XD-OAR4-PZ3E-HV6T", "7QK2M9XD0AR4PZ3EHV6T"}, // O read as 0
		{"ILIL-M9XD-0AR4-PZ3E-HV6T", "1111M9XD0AR4PZ3EHV6T"}, // I and L read as 1
		{"7QK2-M9XD-0AR4-PZ3E-HV6", ""},                      // too short
		{"7QK2-M9XD-0AR4-PZ3E-HV6TX", ""},                    // too long
		{"7QK2-M9XD-0AR4-PZ3E-HV6U", ""},                     // U is not in the alphabet
		{"7QK2;M9XD-0AR4-PZ3E-HV6T", ""},
		{strings.Repeat("A", 100), ""},
		{"", ""},
	}
	for _, c := range cases {
		require.Equal(t, c.want, billing.NormalizeGiftCode(c.in), c.in)
	}
	require.Len(t, billing.HashGiftCode("X"), 64)
	require.NotEqual(t, billing.HashGiftCode("A"), billing.HashGiftCode("B"))
}

func TestGiftCodeInputValidate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ok := billing.GiftCodeInput{Amount: 5_000_000, Currency: "USD", ExpiresAt: now.Add(24 * time.Hour), CreditValidFor: 30 * 24 * time.Hour, MaxRedemptions: 100}
	require.NoError(t, ok.Validate(now))
	never := ok
	never.CreditValidFor = 0
	require.NoError(t, never.Validate(now))
	for name, mutate := range map[string]func(*billing.GiftCodeInput){
		"zero amount":     func(i *billing.GiftCodeInput) { i.Amount = 0 },
		"negative amount": func(i *billing.GiftCodeInput) { i.Amount = -1 },
		"currency":        func(i *billing.GiftCodeInput) { i.Currency = "usd" },
		"expired":         func(i *billing.GiftCodeInput) { i.ExpiresAt = now },
		"negative valid":  func(i *billing.GiftCodeInput) { i.CreditValidFor = -time.Hour },
		"short valid":     func(i *billing.GiftCodeInput) { i.CreditValidFor = time.Minute },
		"no redemptions":  func(i *billing.GiftCodeInput) { i.MaxRedemptions = 0 },
		"too many":        func(i *billing.GiftCodeInput) { i.MaxRedemptions = billing.MaxGiftCodeRedemptions + 1 },
		"long note":       func(i *billing.GiftCodeInput) { i.Note = strings.Repeat("n", billing.MaxGiftCodeNote+1) },
	} {
		in := ok
		mutate(&in)
		require.Equal(t, errcode.BadUserInput, errcode.Of(in.Validate(now)), name)
	}
}
