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

// recordingStore records what Admin asks of the store; invoices are the
// invoices it holds.
type recordingStore struct {
	posts    []billing.Posting
	plans    []string
	audit    []billing.AdminAudit
	invoices map[int64]billing.Invoice
	voided   map[int64]string
	paid     []paidCall
}

type paidCall struct {
	id      int64
	payment *billing.Posting
	reason  string
	by      tenancy.Actor
}

func (s *recordingStore) Invoice(_ context.Context, orgID, id int64) (billing.Invoice, error) {
	inv, ok := s.invoices[id]
	if !ok || inv.OrgID != orgID {
		return billing.Invoice{}, errcode.New(errcode.NotFound, "invoice not found")
	}
	return inv, nil
}

func (s *recordingStore) VoidInvoice(_ context.Context, id int64, reason string, _ tenancy.Actor) (billing.Invoice, error) {
	if s.voided == nil {
		s.voided = map[int64]string{}
	}
	s.voided[id] = reason
	inv := s.invoices[id]
	inv.Status, inv.VoidReason = billing.InvoiceStatusVoid, reason
	return inv, nil
}

func (s *recordingStore) MarkInvoicePaid(_ context.Context, id int64, payment *billing.Posting, reason string, by tenancy.Actor) (billing.Invoice, error) {
	s.paid = append(s.paid, paidCall{id: id, payment: payment, reason: reason, by: by})
	inv := s.invoices[id]
	inv.Status = billing.InvoiceStatusPaid
	return inv, nil
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

func TestAdminVoidsAndMarksInvoicesPaid(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	st := &recordingStore{invoices: map[int64]billing.Invoice{
		1: {ID: 1, OrgID: 7, BillingMode: billing.Postpaid, Status: billing.InvoiceStatusFinalized, Currency: "EUR", Total: 119_000_000},
		2: {ID: 2, OrgID: 7, BillingMode: billing.Prepaid, Status: billing.InvoiceStatusPaid, Currency: "EUR", Total: 5},
		3: {ID: 3, OrgID: 7, BillingMode: billing.Postpaid, Status: billing.InvoiceStatusDraft, Currency: "EUR", Total: 5},
		4: {ID: 4, OrgID: 8, BillingMode: billing.Postpaid, Status: billing.InvoiceStatusFinalized, Currency: "EUR"},
	}}
	m, err := billing.NewAdmin(st, func() time.Time { return now })
	require.NoError(t, err)
	as := func(a tenancy.Actor) context.Context { return tenancy.WithActor(context.Background(), a) }
	padmin := tenancy.Actor{UserID: 1, PlatformAdmin: true, RequestID: "r2"}

	for _, tc := range []struct {
		name    string
		ctx     context.Context
		org, id int64
		reason  string
		code    errcode.Code
	}{
		{"anonymous", context.Background(), 7, 1, "wire", errcode.Unauthenticated},
		{"a user", as(tenancy.Actor{UserID: 3}), 7, 1, "wire", errcode.Forbidden},
		{"no reason", as(padmin), 7, 1, " ", errcode.BadUserInput},
		{"another org's", as(padmin), 8, 1, "wire", errcode.NotFound},
		{"unknown", as(padmin), 7, 99, "wire", errcode.NotFound},
		{"prepaid", as(padmin), 7, 2, "wire", errcode.Conflict},
		{"draft", as(padmin), 7, 3, "wire", errcode.Conflict},
	} {
		_, err := m.MarkInvoicePaid(tc.ctx, tc.org, tc.id, tc.reason)
		require.Equal(t, tc.code, errcode.Of(err), tc.name)
		if tc.code != errcode.Conflict {
			_, err = m.VoidInvoice(tc.ctx, tc.org, tc.id, tc.reason)
			require.Equal(t, tc.code, errcode.Of(err), "void: "+tc.name)
		}
	}
	require.Empty(t, st.paid)
	require.Empty(t, st.voided)

	paid, err := m.MarkInvoicePaid(as(padmin), 7, 1, " transfer 2026-12-04 ref 881 ")
	require.NoError(t, err)
	require.Equal(t, billing.InvoiceStatusPaid, paid.Status)
	require.Equal(t, []paidCall{{id: 1, reason: "transfer 2026-12-04 ref 881", by: padmin, payment: &billing.Posting{
		OrgID: 7, Kind: billing.KindPayment, Amount: 119_000_000, Currency: "EUR", Reference: "admin:invoice:1:paid",
		Description: "transfer 2026-12-04 ref 881", Actor: "user:1", At: now}}}, st.paid)
	// Nothing to pay: paid without a posting.
	_, err = m.MarkInvoicePaid(as(tenancy.Actor{System: "ops"}), 8, 4, "written off")
	require.NoError(t, err)
	require.Nil(t, st.paid[1].payment)

	v, err := m.VoidInvoice(as(padmin), 7, 3, "test account")
	require.NoError(t, err)
	require.Equal(t, billing.InvoiceStatusVoid, v.Status)
	require.Equal(t, map[int64]string{3: "test account"}, st.voided)
}
