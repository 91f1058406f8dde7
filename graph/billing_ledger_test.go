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
	"github.com/tenantplane/tenantplane/tenancy"
)

const balanceQuery = `query($org: ID!) { orgBalance(orgId: $org) { orgId currency cashMicros creditMicros usableCreditMicros usableMicros } }`

type balanceAnswer struct {
	OrgBalance struct {
		OrgID, Currency                                            string
		CashMicros, CreditMicros, UsableCreditMicros, UsableMicros string
	}
}

func TestLedgerQueriesAreForOwnersBillingAndAdmins(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	ctx := context.Background()
	owner := e.SignUp(t, "owner@example.com")
	biller := e.SignUp(t, "billing@example.com")
	member := e.SignUp(t, "member@example.com")
	outsider := e.SignUp(t, "outsider@example.com")
	padmin := signUpPlatformAdmin(t, e, "padmin@example.com")
	_, err := e.Service.AddOrgMember(e.As(owner.ID, false), owner.OrgID, biller.ID, tenancy.OrgRoleBilling)
	require.NoError(t, err)
	_, err = e.Service.AddOrgMember(e.As(owner.ID, false), owner.OrgID, member.ID, tenancy.OrgRoleMember)
	require.NoError(t, err)
	e.SyncAuthz(t)

	now := e.Clock.Now()
	vars := map[string]any{"org": fmt.Sprint(owner.OrgID)}
	// Before any entry: zero in the plan's currency.
	var b balanceAnswer
	e.MustDo(t, owner.Token, balanceQuery, vars).Decode(t, &b)
	require.Equal(t, "USD", b.OrgBalance.Currency)
	require.Equal(t, "0", b.OrgBalance.UsableMicros)

	post := func(kind billing.Kind, amount int64, ref string, exp *time.Time) {
		_, err := e.Billing.Post(ctx, billing.Posting{OrgID: owner.OrgID, Kind: kind, Amount: amount, Currency: "USD",
			Reference: ref, Actor: "system:test", At: now, Description: "test", ExpiresAt: exp})
		require.NoError(t, err)
	}
	soon := now.Add(time.Hour)
	post(billing.KindTopUp, 10_000_000, "topup:1", nil)
	post(billing.KindCredit, 3_000_000, "credit:1", &soon)
	post(billing.KindCharge, -1_000_000, "charge:1", nil)
	for i := range 4 {
		post(billing.KindCharge, -10, fmt.Sprintf("charge:small:%d", i), nil)
	}

	for _, u := range []graphtest.User{owner, biller, padmin} {
		e.MustDo(t, u.Token, balanceQuery, vars).Decode(t, &b)
		require.Equal(t, fmt.Sprint(owner.OrgID), b.OrgBalance.OrgID)
		require.Equal(t, "10000000", b.OrgBalance.CashMicros, u.Email)
		require.Equal(t, "1999960", b.OrgBalance.CreditMicros)
		require.Equal(t, "1999960", b.OrgBalance.UsableCreditMicros)
		require.Equal(t, "11999960", b.OrgBalance.UsableMicros)
	}
	for u, code := range map[string]string{member.Token: "FORBIDDEN", outsider.Token: "NOT_FOUND"} {
		r := e.Do(t, u, balanceQuery, vars)
		require.Len(t, r.Errors, 1)
		require.Equal(t, code, r.Errors[0].Code())
	}

	// The ledger, newest first, a page at a time.
	entriesQuery := `query($org: ID!, $after: String) { ledgerEntries(orgId: $org, first: 3, after: $after) {
		edges { cursor node { id kind account creditGrantId amountMicros reference } } pageInfo { hasNextPage endCursor } } }`
	var refs []string
	var after any
	for {
		var page struct {
			LedgerEntries struct {
				Edges []struct {
					Node struct {
						ID, Kind, Account, AmountMicros, Reference string
						CreditGrantID                              *string
					}
				}
				PageInfo struct {
					HasNextPage bool
					EndCursor   string
				}
			}
		}
		e.MustDo(t, biller.Token, entriesQuery, map[string]any{"org": fmt.Sprint(owner.OrgID), "after": after}).Decode(t, &page)
		for _, ed := range page.LedgerEntries.Edges {
			refs = append(refs, ed.Node.Reference)
			require.Equal(t, ed.Node.Account == "credit", ed.Node.CreditGrantID != nil)
		}
		if !page.LedgerEntries.PageInfo.HasNextPage {
			break
		}
		after = page.LedgerEntries.PageInfo.EndCursor
	}
	require.Equal(t, []string{"charge:small:3", "charge:small:2", "charge:small:1", "charge:small:0", "charge:1", "credit:1", "topup:1"}, refs)

	var grants struct {
		CreditGrants []struct {
			Source, AmountMicros, RemainingMicros string
			ExpiresAt                             *time.Time
		}
	}
	e.MustDo(t, padmin.Token, `query($org: ID!) { creditGrants(orgId: $org) { source amountMicros remainingMicros expiresAt } }`, vars).Decode(t, &grants)
	require.Len(t, grants.CreditGrants, 1)
	require.Equal(t, "1999960", grants.CreditGrants[0].RemainingMicros)
	require.True(t, grants.CreditGrants[0].ExpiresAt.Equal(soon.Truncate(time.Microsecond)))
}

func TestGiftCodesThroughGraphQL(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	owner := e.SignUp(t, "owner@example.com")
	other := e.SignUp(t, "other@example.com")
	padmin := signUpPlatformAdmin(t, e, "padmin@example.com")
	e.SyncAuthz(t)

	create := `mutation($in: CreateGiftCodeInput!) { createGiftCode(input: $in) { code giftCode { id amountMicros maxRedemptions creditValidForSeconds } } }`
	in := map[string]any{"in": map[string]any{
		"amountMicros": "25000000", "currency": "USD", "expiresAt": e.Clock.Now().Add(48 * time.Hour).Format(time.RFC3339),
		"creditValidForSeconds": "2592000", "maxRedemptions": 1, "note": "spring",
	}}
	r := e.Do(t, owner.Token, create, in)
	require.Len(t, r.Errors, 1)
	require.Equal(t, "FORBIDDEN", r.Errors[0].Code(), "only platform admins create codes")

	var created struct {
		CreateGiftCode struct {
			Code     string
			GiftCode struct {
				ID, AmountMicros, CreditValidForSeconds string
				MaxRedemptions                          int
			}
		}
	}
	e.MustDo(t, padmin.Token, create, in).Decode(t, &created)
	code := created.CreateGiftCode.Code
	require.NotEmpty(t, billing.NormalizeGiftCode(code))
	require.Equal(t, "2592000", created.CreateGiftCode.GiftCode.CreditValidForSeconds)

	var list struct {
		GiftCodes struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	e.MustDo(t, padmin.Token, `{ giftCodes { edges { node { id } } } }`, nil).Decode(t, &list)
	require.Len(t, list.GiftCodes.Edges, 1)
	r = e.Do(t, owner.Token, `{ giftCodes { edges { node { id } } } }`, nil)
	require.Equal(t, "FORBIDDEN", r.Errors[0].Code())

	redeem := `mutation($org: ID!, $code: String!) { redeemGiftCode(orgId: $org, code: $code) {
		reference creditGrant { source amountMicros expiresAt } balance { usableMicros } } }`
	r = e.Do(t, other.Token, redeem, map[string]any{"org": fmt.Sprint(owner.OrgID), "code": code})
	require.Equal(t, "NOT_FOUND", r.Errors[0].Code(), "not a member of the org")
	var red struct {
		RedeemGiftCode struct {
			Reference   string
			CreditGrant struct {
				Source, AmountMicros string
				ExpiresAt            time.Time
			}
			Balance struct{ UsableMicros string }
		}
	}
	e.MustDo(t, owner.Token, redeem, map[string]any{"org": fmt.Sprint(owner.OrgID), "code": strings.ToLower(code)}).Decode(t, &red)
	require.Equal(t, "gift_code", red.RedeemGiftCode.CreditGrant.Source)
	require.Equal(t, "25000000", red.RedeemGiftCode.Balance.UsableMicros)
	require.WithinDuration(t, e.Clock.Now().Add(30*24*time.Hour), red.RedeemGiftCode.CreditGrant.ExpiresAt, time.Second)
	r = e.Do(t, other.Token, redeem, map[string]any{"org": fmt.Sprint(other.OrgID), "code": code})
	require.Equal(t, "CONFLICT", r.Errors[0].Code(), "used up")
}

func TestInvoicesThroughGraphQL(t *testing.T) {
	t.Parallel()
	e := graphtest.New(t)
	ctx := context.Background()
	owner := e.SignUp(t, "owner@example.com")
	member := e.SignUp(t, "member@example.com")
	_, err := e.Service.AddOrgMember(e.As(owner.ID, false), owner.OrgID, member.ID, tenancy.OrgRoleMember)
	require.NoError(t, err)
	e.SyncAuthz(t)
	_, err = e.DB.Pool.Exec(ctx, `UPDATE orgs SET display_name = '<b>Acme</b>' WHERE id = $1`, owner.OrgID)
	require.NoError(t, err)

	oct := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for i, amount := range []int64{1_000_000, 2_500_000} {
		_, err := e.DB.Pool.Exec(ctx, `INSERT INTO charge_lines (key, org_id, namespace_id, resource, class, hour,
			revision, quantity, amount_micros, currency, rated_at, usage_seq)
			VALUES ($1, $2, $3, 'cpu', '', $4, 0, 60000, $5, 'USD', $4, $6)`,
			fmt.Sprintf("k%d", i), owner.OrgID, owner.NamespaceID, oct.Add(time.Duration(i)*time.Hour), amount, i+1)
		require.NoError(t, err)
	}
	cfg := billing.DefaultInvoiceConfig()
	cfg.TaxRateBPS = 800
	e.Clock.Set(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC))
	iv, err := billing.NewInvoicer(e.Billing, cfg, nil, nil, e.Clock.Now)
	require.NoError(t, err)
	_, err = iv.Run(ctx)
	require.NoError(t, err)

	vars := map[string]any{"org": fmt.Sprint(owner.OrgID)}
	var list struct {
		Invoices struct {
			Edges []struct {
				Node struct {
					ID, Number, Status, BillingMode, SubtotalMicros, TaxMicros, TotalMicros string
					TaxRateBps                                                              int
					Lines                                                                   []struct{ Namespace, Resource, Quantity, AmountMicros string }
				}
			}
		}
	}
	e.MustDo(t, owner.Token, `query($org: ID!) { invoices(orgId: $org) { edges { node {
		id number status billingMode subtotalMicros taxRateBps taxMicros totalMicros lines { namespace resource quantity amountMicros } } } } }`,
		vars).Decode(t, &list)
	require.Len(t, list.Invoices.Edges, 1)
	inv := list.Invoices.Edges[0].Node
	require.Equal(t, "INV-000001", inv.Number)
	require.Equal(t, "PAID", inv.Status)
	require.Equal(t, "prepaid", inv.BillingMode)
	require.Equal(t, "3500000", inv.SubtotalMicros)
	require.Equal(t, 800, inv.TaxRateBps)
	require.Equal(t, "280000", inv.TaxMicros)
	require.Equal(t, "3780000", inv.TotalMicros)
	require.Len(t, inv.Lines, 1)
	require.Equal(t, "120000", inv.Lines[0].Quantity)

	var one struct{ Invoice struct{ HTML string } }
	e.MustDo(t, owner.Token, `query($org: ID!, $id: ID!) { invoice(orgId: $org, id: $id) { html } }`,
		map[string]any{"org": fmt.Sprint(owner.OrgID), "id": inv.ID}).Decode(t, &one)
	require.Contains(t, one.Invoice.HTML, "Statement INV-000001")
	require.Contains(t, one.Invoice.HTML, "&lt;b&gt;Acme&lt;/b&gt;")
	require.Contains(t, one.Invoice.HTML, "3.780000 USD")

	r := e.Do(t, member.Token, `query($org: ID!, $id: ID!) { invoice(orgId: $org, id: $id) { id } }`,
		map[string]any{"org": fmt.Sprint(owner.OrgID), "id": inv.ID})
	require.Equal(t, "FORBIDDEN", r.Errors[0].Code(), "org members do not see invoices")
	other := e.SignUp(t, "other@example.com")
	r = e.Do(t, other.Token, `query($org: ID!, $id: ID!) { invoice(orgId: $org, id: $id) { id } }`,
		map[string]any{"org": fmt.Sprint(other.OrgID), "id": inv.ID})
	require.Equal(t, "NOT_FOUND", r.Errors[0].Code(), "another org's invoice by its id")
}
