package graph_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tenantplane/tenantplane/billing"
	"github.com/tenantplane/tenantplane/graph/graphtest"
	"github.com/tenantplane/tenantplane/tenancy"
)

const (
	adjustMutation = `mutation($in: AdjustBalanceInput!) { adjustBalance(input: $in) { reference duplicate currency cash credit } }`
	creditMutation = `mutation($in: GrantCreditInput!) { grantCredit(input: $in) { reference duplicate currency cash credit } }`
)

type balanceChange struct {
	Reference, Currency, Cash, Credit string
	Duplicate                         bool
}

// refused requires that token may not run doc: FORBIDDEN.
func refused(t *testing.T, e *graphtest.Env, token, doc string, vars map[string]any) {
	t.Helper()
	r := e.Do(t, token, doc, vars)
	require.Len(t, r.Errors, 1, "%s", r.Data)
	require.Equal(t, "FORBIDDEN", r.Errors[0].Code())
}

func TestAdminAdjustsBalancesAndGrantsCredit(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	owner := e.SignUp(t, "owner@example.com")
	padmin := signUpPlatformAdmin(t, e, "padmin@example.com")
	org := fmt.Sprint(owner.OrgID)
	adjust := map[string]any{"in": map[string]any{"orgId": org, "amount": "12.5", "currency": "USD",
		"reason": "refund of ticket 42", "idempotencyKey": "ticket-42"}}

	refused(t, e, owner.Token, adjustMutation, adjust)
	var a struct{ AdjustBalance balanceChange }
	e.MustDo(t, padmin.Token, adjustMutation, adjust).Decode(t, &a)
	require.Equal(t, balanceChange{Reference: fmt.Sprintf("admin:adjustment:org:%d:ticket-42", owner.OrgID),
		Currency: "USD", Cash: "12.500000", Credit: "0.000000"}, a.AdjustBalance)
	// A retry with the same key changes nothing.
	e.MustDo(t, padmin.Token, adjustMutation, adjust).Decode(t, &a)
	require.True(t, a.AdjustBalance.Duplicate)
	require.Equal(t, "12.500000", a.AdjustBalance.Cash)
	neg := map[string]any{"in": map[string]any{"orgId": org, "amount": "-0.000001", "currency": "USD", "reason": "rounding"}}
	e.MustDo(t, padmin.Token, adjustMutation, neg).Decode(t, &a)
	require.Equal(t, "12.499999", a.AdjustBalance.Cash)

	expires := time.Now().UTC().Add(30 * 24 * time.Hour).Truncate(time.Second)
	credit := map[string]any{"in": map[string]any{"orgId": org, "amount": "5", "currency": "USD",
		"expiresAt": expires.Format(time.RFC3339), "reason": "welcome offer"}}
	refused(t, e, owner.Token, creditMutation, credit)
	var c struct{ GrantCredit balanceChange }
	e.MustDo(t, padmin.Token, creditMutation, credit).Decode(t, &c)
	require.Equal(t, "5.000000", c.GrantCredit.Credit)
	require.Equal(t, "12.499999", c.GrantCredit.Cash)

	target := fmt.Sprintf("org:%d", owner.OrgID)
	require.Equal(t, []string{"refund of ticket 42", "rounding"}, auditReasons(t, e, "billing.adjust", target))
	require.Equal(t, []string{"welcome offer"}, auditReasons(t, e, "billing.credit", target))
	var expiry time.Time
	require.NoError(t, e.DB.Pool.QueryRow(context.Background(), `SELECT expires_at FROM credit_grants WHERE org_id = $1`, owner.OrgID).Scan(&expiry))
	require.True(t, expires.Equal(expiry))

	for _, tc := range []struct {
		doc   string
		in    map[string]any
		field string
	}{
		{adjustMutation, map[string]any{"orgId": org, "amount": "1", "currency": "USD", "reason": "  "}, "reason"},
		{adjustMutation, map[string]any{"orgId": org, "amount": "1", "currency": "USD", "reason": string(make([]byte, 501))}, "reason"},
		{adjustMutation, map[string]any{"orgId": org, "amount": "1.0000001", "currency": "USD", "reason": "x"}, "amount"},
		{adjustMutation, map[string]any{"orgId": org, "amount": "0", "currency": "USD", "reason": "x"}, "amount"},
		{adjustMutation, map[string]any{"orgId": org, "amount": "1", "currency": "usd", "reason": "x"}, "currency"},
		{creditMutation, map[string]any{"orgId": org, "amount": "-1", "currency": "USD", "reason": "x"}, "amount"},
		{creditMutation, map[string]any{"orgId": org, "amount": "1", "currency": "USD", "reason": "x", "expiresAt": "2001-01-01T00:00:00Z"}, "expiresAt"},
	} {
		r := e.Do(t, padmin.Token, tc.doc, map[string]any{"in": tc.in})
		require.Len(t, r.Errors, 1, "%v", tc.in)
		require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code(), "%v", tc.in)
		require.Equal(t, tc.field, r.Errors[0].Extensions["field"], "%v", tc.in)
	}
	// Another currency than the account's is a conflict; an unknown org is not found.
	r := e.Do(t, padmin.Token, adjustMutation, map[string]any{"in": map[string]any{"orgId": org, "amount": "1", "currency": "EUR", "reason": "x"}})
	require.Equal(t, "CONFLICT", r.Errors[0].Code())
	r = e.Do(t, padmin.Token, adjustMutation, map[string]any{"in": map[string]any{"orgId": "999999", "amount": "1", "currency": "EUR", "reason": "x"}})
	require.Equal(t, "NOT_FOUND", r.Errors[0].Code())
}

func TestAdminSuspendsOrgsAndChangesPlans(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	owner := e.SignUp(t, "owner@example.com")
	padmin := signUpPlatformAdmin(t, e, "padmin@example.com")
	_, err := e.Service.CreateNamespace(e.As(owner.ID, false), owner.OrgID, "second")
	require.NoError(t, err)
	e.SyncAuthz(t)
	vars := map[string]any{"org": fmt.Sprint(owner.OrgID), "reason": "unpaid since March"}
	const suspend = `mutation($org: ID!, $reason: String!) { suspendOrg(orgId: $org, reason: $reason) }`
	const resume = `mutation($org: ID!, $reason: String!) { resumeOrg(orgId: $org, reason: $reason) }`

	refused(t, e, owner.Token, suspend, vars)
	var s struct{ SuspendOrg, ResumeOrg int }
	e.MustDo(t, padmin.Token, suspend, vars).Decode(t, &s)
	require.Equal(t, 2, s.SuspendOrg)
	e.MustDo(t, padmin.Token, suspend, vars).Decode(t, &s)
	require.Zero(t, s.SuspendOrg, "suspending again changes nothing")
	var states []string
	rows, err := e.DB.Pool.Query(context.Background(), `SELECT state FROM namespaces WHERE org_id = $1`, owner.OrgID)
	require.NoError(t, err)
	for rows.Next() {
		var st string
		require.NoError(t, rows.Scan(&st))
		states = append(states, st)
	}
	require.Equal(t, []string{"suspended", "suspended"}, states)
	require.Equal(t, []string{"unpaid since March"}, auditReasons(t, e, "namespace.suspend", fmt.Sprintf("ns:%d", owner.NamespaceID)))
	refused(t, e, owner.Token, resume, vars)
	vars["reason"] = "paid"
	e.MustDo(t, padmin.Token, resume, vars).Decode(t, &s)
	require.Equal(t, 2, s.ResumeOrg)
	vars["reason"] = ""
	r := e.Do(t, padmin.Token, suspend, vars)
	require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())

	const plan = `mutation($org: ID!, $plan: String!, $reason: String!) { changeOrgPlan(orgId: $org, plan: $plan, reason: $reason) { plan } }`
	pvars := map[string]any{"org": fmt.Sprint(owner.OrgID), "plan": "team", "reason": "sales deal 9"}
	// A plan that does not exist is named as such, and changes nothing.
	r = e.Do(t, padmin.Token, plan, pvars)
	require.Len(t, r.Errors, 1)
	require.Equal(t, "NOT_FOUND", r.Errors[0].Code())
	require.Equal(t, `plan "team" not found: the plans query lists them`, r.Errors[0].Message)
	target := fmt.Sprintf("org:%d", owner.OrgID)
	require.Empty(t, auditReasons(t, e, "org.plan", target))
	newPlan(t, e, "team", billing.PlanPostpaid)
	refused(t, e, owner.Token, plan, pvars)
	var p struct{ ChangeOrgPlan struct{ Plan string } }
	e.MustDo(t, padmin.Token, plan, pvars).Decode(t, &p)
	require.Equal(t, "team", p.ChangeOrgPlan.Plan)
	require.Equal(t, []string{"sales deal 9"}, auditReasons(t, e, "org.plan", target))
	var outbox int
	require.NoError(t, e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE key = $1 AND kind = 'org.plan'`, target).Scan(&outbox))
	require.Equal(t, 1, outbox)
	pvars["plan"] = "Not A Plan"
	r = e.Do(t, padmin.Token, plan, pvars)
	require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
	pvars["org"], pvars["plan"] = "999999", "team"
	r = e.Do(t, padmin.Token, plan, pvars)
	require.Equal(t, "NOT_FOUND", r.Errors[0].Code())
	require.Equal(t, "org not found", r.Errors[0].Message)
}

// newPlan creates a plan on the default price book, as setPlan does.
func newPlan(t *testing.T, e *graphtest.Env, name string, mode billing.PlanBillingMode) {
	t.Helper()
	ctx := context.Background()
	var book int64
	require.NoError(t, e.DB.Pool.QueryRow(ctx, `SELECT id FROM price_books WHERE name = 'default'`).Scan(&book))
	_, err := e.Billing.SetPlan(ctx, billing.Plan{Name: name, DisplayName: name, BillingMode: mode, PriceBookID: book,
		Quota: billing.PlanQuota{CPUMillicores: 8000, MemoryMiB: 16384, Pods: 50, Namespaces: 5}},
		tenancy.Actor{System: "test"})
	require.NoError(t, err)
}

func TestAdminDisablesAUserEverywhere(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	owner := e.SignUp(t, "owner@example.com")
	padmin := signUpPlatformAdmin(t, e, "padmin@example.com")
	var got kubeconfigAnswer
	e.MustDo(t, owner.Token, kubeconfigMutation, map[string]any{"ns": fmt.Sprint(owner.NamespaceID)}).Decode(t, &got)
	conf, err := clientcmd.Load([]byte(got.Kubeconfig.YAML))
	require.NoError(t, err)
	kubeToken := conf.AuthInfos[conf.Contexts[conf.CurrentContext].AuthInfo].Token
	require.True(t, authenticates(t, kubeToken))

	const disable = `mutation($id: ID!, $reason: String!) { disableUser(userId: $id, reason: $reason) }`
	vars := map[string]any{"id": fmt.Sprint(owner.ID), "reason": "fraud ring 3"}
	refused(t, e, owner.Token, disable, map[string]any{"id": fmt.Sprint(padmin.ID), "reason": "x"})
	r := e.Do(t, padmin.Token, disable, map[string]any{"id": fmt.Sprint(owner.ID), "reason": " "})
	require.Equal(t, "BAD_USER_INPUT", r.Errors[0].Code())
	e.MustDo(t, padmin.Token, disable, vars)

	// Sessions and API tokens go at once, kubeconfigs with the user's
	// ServiceAccount.
	r = e.Do(t, owner.Token, `{ me { id } }`, nil)
	require.Equal(t, 401, r.Status)
	revoked(t, kubeToken)
	target := fmt.Sprintf("user:%d", owner.ID)
	require.Equal(t, []string{"fraud ring 3"}, auditReasons(t, e, "user.disable", target))
	require.Contains(t, auditReasons(t, e, "kubeconfig.revoke_all", target), "fraud ring 3")
}

func TestAdminVoidsInvoicesAndMarksThemPaid(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	ctx := context.Background()
	owner := e.SignUp(t, "owner@example.com")
	other := e.SignUp(t, "other@example.com")
	padmin := signUpPlatformAdmin(t, e, "padmin@example.com")
	newPlan(t, e, "invoiced", billing.PlanPostpaid)
	_, err := e.Admin.ChangePlan(e.System(), owner.OrgID, "invoiced", "postpaid contract")
	require.NoError(t, err)

	// An hour of the last period, rated: a charge line and its posting.
	period := billing.DefaultInvoiceConfig().PeriodOf(e.Clock.Now()).Previous()
	hour := period.Start.Add(time.Hour)
	_, err = e.DB.Pool.Exec(ctx, `INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour, revision,
			quantity, amount_micros, currency, ledger_reference, rated_at, usage_seq)
		VALUES ('admin-test', $1, $2, 'cpu', '', $3, 0, 60000, 12500000, 'USD', 'charge:admin-test', $3, 1)`,
		owner.OrgID, owner.NamespaceID, hour)
	require.NoError(t, err)
	_, err = e.Billing.Post(ctx, billing.Posting{OrgID: owner.OrgID, Kind: billing.KindCharge, Amount: -12_500_000,
		Currency: "USD", Reference: "charge:admin-test", Actor: "system:billing", At: hour})
	require.NoError(t, err)
	inv, err := e.Billing.GenerateInvoice(ctx, owner.OrgID, period, 0)
	require.NoError(t, err)
	inv, err = e.Billing.FinalizeInvoice(ctx, inv.ID)
	require.NoError(t, err)
	require.Equal(t, int64(12_500_000), inv.Total)

	const pay = `mutation($o: ID!, $id: ID!, $r: String!) { markInvoicePaid(orgId: $o, id: $id, reason: $r) { id status paidAt } }`
	const void = `mutation($o: ID!, $id: ID!, $r: String!) { voidInvoice(orgId: $o, id: $id, reason: $r) { id status voidReason } }`
	vars := func(org, id int64, reason string) map[string]any {
		return map[string]any{"o": fmt.Sprint(org), "id": fmt.Sprint(id), "r": reason}
	}
	refused(t, e, owner.Token, pay, vars(owner.OrgID, inv.ID, "I paid, promise"))
	refused(t, e, owner.Token, void, vars(owner.OrgID, inv.ID, "do not like it"))
	for _, tc := range []struct {
		doc  string
		v    map[string]any
		code string
	}{
		{pay, vars(owner.OrgID, inv.ID, "  "), "BAD_USER_INPUT"},
		{pay, vars(other.OrgID, inv.ID, "wire 1"), "NOT_FOUND"},
		{void, vars(other.OrgID, inv.ID, "wire 1"), "NOT_FOUND"},
		{pay, vars(owner.OrgID, 999999, "wire 1"), "NOT_FOUND"},
	} {
		r := e.Do(t, padmin.Token, tc.doc, tc.v)
		require.Len(t, r.Errors, 1, "%v", tc.v)
		require.Equal(t, tc.code, r.Errors[0].Code(), "%v", tc.v)
	}

	var paid struct {
		MarkInvoicePaid struct {
			ID, Status string
			PaidAt     *time.Time
		}
	}
	e.MustDo(t, padmin.Token, pay, vars(owner.OrgID, inv.ID, "bank transfer ref 881")).Decode(t, &paid)
	require.Equal(t, "PAID", paid.MarkInvoicePaid.Status)
	require.NotNil(t, paid.MarkInvoicePaid.PaidAt)
	// The payment went through the ledger: the charge is paid off.
	bal, err := e.Billing.Balance(ctx, owner.OrgID, e.Clock.Now(), "USD")
	require.NoError(t, err)
	require.Zero(t, bal.Cash)
	var kind, desc, actor string
	var amount int64
	require.NoError(t, e.DB.Pool.QueryRow(ctx, `SELECT kind, amount_micros, description, actor FROM ledger_entries WHERE reference = $1`,
		billing.InvoicePaymentReference(inv.ID)).Scan(&kind, &amount, &desc, &actor))
	require.Equal(t, []any{"payment", int64(12_500_000), "bank transfer ref 881", fmt.Sprintf("user:%d", padmin.ID)},
		[]any{kind, amount, desc, actor})
	target := fmt.Sprintf("invoice:%d", inv.ID)
	require.Equal(t, []string{"bank transfer ref 881"}, auditReasons(t, e, "billing.invoice.paid", target))
	// Paid once: a second payment or a void of a paid invoice is a conflict.
	r := e.Do(t, padmin.Token, pay, vars(owner.OrgID, inv.ID, "bank transfer ref 881"))
	require.Equal(t, "CONFLICT", r.Errors[0].Code())
	r = e.Do(t, padmin.Token, void, vars(owner.OrgID, inv.ID, "mistake"))
	require.Equal(t, "CONFLICT", r.Errors[0].Code())

	// A draft is voided with its reason; no money moves.
	draft, err := e.Billing.GenerateInvoice(ctx, owner.OrgID, period.Next(), 0)
	require.NoError(t, err)
	var voided struct {
		VoidInvoice struct{ ID, Status, VoidReason string }
	}
	e.MustDo(t, padmin.Token, void, vars(owner.OrgID, draft.ID, "test account")).Decode(t, &voided)
	require.Equal(t, "VOID", voided.VoidInvoice.Status)
	require.Equal(t, "test account", voided.VoidInvoice.VoidReason)
	require.Equal(t, []string{"test account"}, auditReasons(t, e, "billing.invoice.void", fmt.Sprintf("invoice:%d", draft.ID)))
	bal, err = e.Billing.Balance(ctx, owner.OrgID, e.Clock.Now(), "USD")
	require.NoError(t, err)
	require.Zero(t, bal.Cash)

	// A prepaid org's statement is settled by its balance, not by an admin.
	stmt, err := e.Billing.GenerateInvoice(ctx, other.OrgID, period, 0)
	require.NoError(t, err)
	stmt, err = e.Billing.FinalizeInvoice(ctx, stmt.ID)
	require.NoError(t, err)
	r = e.Do(t, padmin.Token, pay, vars(other.OrgID, stmt.ID, "wire 2"))
	require.Equal(t, "CONFLICT", r.Errors[0].Code())
}
