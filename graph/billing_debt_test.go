package graph_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/graph/graphtest"
)

func TestDebtFields(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	ctx := context.Background()
	owner := e.SignUp(t, "payer@example.com")
	e.SyncAuthz(t)
	vars := map[string]any{"org": fmt.Sprint(owner.OrgID), "ns": fmt.Sprint(owner.NamespaceID)}
	do := func(doc string, v any) {
		t.Helper()
		r := e.Do(t, owner.Token, doc, vars)
		require.Empty(t, r.Errors)
		r.Decode(t, v)
	}

	// Never billed: normal, nothing spent, no forecast.
	var d struct {
		OrgDebt struct {
			State                 string
			UsableMicros          string
			Currency              string
			BurnRateMicrosPerHour string
			TimeLeftSeconds       *string
		}
	}
	do(`query($org: ID!) { orgDebt(orgId: $org) { state usableMicros currency burnRateMicrosPerHour timeLeftSeconds } }`, &d)
	require.Equal(t, "NORMAL", d.OrgDebt.State)
	require.Nil(t, d.OrgDebt.TimeLeftSeconds)

	// Five units, one charged within the day: low balance, 4 left at
	// 1/24 an hour is 96 hours, plus three days of grace.
	now := time.Now().UTC()
	for i, p := range []billing.Posting{
		{Kind: billing.KindTopUp, Amount: 5_000_000, At: now.Add(-time.Hour)},
		{Kind: billing.KindCharge, Amount: -1_000_000, At: now.Add(-time.Minute)},
	} {
		p.OrgID, p.Currency, p.Actor, p.Reference = owner.OrgID, "USD", "system:test", fmt.Sprintf("graph-test:%d", i)
		_, err := e.Billing.Post(ctx, p)
		require.NoError(t, err)
	}
	e.Debt.BalanceChanged(ctx, owner.OrgID)
	do(`query($org: ID!) { orgDebt(orgId: $org) { state usableMicros currency burnRateMicrosPerHour timeLeftSeconds } }`, &d)
	require.Equal(t, "LOW_BALANCE", d.OrgDebt.State)
	require.Equal(t, "4000000", d.OrgDebt.UsableMicros)
	require.Equal(t, "41667", d.OrgDebt.BurnRateMicrosPerHour)
	require.Equal(t, fmt.Sprint((96+72)*3600), *d.OrgDebt.TimeLeftSeconds)

	var trs struct {
		OrgDebtTransitions []struct{ Event, From, To, AmountMicros, Cause string }
	}
	do(`query($org: ID!) { orgDebtTransitions(orgId: $org) { event from to amountMicros cause } }`, &trs)
	require.Len(t, trs.OrgDebtTransitions, 1)
	require.Equal(t, "low_balance", trs.OrgDebtTransitions[0].Event)
	require.Equal(t, "normal", trs.OrgDebtTransitions[0].From)

	// The secret is shown once, when set.
	var set struct {
		SetBillingWebhook struct {
			Webhook struct{ URL string }
			Secret  string
		}
	}
	do(`mutation($org: ID!) { setBillingWebhook(orgId: $org, url: "https://hooks.example.com/billing") { webhook { url } secret } }`, &set)
	require.True(t, strings.HasPrefix(set.SetBillingWebhook.Secret, "whsec_"))
	var hook struct{ OrgBillingWebhook *struct{ URL string } }
	do(`query($org: ID!) { orgBillingWebhook(orgId: $org) { url } }`, &hook)
	require.Equal(t, "https://hooks.example.com/billing", hook.OrgBillingWebhook.URL)
	r := e.Do(t, owner.Token, `mutation($org: ID!) { setBillingWebhook(orgId: $org, url: "https://169.254.169.254/") { secret } }`, vars)
	require.Len(t, r.Errors, 1)
	require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
	var removed struct{ RemoveBillingWebhook bool }
	do(`mutation($org: ID!) { removeBillingWebhook(orgId: $org) }`, &removed)
	require.True(t, removed.RemoveBillingWebhook)
	do(`query($org: ID!) { orgBillingWebhook(orgId: $org) { url } }`, &hook)
	require.Nil(t, hook.OrgBillingWebhook)

	// A spending limit, then none.
	var lim struct {
		SetSpendingLimit *struct {
			LimitMicros, MonthSpendMicros, Currency string
			Reached                                 bool
		}
	}
	do(`mutation($ns: ID!) { setSpendingLimit(namespaceId: $ns, limitMicros: "2500000") { limitMicros monthSpendMicros currency reached } }`, &lim)
	require.Equal(t, "2500000", lim.SetSpendingLimit.LimitMicros)
	require.Equal(t, "0", lim.SetSpendingLimit.MonthSpendMicros)
	require.Equal(t, "USD", lim.SetSpendingLimit.Currency)
	require.False(t, lim.SetSpendingLimit.Reached)
	var limits struct {
		OrgSpendingLimits []struct{ NamespaceID string }
	}
	do(`query($org: ID!) { orgSpendingLimits(orgId: $org) { namespaceId } }`, &limits)
	require.Equal(t, fmt.Sprint(owner.NamespaceID), limits.OrgSpendingLimits[0].NamespaceID)
	do(`mutation($ns: ID!) { setSpendingLimit(namespaceId: $ns) { limitMicros } }`, &lim)
	require.Nil(t, lim.SetSpendingLimit)
	var one struct{ NamespaceSpendingLimit *struct{ LimitMicros string } }
	do(`query($ns: ID!) { namespaceSpendingLimit(namespaceId: $ns) { limitMicros } }`, &one)
	require.Nil(t, one.NamespaceSpendingLimit)
}
