package stripepay_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/billing/stripepay"
)

func TestSupersedes(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	prev := stripepay.ObjectState{Exists: true, Status: "succeeded", EventCreated: at}
	for _, c := range []struct {
		name    string
		prev    stripepay.ObjectState
		created time.Time
		status  string
		want    bool
	}{
		{"first event", stripepay.ObjectState{}, at, "failed", true},
		{"newer", prev, at.Add(time.Second), "failed", true},
		{"older", prev, at.Add(-time.Second), "succeeded", false},
		{"same second, lower rank", prev, at, "failed", false},
		{"same second, same state", prev, at, "succeeded", true},
		{"same second, higher rank", stripepay.ObjectState{Exists: true, Status: "payment_failed", EventCreated: at}, at, "paid", true},
		{"same second, pending after open", stripepay.ObjectState{Exists: true, Status: "open", EventCreated: at}, at, "pending", true},
	} {
		require.Equal(t, c.want, stripepay.Supersedes(c.prev, c.created, c.status), c.name)
	}
}

func TestMinorUnits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		currency string
		micros   int64
		minor    int64
	}{
		{"USD", 12_340_000, 1234}, {"usd", 10_000, 1}, {"JPY", 500_000_000, 500}, {"KWD", 1_234_000, 1234}, {"EUR", 0, 0},
		{"EUR", -250_000, -25},
	} {
		got, err := stripepay.ToMinor(c.micros, c.currency)
		require.NoError(t, err, c)
		require.Equal(t, c.minor, got, c)
		back, err := stripepay.FromMinor(c.minor, c.currency)
		require.NoError(t, err, c)
		require.Equal(t, c.micros, back, c)
	}
	for _, c := range []struct {
		currency string
		micros   int64
	}{{"USD", 1}, {"USD", 12_345_678}, {"JPY", 1_500_000}, {"KWD", 1_000_500}} {
		_, err := stripepay.ToMinor(c.micros, c.currency)
		require.Error(t, err, c)
	}
	_, err := stripepay.FromMinor(1<<62, "JPY")
	require.Error(t, err)
}

func TestInvoiceItemsSumToTheRoundedTotal(t *testing.T) {
	t.Parallel()
	inv := billing.Invoice{Currency: "USD", Subtotal: 12_345_678, TaxRateBPS: 1000, Tax: 1_234_568, Total: 13_580_246,
		Lines: []billing.InvoiceLine{{Amount: 10_000_000}, {Amount: 2_345_678}, {Amount: 4_000}}}
	inv.Subtotal += 4_000
	inv.Total += 4_000
	items, total, err := stripepay.InvoiceItemAmounts(inv)
	require.NoError(t, err)
	require.Equal(t, int64(1358), total) // 13.584246 → 13.58
	keys := map[string]int64{}
	sum := int64(0)
	for _, it := range items {
		keys[stripepay.ItemKey(it)] = stripepay.ItemMinor(it)
		sum += stripepay.ItemMinor(it)
	}
	// 10.00 + 2.35 + 0.00 (left out) + tax 1.23 = 13.58: no rounding item.
	require.Equal(t, map[string]int64{"line-0": 1000, "line-1": 235, "tax": 123}, keys)
	require.Equal(t, total, sum)

	inv.Lines = []billing.InvoiceLine{{Amount: 5_000}, {Amount: 5_000}, {Amount: 5_000}}
	inv.Subtotal, inv.Tax, inv.Total = 15_000, 0, 15_000
	items, total, err = stripepay.InvoiceItemAmounts(inv)
	require.NoError(t, err)
	require.Equal(t, int64(2), total) // 1.5 cents → 2
	keys = map[string]int64{}
	for _, it := range items {
		keys[stripepay.ItemKey(it)] = stripepay.ItemMinor(it)
	}
	// each 0.5 cent rounds to 0 (even), so the rounding item carries it.
	require.Equal(t, map[string]int64{"rounding": 2}, keys)
}

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	good := func() stripepay.Config {
		return stripepay.Config{APIKey: "sk_test_1", WebhookSecrets: []string{"whsec_1"},
			SuccessURL: "https://c.example/ok", CancelURL: "https://c.example/no"}
	}
	deps := stripepay.Deps{Store: nil, Clock: time.Now}
	for name, mutate := range map[string]func(*stripepay.Config){
		"no key":           func(c *stripepay.Config) { c.APIKey = "" },
		"no secret":        func(c *stripepay.Config) { c.WebhookSecrets = nil },
		"empty secret":     func(c *stripepay.Config) { c.WebhookSecrets = []string{"whsec_1", ""} },
		"relative URL":     func(c *stripepay.Config) { c.SuccessURL = "/billing" },
		"bad API URL":      func(c *stripepay.Config) { c.APIURL = "localhost:12111" },
		"bounds reversed":  func(c *stripepay.Config) { c.MinTopUp, c.MaxTopUp = 10, 5 },
		"tolerance":        func(c *stripepay.Config) { c.WebhookTolerance = 2 * time.Hour },
		"currency":         func(c *stripepay.Config) { c.Currency = "usd" },
		"schedule":         func(c *stripepay.Config) { c.ReconcileSchedule = "every hour" },
		"window too short": func(c *stripepay.Config) { c.ReconcileWindow = time.Minute },
	} {
		c := good()
		mutate(&c)
		_, err := stripepay.New(c, deps)
		require.ErrorContains(t, err, "stripe config", name)
	}
	_, err := stripepay.New(good(), deps)
	require.ErrorContains(t, err, "a store and a clock are required")
}
