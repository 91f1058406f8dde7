package billing_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

func TestAdminReason(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"  refund of ticket 42 ":  "refund of ticket 42",
		"ünïcødé":                 "ünïcødé",
		strings.Repeat("x", 500):  strings.Repeat("x", 500),
		"":                        "!",
		"   ":                     "!",
		strings.Repeat("x", 501):  "!",
		"line\nbreak":             "!",
		"bell\a":                  "!",
		string([]byte{0xff, 'a'}): "!",
	} {
		got, err := billing.AdminReason(in)
		if want == "!" {
			require.Equal(t, errcode.BadUserInput, errcode.Of(err), "%q", in)
			continue
		}
		require.NoError(t, err, "%q", in)
		require.Equal(t, want, got)
	}
}

// recordingStore records what Admin asks of the store.
type recordingStore struct {
	posts []billing.Posting
	plans []string
	audit []billing.AdminAudit
}

func (s *recordingStore) PostAudited(_ context.Context, p billing.Posting, a billing.AdminAudit) (billing.Posted, error) {
	s.posts, s.audit = append(s.posts, p), append(s.audit, a)
	return billing.Posted{}, nil
}

func (s *recordingStore) SetOrgPlan(_ context.Context, _ int64, plan string, a billing.AdminAudit) (string, error) {
	s.plans, s.audit = append(s.plans, plan), append(s.audit, a)
	return "free", nil
}

func TestAdminRefusesAllButPlatformAdminsAndValidates(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	st := &recordingStore{}
	m, err := billing.NewAdmin(st, func() time.Time { return now })
	require.NoError(t, err)
	in := billing.AdminPosting{OrgID: 7, Kind: billing.KindAdjustment, Amount: -5, Currency: "USD", Reason: " typo ", IdempotencyKey: "k1"}
	as := func(a tenancy.Actor) context.Context { return tenancy.WithActor(context.Background(), a) }

	_, err = m.Post(context.Background(), in)
	require.Equal(t, errcode.Unauthenticated, errcode.Of(err))
	_, err = m.Post(as(tenancy.Actor{UserID: 3}), in)
	require.Equal(t, errcode.Forbidden, errcode.Of(err))
	_, err = m.ChangePlan(as(tenancy.Actor{UserID: 3}), 7, "team", "deal")
	require.Equal(t, errcode.Forbidden, errcode.Of(err))
	require.Empty(t, st.audit)

	_, err = m.Post(as(tenancy.Actor{UserID: 1, PlatformAdmin: true, RequestID: "r1"}), in)
	require.NoError(t, err)
	require.Equal(t, billing.Posting{OrgID: 7, Kind: billing.KindAdjustment, Amount: -5, Currency: "USD",
		Reference: "admin:adjustment:org:7:k1", Description: "typo", Actor: "user:1", At: now}, st.posts[0])
	require.Equal(t, billing.AdminAudit{By: tenancy.Actor{UserID: 1, PlatformAdmin: true, RequestID: "r1"}, Action: "billing.adjust", Target: "org:7",
		Detail: map[string]any{"amount": "-0.000005", "currency": "USD", "reason": "typo", "reference": "admin:adjustment:org:7:k1"}}, st.audit[0])

	for name, bad := range map[string]billing.AdminPosting{
		"no reason":       {OrgID: 7, Kind: billing.KindAdjustment, Amount: 1, Currency: "USD"},
		"negative credit": {OrgID: 7, Kind: billing.KindCredit, Amount: -1, Currency: "USD", Reason: "x"},
		"top-up":          {OrgID: 7, Kind: billing.KindTopUp, Amount: 1, Currency: "USD", Reason: "x"},
		"long key":        {OrgID: 7, Kind: billing.KindCredit, Amount: 1, Currency: "USD", Reason: "x", IdempotencyKey: strings.Repeat("k", 101)},
		"no org":          {Kind: billing.KindCredit, Amount: 1, Currency: "USD", Reason: "x"},
	} {
		_, err := m.Post(as(tenancy.Actor{System: "test"}), bad)
		require.Equal(t, errcode.BadUserInput, errcode.Of(err), name)
	}
	// Without a key, each call is a new posting.
	in.IdempotencyKey = ""
	_, err = m.Post(as(tenancy.Actor{System: "ops"}), in)
	require.NoError(t, err)
	_, err = m.Post(as(tenancy.Actor{System: "ops"}), in)
	require.NoError(t, err)
	require.NotEqual(t, st.posts[1].Reference, st.posts[2].Reference)
	require.Equal(t, "system:ops", st.posts[1].Actor)

	for plan, ok := range map[string]bool{"team": true, "pro-2": true, "Team": false, "-x": false, "": false, strings.Repeat("a", 64): false} {
		_, err := m.ChangePlan(as(tenancy.Actor{System: "ops"}), 7, plan, "deal")
		if ok {
			require.NoError(t, err, plan)
		} else {
			require.Equal(t, errcode.BadUserInput, errcode.Of(err), plan)
		}
	}
	_, err = m.ChangePlan(as(tenancy.Actor{System: "ops"}), 7, "team", "")
	require.Equal(t, errcode.BadUserInput, errcode.Of(err))
}
