package tenancy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
	"github.com/tenantplane/tenantplane/tenancy"
)

func TestSignUpCreatesEverythingInOneTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u, err := b.svc.SignUp(anon(), "  Alice.Smith@Example.COM ", password, "Alice")
	require.NoError(t, err)
	require.Equal(t, "alice.smith@example.com", u.Email)
	require.Equal(t, tenancy.UserPending, u.Status)
	require.True(t, u.HasPassword)
	require.Nil(t, u.EmailVerifiedAt)

	var hash string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT password_hash FROM users WHERE id = $1`, u.ID).Scan(&hash))
	require.True(t, strings.HasPrefix(hash, "$argon2id$v=19$m=64,t=1,p=1$"), hash)
	require.NotContains(t, hash, password)

	orgs, err := b.svc.MyOrgs(as(u.ID), tenancy.PageArgs{})
	require.NoError(t, err)
	require.Len(t, orgs.Edges, 1)
	org := orgs.Edges[0].Node
	require.Equal(t, "alice-smith", org.Org.Name)
	require.True(t, org.Org.Personal)
	require.Equal(t, tenancy.OrgRoleOwner, org.Role)

	nss, err := b.svc.MyNamespaces(as(u.ID), tenancy.PageArgs{})
	require.NoError(t, err)
	require.Len(t, nss.Edges, 1)
	ns := nss.Edges[0].Node
	require.Equal(t, tenancy.RoleOwner, ns.Role)
	require.Equal(t, org.Org.ID, ns.Namespace.OrgID)
	require.Regexp(t, `^ns-[a-z0-9]{8}$`, ns.Namespace.Name)
	require.NoError(t, tenancy.ValidateNamespaceName(ns.Namespace.Name))
	require.Equal(t, tenancy.NamespaceActive, ns.Namespace.State)

	require.Equal(t, []string{"user.signup"}, b.auditActions(tenancy.UserKey(u.ID)))
	require.Equal(t, []string{"org.create"}, b.auditActions(tenancy.OrgKey(org.Org.ID)))
	require.Equal(t, []string{"namespace.create"}, b.auditActions(tenancy.NamespaceKey(ns.Namespace.ID)))
	require.Equal(t, 3, b.count(`SELECT count(*) FROM audit_log WHERE actor = $1 AND ip IS NOT NULL AND request_id = 'req-anon'`, tenancy.UserKey(u.ID)))
	require.Equal(t, []string{"namespace.create"}, b.outboxKinds(tenancy.NamespaceKey(ns.Namespace.ID)))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM outbox WHERE payload->>'name' = $1 AND (payload->>'owner_id')::bigint = $2`, ns.Namespace.Name, u.ID))

	verify := b.mails(u.Email, "verify_email")
	require.Len(t, verify, 1)
	require.Contains(t, verify[0], "https://console.test/verify-email?token=tpv_")
	require.Equal(t, 1, b.count(`SELECT count(*) FROM user_tokens WHERE user_id = $1 AND purpose = 'verify_email'`, u.ID))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM user_tokens WHERE hash = sha256(convert_to($1, 'UTF8'))`,
		b.lastToken(u.Email, "verify_email")), "the token is stored as its SHA-256 hash")
}

func TestSignUpDuplicateEmailIsConflictAndWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.svc.SignUp(anon(), "bob@example.com", password, "")
	require.NoError(t, err)
	before := b.tableCounts()
	_, err = b.svc.SignUp(anon(), "BOB@Example.com", password, "")
	requireCode(t, err, errcode.Conflict)
	require.Equal(t, before, b.tableCounts())
}

func TestSignUpFailingHalfwayLeavesNoRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	before := b.tableCounts()
	svc, err := tenancy.New(failingStore{Store: b.store, failMail: true}, b.cfg, nil, b.clock.Now)
	require.NoError(t, err)
	_, err = svc.SignUp(anon(), "carol@example.com", password, "")
	require.ErrorIs(t, err, errInjected)
	require.Equal(t, errcode.Internal, errcode.Of(err))
	require.Equal(t, before, b.tableCounts())
}

func TestSignUpValidatesInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		email, password, display, field string
	}{
		{"not-an-email", password, "", "email"},
		{"a@b", password, "", "email"},
		{strings.Repeat("a", 250) + "@example.com", password, "", "email"},
		{"dave@example.com", "short", "", "password"},
		{"dave@example.com", strings.Repeat("x", 257), "", "password"},
		{"dave@example.com", password, "bad\x00name", "displayName"},
	} {
		_, err := b.svc.SignUp(anon(), tc.email, tc.password, tc.display)
		requireCode(t, err, errcode.BadUserInput)
		e, ok := errcode.As(err)
		require.True(t, ok)
		require.Equal(t, tc.field, e.Field)
	}
	require.Equal(t, 0, b.count(`SELECT count(*) FROM users`))
}

func TestPersonalOrgNamesAreUniqueDNSLabels(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.user("dev+tag@one.example")
	c := b.user("dev@two.example")
	oa, _ := b.personal(a)
	oc, _ := b.personal(c)
	require.Equal(t, "dev", oa.Name)
	require.Regexp(t, `^dev-[a-z0-9]{6}$`, oc.Name)
	require.NoError(t, tenancy.ValidateOrgName(oc.Name))
}

func TestVerifyEmailTokenIsSingleUseAndExpires(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u, err := b.svc.SignUp(anon(), "erin@example.com", password, "")
	require.NoError(t, err)
	tok := b.lastToken(u.Email, "verify_email")

	_, err = b.svc.VerifyEmail(anon(), "tpv_garbage")
	requireCode(t, err, errcode.BadUserInput)

	v, err := b.svc.VerifyEmail(anon(), tok)
	require.NoError(t, err)
	require.Equal(t, tenancy.UserActive, v.Status)
	require.NotNil(t, v.EmailVerifiedAt)
	require.Equal(t, b.clock.Now(), v.EmailVerifiedAt.UTC())

	_, err = b.svc.VerifyEmail(anon(), tok)
	requireCode(t, err, errcode.BadUserInput)

	// A second user's link expires after VerificationTTL.
	u2, err := b.svc.SignUp(anon(), "frank@example.com", password, "")
	require.NoError(t, err)
	tok2 := b.lastToken(u2.Email, "verify_email")
	b.clock.Advance(b.cfg.VerificationTTL)
	_, err = b.svc.VerifyEmail(anon(), tok2)
	requireCode(t, err, errcode.BadUserInput)
	got, err := b.svc.User(context.Background(), u2.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.UserPending, got.Status)

	// A resent link works; the older one does not.
	require.NoError(t, b.svc.ResendVerification(as(u2.ID)))
	tok3 := b.lastToken(u2.Email, "verify_email")
	require.NotEqual(t, tok2, tok3)
	_, err = b.svc.VerifyEmail(anon(), tok3)
	require.NoError(t, err)
	requireCode(t, b.svc.ResendVerification(as(u2.ID)), errcode.Conflict)
}

func TestLogIn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u, err := b.svc.SignUp(anon(), "gina@example.com", password, "")
	require.NoError(t, err)

	_, err = b.svc.LogIn(anon(), "gina@example.com", "wrong password!")
	requireCode(t, err, errcode.Unauthenticated)
	wrongPassword := err.Error()
	_, err = b.svc.LogIn(anon(), "nobody@example.com", password)
	requireCode(t, err, errcode.Unauthenticated)
	require.Equal(t, wrongPassword, err.Error(), "unknown email and wrong password look the same")

	// Pending users may log in unless RequireVerifiedEmail; the status shows.
	tok, err := b.svc.LogIn(anon(), "GINA@example.com", password)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(tok.Secret, tenancy.SessionTokenPrefix))
	require.Equal(t, tenancy.TokenSession, tok.Kind)
	require.Equal(t, b.clock.Now().Add(14*24*time.Hour), tok.ExpiresAt)
	p, err := b.svc.Authenticate(context.Background(), tok.Secret)
	require.NoError(t, err)
	require.Equal(t, u.ID, p.UserID)
	require.Equal(t, tenancy.UserPending, p.Status)
	require.Equal(t, tok.ID, p.TokenID)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM auth_tokens WHERE hash = sha256(convert_to($1, 'UTF8')) AND kind = 'session'`, tok.Secret),
		"the secret is stored as its SHA-256 hash")

	strict := b.withService(func(c *tenancy.Config) { c.RequireVerifiedEmail = true })
	_, err = strict.LogIn(anon(), "gina@example.com", password)
	requireCode(t, err, errcode.Unauthenticated)
	_, err = strict.Authenticate(context.Background(), tok.Secret)
	requireCode(t, err, errcode.Unauthenticated)
	_, err = strict.VerifyEmail(anon(), b.lastToken(u.Email, "verify_email"))
	require.NoError(t, err)
	_, err = strict.LogIn(anon(), "gina@example.com", password)
	require.NoError(t, err)

	// The secret with its last character changed (a fixed "A" would be no
	// change for the secrets that end in one).
	last := "A"
	if strings.HasSuffix(tok.Secret, last) {
		last = "B"
	}
	for _, bad := range []string{"", "Bearer x", "tps_short", tok.Secret[:len(tok.Secret)-1] + last, "tpa_" + tok.Secret[4:]} {
		_, err := b.svc.Authenticate(context.Background(), bad)
		requireCode(t, err, errcode.Unauthenticated)
	}
}

func TestLogInRehashesWhenParametersChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.user("hal@example.com")
	stronger := b.withService(func(c *tenancy.Config) { c.Argon2.Time = 2; c.Argon2.MemoryKiB = 128 })
	hash := func() string {
		var h string
		require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT password_hash FROM users WHERE id = $1`, u.ID).Scan(&h))
		return h
	}
	old := hash()
	_, err := stronger.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(hash(), "$argon2id$v=19$m=128,t=2,p=1$"), hash())
	require.NotEqual(t, old, hash())
	again := hash()
	_, err = stronger.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	require.Equal(t, again, hash(), "no rehash when the parameters match")
	// The old service still verifies the new hash.
	_, err = b.svc.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
}

func TestDisabledUserLosesAccessAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	root := b.user("root@example.com")
	u := b.user("ivan@example.com")
	_, err := b.svc.LogInOIDC(anon(), tenancy.OIDCIdentity{Issuer: "https://idp.test", Subject: "ivan", Email: u.Email, EmailVerified: true})
	require.NoError(t, err)
	sess, err := b.svc.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	api, err := b.svc.CreateAPIToken(as(u.ID), "ci", 0)
	require.NoError(t, err)
	_, err = b.svc.Authenticate(context.Background(), api.Secret)
	require.NoError(t, err)

	requireCode(t, b.svc.DisableUser(as(root.ID), u.ID), errcode.Forbidden)
	requireCode(t, b.svc.DisableUser(anon(), u.ID), errcode.Unauthenticated)
	require.NoError(t, b.svc.DisableUser(admin(root.ID), u.ID))

	for _, s := range []string{sess.Secret, api.Secret} {
		_, err := b.svc.Authenticate(context.Background(), s)
		requireCode(t, err, errcode.Unauthenticated)
	}
	_, err = b.svc.LogIn(anon(), u.Email, password)
	requireCode(t, err, errcode.Unauthenticated)
	_, err = b.svc.LogInOIDC(anon(), tenancy.OIDCIdentity{Issuer: "https://idp.test", Subject: "ivan", Email: u.Email, EmailVerified: true})
	requireCode(t, err, errcode.Unauthenticated)
	require.NoError(t, b.svc.RequestPasswordReset(anon(), u.Email))
	require.Empty(t, b.mails(u.Email, "reset_password"), "no reset mail for disabled users")

	got, err := b.svc.User(context.Background(), u.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.UserDisabled, got.Status)
	require.NotNil(t, got.DisabledAt)
	require.Equal(t, []string{"user.disable"}, b.outboxKinds(tenancy.UserKey(u.ID)))
	require.Contains(t, b.auditActions(tenancy.UserKey(u.ID)), "user.disable")
	require.Equal(t, 0, b.count(`SELECT count(*) FROM auth_tokens WHERE user_id = $1 AND revoked_at IS NULL`, u.ID))

	require.NoError(t, b.svc.EnableUser(system("cli"), u.ID))
	_, err = b.svc.Authenticate(context.Background(), sess.Secret)
	requireCode(t, err, errcode.Unauthenticated)
	_, err = b.svc.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	got, err = b.svc.User(context.Background(), u.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.UserActive, got.Status)
	require.Equal(t, []string{"user.disable", "user.enable"}, b.outboxKinds(tenancy.UserKey(u.ID)))

	requireCode(t, b.svc.DisableUser(admin(root.ID), root.ID), errcode.BadUserInput)
}

func TestTokenRevocationAndExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.user("judy@example.com")
	other := b.user("ken@example.com")
	sess, err := b.svc.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	p, err := b.svc.Authenticate(context.Background(), sess.Secret)
	require.NoError(t, err)

	requireCode(t, b.svc.LogOut(as(other.ID), p.TokenID), errcode.NotFound)
	require.NoError(t, b.svc.LogOut(as(u.ID), p.TokenID))
	_, err = b.svc.Authenticate(context.Background(), sess.Secret)
	requireCode(t, err, errcode.Unauthenticated)
	requireCode(t, b.svc.LogOut(as(u.ID), p.TokenID), errcode.NotFound)

	api, err := b.svc.CreateAPIToken(as(u.ID), "deploy", 2*time.Hour)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(api.Secret, tenancy.APITokenPrefix))
	requireCode(t, b.svc.RevokeAPIToken(as(other.ID), api.ID), errcode.NotFound)
	_, err = b.svc.Authenticate(context.Background(), api.Secret)
	require.NoError(t, err)
	require.NoError(t, b.svc.RevokeAPIToken(as(u.ID), api.ID))
	_, err = b.svc.Authenticate(context.Background(), api.Secret)
	requireCode(t, err, errcode.Unauthenticated)

	short, err := b.svc.CreateAPIToken(as(u.ID), "short", time.Hour)
	require.NoError(t, err)
	sess2, err := b.svc.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	b.clock.Advance(time.Hour - time.Second)
	_, err = b.svc.Authenticate(context.Background(), short.Secret)
	require.NoError(t, err)
	b.clock.Advance(time.Second)
	_, err = b.svc.Authenticate(context.Background(), short.Secret)
	requireCode(t, err, errcode.Unauthenticated)
	_, err = b.svc.Authenticate(context.Background(), sess2.Secret)
	require.NoError(t, err)
	b.clock.Advance(b.cfg.SessionTTL)
	_, err = b.svc.Authenticate(context.Background(), sess2.Secret)
	requireCode(t, err, errcode.Unauthenticated)

	list, err := b.svc.APITokens(as(u.ID), tenancy.PageArgs{})
	require.NoError(t, err)
	require.Len(t, list.Edges, 2)
	require.NotNil(t, list.Edges[0].Node.RevokedAt)
	require.Equal(t, "short", list.Edges[1].Node.Name)
	otherList, err := b.svc.APITokens(as(other.ID), tenancy.PageArgs{})
	require.NoError(t, err)
	require.Empty(t, otherList.Edges)

	for _, ttl := range []time.Duration{-time.Hour, time.Second, 400 * 24 * time.Hour} {
		_, err := b.svc.CreateAPIToken(as(u.ID), "x", ttl)
		requireCode(t, err, errcode.BadUserInput)
	}
	_, err = b.svc.CreateAPIToken(as(u.ID), "  ", 0)
	requireCode(t, err, errcode.BadUserInput)
	_, err = b.svc.CreateAPIToken(anon(), "x", 0)
	requireCode(t, err, errcode.Unauthenticated)
}

func TestAPITokenLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tenancy.Config) { c.MaxAPITokensPerUser = 2 })
	u := b.user("lara@example.com")
	t1, err := b.svc.CreateAPIToken(as(u.ID), "a", 0)
	require.NoError(t, err)
	_, err = b.svc.CreateAPIToken(as(u.ID), "b", 0)
	require.NoError(t, err)
	_, err = b.svc.CreateAPIToken(as(u.ID), "c", 0)
	requireCode(t, err, errcode.Conflict)
	require.NoError(t, b.svc.RevokeAPIToken(as(u.ID), t1.ID))
	_, err = b.svc.CreateAPIToken(as(u.ID), "c", 0)
	require.NoError(t, err)
}

func TestTokenLastUsedIsWrittenAtMostOncePerInterval(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.user("mia@example.com")
	api, err := b.svc.CreateAPIToken(as(u.ID), "ci", 0)
	require.NoError(t, err)
	lastUsed := func() *time.Time {
		list, err := b.svc.APITokens(as(u.ID), tenancy.PageArgs{})
		require.NoError(t, err)
		require.Len(t, list.Edges, 1)
		if lu := list.Edges[0].Node.LastUsedAt; lu != nil {
			v := lu.UTC()
			return &v
		}
		return nil
	}
	require.Nil(t, lastUsed())
	t0 := b.clock.Now()
	_, err = b.svc.Authenticate(context.Background(), api.Secret)
	require.NoError(t, err)
	require.Equal(t, t0, *lastUsed())

	b.clock.Advance(59 * time.Second)
	_, err = b.svc.Authenticate(context.Background(), api.Secret)
	require.NoError(t, err)
	require.Equal(t, t0, *lastUsed(), "within a minute: not written")

	b.clock.Advance(time.Second)
	_, err = b.svc.Authenticate(context.Background(), api.Secret)
	require.NoError(t, err)
	require.Equal(t, t0.Add(time.Minute), *lastUsed())
}

func TestPasswordResetRevokesSessionsAndIsSingleUse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.user("nina@example.com")
	sess, err := b.svc.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	api, err := b.svc.CreateAPIToken(as(u.ID), "ci", 0)
	require.NoError(t, err)

	before := b.tableCounts()
	require.NoError(t, b.svc.RequestPasswordReset(anon(), "nobody@example.com"), "unknown addresses look the same")
	require.Equal(t, before, b.tableCounts())

	require.NoError(t, b.svc.RequestPasswordReset(anon(), "Nina@Example.com"))
	tok := b.lastToken(u.Email, "reset_password")
	const newPassword = "a brand new passphrase"
	requireCode(t, b.svc.ResetPassword(anon(), tok, "short"), errcode.BadUserInput)
	require.NoError(t, b.svc.ResetPassword(anon(), tok, newPassword))

	for _, s := range []string{sess.Secret, api.Secret} {
		_, err := b.svc.Authenticate(context.Background(), s)
		requireCode(t, err, errcode.Unauthenticated)
	}
	_, err = b.svc.LogIn(anon(), u.Email, password)
	requireCode(t, err, errcode.Unauthenticated)
	_, err = b.svc.LogIn(anon(), u.Email, newPassword)
	require.NoError(t, err)
	requireCode(t, b.svc.ResetPassword(anon(), tok, "yet another passphrase"), errcode.BadUserInput)
	require.Contains(t, b.auditActions(tenancy.UserKey(u.ID)), "user.password_reset")

	// Only the newest link works, and only for ResetTTL.
	require.NoError(t, b.svc.RequestPasswordReset(anon(), u.Email))
	first := b.lastToken(u.Email, "reset_password")
	require.NoError(t, b.svc.RequestPasswordReset(anon(), u.Email))
	second := b.lastToken(u.Email, "reset_password")
	requireCode(t, b.svc.ResetPassword(anon(), first, "yet another passphrase"), errcode.BadUserInput)
	b.clock.Advance(b.cfg.ResetTTL)
	requireCode(t, b.svc.ResetPassword(anon(), second, "yet another passphrase"), errcode.BadUserInput)
}

func TestPasswordResetVerifiesAPendingAddress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u, err := b.svc.SignUp(anon(), "omar@example.com", password, "")
	require.NoError(t, err)
	require.NoError(t, b.svc.RequestPasswordReset(anon(), u.Email))
	require.NoError(t, b.svc.ResetPassword(anon(), b.lastToken(u.Email, "reset_password"), "another passphrase"))
	got, err := b.svc.User(context.Background(), u.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.UserActive, got.Status)
	require.NotNil(t, got.EmailVerifiedAt)
}

func TestRateLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tenancy.Config) {
		c.RateLimits.LogInPerIP = tenancy.RateLimit{Max: 3, Window: time.Minute}
		c.RateLimits.LogInPerEmail = tenancy.RateLimit{Max: 5, Window: time.Minute}
		c.RateLimits.SignUpPerIP = tenancy.RateLimit{Max: 2, Window: time.Hour}
		c.RateLimits.SignUpPerEmail = tenancy.RateLimit{Max: 2, Window: time.Hour}
		c.RateLimits.ResetPerEmail = tenancy.RateLimit{Max: 1, Window: time.Hour}
	})
	u := b.user("pat@example.com")

	t.Run("log-in per IP", func(t *testing.T) {
		for range 3 {
			_, err := b.svc.LogIn(anonFrom("198.51.100.1"), u.Email, password)
			require.NoError(t, err)
		}
		tokens := b.count(`SELECT count(*) FROM auth_tokens`)
		_, err := b.svc.LogIn(anonFrom("198.51.100.1"), u.Email, password)
		requireCode(t, err, errcode.RateLimited)
		require.Equal(t, tokens, b.count(`SELECT count(*) FROM auth_tokens`), "a limited log-in issues nothing")
		_, err = b.svc.LogIn(anonFrom("198.51.100.2"), u.Email, password)
		require.NoError(t, err, "another address is not limited")
		// IPv6 hosts are limited by /64.
		for range 3 {
			_, err = b.svc.LogIn(anonFrom("2001:db8:1:2::1"), "nobody@example.com", "x")
			requireCode(t, err, errcode.Unauthenticated)
		}
		_, err = b.svc.LogIn(anonFrom("2001:db8:1:2:ffff::9"), u.Email, password)
		requireCode(t, err, errcode.RateLimited)
	})

	t.Run("log-in per email", func(t *testing.T) {
		// 4 log-ins of pat so far; the fifth passes, the sixth not, from any address.
		_, err := b.svc.LogIn(anon(), u.Email, "wrong password")
		requireCode(t, err, errcode.Unauthenticated)
		_, err = b.svc.LogIn(anon(), u.Email, password)
		requireCode(t, err, errcode.RateLimited)
		// The window slides: 90s on, 25s of the previous 60s window still
		// count, so its 6 attempts weigh 2.5.
		b.clock.Advance(90 * time.Second)
		_, err = b.svc.LogIn(anon(), u.Email, password)
		require.NoError(t, err)
	})

	t.Run("sign-up", func(t *testing.T) {
		for i := range 2 {
			_, err := b.svc.SignUp(anonFrom("198.51.100.7"), "signup"+string(rune('a'+i))+"@example.com", password, "")
			require.NoError(t, err)
		}
		users := b.count(`SELECT count(*) FROM users`)
		_, err := b.svc.SignUp(anonFrom("198.51.100.7"), "signupz@example.com", password, "")
		requireCode(t, err, errcode.RateLimited)
		require.Equal(t, users, b.count(`SELECT count(*) FROM users`))

		_, err = b.svc.SignUp(anon(), "twice@example.com", password, "")
		require.NoError(t, err)
		_, err = b.svc.SignUp(anon(), "twice@example.com", password, "")
		requireCode(t, err, errcode.Conflict)
		_, err = b.svc.SignUp(anon(), "TWICE@example.com", password, "")
		requireCode(t, err, errcode.RateLimited)
	})

	t.Run("password reset per email", func(t *testing.T) {
		require.NoError(t, b.svc.RequestPasswordReset(anon(), u.Email))
		mails := len(b.mails(u.Email, "reset_password"))
		requireCode(t, b.svc.RequestPasswordReset(anon(), u.Email), errcode.RateLimited)
		require.Len(t, b.mails(u.Email, "reset_password"), mails)
		// Unknown addresses are limited too, so limits tell nothing.
		require.NoError(t, b.svc.RequestPasswordReset(anon(), "ghost@example.com"))
		requireCode(t, b.svc.RequestPasswordReset(anon(), "ghost@example.com"), errcode.RateLimited)
	})
}

func TestRateLimitsAreSharedByReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *tenancy.Config) {
		c.RateLimits.LogInPerEmail = tenancy.RateLimit{Max: 2, Window: time.Minute}
	})
	u := b.user("quinn@example.com")
	replica := b.withService(func(*tenancy.Config) {})
	_, err := b.svc.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	_, err = replica.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	_, err = b.svc.LogIn(anon(), u.Email, password)
	requireCode(t, err, errcode.RateLimited)
	_, err = replica.LogIn(anon(), u.Email, password)
	requireCode(t, err, errcode.RateLimited)
}

func TestLogInOIDC(t *testing.T) {
	t.Parallel()
	b := setup(t)
	idp := "https://idp.test"

	// A new identity creates an active user with a personal org and namespace.
	tok, err := b.svc.LogInOIDC(anon(), tenancy.OIDCIdentity{Issuer: idp, Subject: "s-1", Email: "Rita@Corp.example", EmailVerified: true, Name: "Rita"})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(tok.Secret, tenancy.SessionTokenPrefix))
	p, err := b.svc.Authenticate(context.Background(), tok.Secret)
	require.NoError(t, err)
	rita, err := b.svc.User(context.Background(), p.UserID)
	require.NoError(t, err)
	require.Equal(t, "rita@corp.example", rita.Email)
	require.Equal(t, tenancy.UserActive, rita.Status)
	require.False(t, rita.HasPassword)
	require.NotNil(t, rita.EmailVerifiedAt)
	org, ns := b.personal(rita)
	require.Equal(t, "rita", org.Name)
	require.Equal(t, []string{"namespace.create"}, b.outboxKinds(tenancy.NamespaceKey(ns.ID)))

	// The same identity logs in the same user, even with another email claim.
	tok2, err := b.svc.LogInOIDC(anon(), tenancy.OIDCIdentity{Issuer: idp, Subject: "s-1", Email: "rita.new@corp.example", EmailVerified: true})
	require.NoError(t, err)
	p2, err := b.svc.Authenticate(context.Background(), tok2.Secret)
	require.NoError(t, err)
	require.Equal(t, rita.ID, p2.UserID)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM users`))
	_, err = b.svc.LogIn(anon(), rita.Email, password)
	requireCode(t, err, errcode.Unauthenticated)

	// A new identity with the verified email of a password user links to it.
	sam := b.user("sam@corp.example")
	tok3, err := b.svc.LogInOIDC(anon(), tenancy.OIDCIdentity{Issuer: idp, Subject: "s-2", Email: "SAM@corp.example", EmailVerified: true})
	require.NoError(t, err)
	p3, err := b.svc.Authenticate(context.Background(), tok3.Secret)
	require.NoError(t, err)
	require.Equal(t, sam.ID, p3.UserID)
	require.Equal(t, 1, b.count(`SELECT count(*) FROM oidc_identities WHERE user_id = $1`, sam.ID))
	_, err = b.svc.LogIn(anon(), sam.Email, password)
	require.NoError(t, err, "the password still works")
	require.Len(t, b.personalOrgs(sam), 1, "linking creates no second org")

	// An unverified email claim cannot link to an existing user.
	before := b.tableCounts()
	_, err = b.svc.LogInOIDC(anon(), tenancy.OIDCIdentity{Issuer: "https://other.test", Subject: "x", Email: sam.Email, EmailVerified: false})
	requireCode(t, err, errcode.Conflict)
	require.Equal(t, before, b.tableCounts())

	// Linking to a never-verified sign-up takes the account over: the
	// password someone else may have set is gone.
	squat, err := b.svc.SignUp(anon(), "tom@corp.example", password, "")
	require.NoError(t, err)
	squatSession, err := b.svc.LogIn(anon(), squat.Email, password)
	require.NoError(t, err)
	_, err = b.svc.LogInOIDC(anon(), tenancy.OIDCIdentity{Issuer: idp, Subject: "s-3", Email: squat.Email, EmailVerified: true})
	require.NoError(t, err)
	_, err = b.svc.LogIn(anon(), squat.Email, password)
	requireCode(t, err, errcode.Unauthenticated)
	_, err = b.svc.Authenticate(context.Background(), squatSession.Secret)
	requireCode(t, err, errcode.Unauthenticated)
	tom, err := b.svc.User(context.Background(), squat.ID)
	require.NoError(t, err)
	require.Equal(t, tenancy.UserActive, tom.Status)
	require.False(t, tom.HasPassword)

	// Disabled users are refused on every path.
	root := b.user("root@corp.example")
	require.NoError(t, b.svc.DisableUser(admin(root.ID), rita.ID))
	_, err = b.svc.LogInOIDC(anon(), tenancy.OIDCIdentity{Issuer: idp, Subject: "s-1", Email: rita.Email, EmailVerified: true})
	requireCode(t, err, errcode.Unauthenticated)
	_, err = b.svc.LogInOIDC(anon(), tenancy.OIDCIdentity{Issuer: "https://third.test", Subject: "r", Email: rita.Email, EmailVerified: true})
	requireCode(t, err, errcode.Unauthenticated)

	for _, bad := range []tenancy.OIDCIdentity{
		{Subject: "s", Email: "a@b.example"},
		{Issuer: idp, Email: "a@b.example"},
		{Issuer: idp, Subject: "s", Email: "not an email"},
	} {
		_, err := b.svc.LogInOIDC(anon(), bad)
		requireCode(t, err, errcode.BadUserInput)
	}
}

// personalOrgs returns the personal orgs u belongs to.
func (b *bundle) personalOrgs(u tenancy.User) []tenancy.Org {
	b.t.Helper()
	orgs, err := b.svc.MyOrgs(as(u.ID), tenancy.PageArgs{})
	require.NoError(b.t, err)
	var out []tenancy.Org
	for _, e := range orgs.Edges {
		if e.Node.Org.Personal {
			out = append(out, e.Node.Org)
		}
	}
	return out
}

func TestPlatformAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.user("uma@example.com")
	other := b.user("vic@example.com")
	_, err := b.svc.GrantPlatformAdmin(as(other.ID), u.Email)
	requireCode(t, err, errcode.Forbidden)
	got, err := b.svc.GrantPlatformAdmin(system("cli"), "UMA@example.com")
	require.NoError(t, err)
	require.True(t, got.PlatformAdmin)
	sess, err := b.svc.LogIn(anon(), u.Email, password)
	require.NoError(t, err)
	p, err := b.svc.Authenticate(context.Background(), sess.Secret)
	require.NoError(t, err)
	require.True(t, p.PlatformAdmin)
	require.Equal(t, []string{"user.signup", "user.verify_email", "user.platform_admin.grant", "user.login"}, b.auditActions(tenancy.UserKey(u.ID)))
	require.Equal(t, 1, b.count(`SELECT count(*) FROM audit_log WHERE actor = 'system:cli'`))

	got, err = b.svc.RevokePlatformAdmin(admin(other.ID), u.Email)
	require.NoError(t, err)
	require.False(t, got.PlatformAdmin)
	_, err = b.svc.GrantPlatformAdmin(system("cli"), "nobody@example.com")
	requireCode(t, err, errcode.NotFound)
}
