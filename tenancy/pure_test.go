package tenancy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
	}{
		{"alice@example.com", "alice@example.com"},
		{"  Alice.Smith@EXAMPLE.com\t", "alice.smith@example.com"},
		{"a+tag@sub.example.co.uk", "a+tag@sub.example.co.uk"},
		{"o'brien@example.ie", "o'brien@example.ie"},
		{"x@xn--bcher-kva.example", "x@xn--bcher-kva.example"},
		{strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com"},
		{"", ""},
		{"   ", ""},
		{"plain", ""},
		{"@example.com", ""},
		{"alice@", ""},
		{"alice@localhost", ""},
		{"a@b@example.com", ""},
		{".alice@example.com", ""},
		{"alice.@example.com", ""},
		{"al..ice@example.com", ""},
		{"al ice@example.com", ""},
		{"\"quoted\"@example.com", ""},
		{"alice@-example.com", ""},
		{"alice@example-.com", ""},
		{"alice@exa_mple.com", ""},
		{"alice@example..com", ""},
		{"jörg@example.com", ""},
		{"alice@exämple.com", ""},
		{"Alice <alice@example.com>", ""},
		{"alice@example.com\n", "alice@example.com"},
		{"alice\n@example.com", ""},
		{strings.Repeat("a", 65) + "@example.com", ""},
		{"a@" + strings.Repeat("b", 64) + ".com", ""},
		{"a@" + strings.Repeat(strings.Repeat("b", 60)+".", 5) + "com", ""},
	} {
		got, err := NormalizeEmail(tc.in)
		if tc.want == "" {
			require.Error(t, err, "%q", tc.in)
			e, ok := errcode.As(err)
			require.True(t, ok)
			require.Equal(t, "email", e.Field)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, got)
	}
}

func TestValidatePassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"", false},
		{"123456789", false},
		{"1234567890", true},
		{"ünïcödé!!", true}, // 10+ bytes
		{strings.Repeat("x", 256), true},
		{strings.Repeat("x", 257), false},
	} {
		err := ValidatePassword(tc.in)
		require.Equal(t, tc.ok, err == nil, "%q: %v", tc.in, err)
	}
}

func TestValidateNamespaceName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"web", true},
		{"web-prod-2", true},
		{"0abc", true},
		{"abc0", true},
		{"ns-abc12345", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-web", false},
		{"web-", false},
		{"Web", false},
		{"web_prod", false},
		{"web.prod", false},
		{"web prod", false},
		{"wéb", false},
		{"default", false},
		{"kube-system", false},
		{"kube-public", false},
		{"tenantplane-system", false},
		{"tenantplane", false},
		{"kube", true},
		{"my-default", true},
	} {
		err := ValidateNamespaceName(tc.name)
		require.Equal(t, tc.ok, err == nil, "%q: %v", tc.name, err)
		if err != nil {
			require.Equal(t, errcode.BadUserInput, errcode.Of(err))
		}
	}
}

func TestOrgNameFromEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ email, want string }{
		{"alice@example.com", "alice"},
		{"alice.smith@example.com", "alice-smith"},
		{"alice+work@example.com", "alice"},
		{"__x__@example.com", "x"},
		{"a..b--c@example.com", "a-b-c"},
		{"___@example.com", "user"},
		{"+tag@example.com", "tag"},
		{"Bob99@example.com", "bob99"},
		{strings.Repeat("ab.", 30) + "@example.com", strings.Repeat("ab-", 13) + "a"}, // cut at 40
	} {
		got := orgNameFromEmail(tc.email)
		require.Equal(t, tc.want, got, tc.email)
		require.NoError(t, ValidateOrgName(got))
	}
}

func TestPasswordHashing(t *testing.T) {
	t.Parallel()
	p := Argon2Params{Time: 1, MemoryKiB: 64, Threads: 2, KeyLen: 32, SaltLen: 16}
	h, err := hashPassword(p, "secret passphrase")
	require.NoError(t, err)
	require.Regexp(t, `^\$argon2id\$v=19\$m=64,t=1,p=2\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`, h)
	h2, err := hashPassword(p, "secret passphrase")
	require.NoError(t, err)
	require.NotEqual(t, h, h2, "fresh salt every time")

	ok, rehash, err := verifyPassword(h, "secret passphrase", p)
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, rehash)
	ok, _, err = verifyPassword(h, "secret passphrasE", p)
	require.NoError(t, err)
	require.False(t, ok)
	for _, other := range []Argon2Params{
		{Time: 2, MemoryKiB: 64, Threads: 2, KeyLen: 32, SaltLen: 16},
		{Time: 1, MemoryKiB: 128, Threads: 2, KeyLen: 32, SaltLen: 16},
		{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16},
		{Time: 1, MemoryKiB: 64, Threads: 2, KeyLen: 64, SaltLen: 16},
		{Time: 1, MemoryKiB: 64, Threads: 2, KeyLen: 32, SaltLen: 32},
	} {
		ok, rehash, err := verifyPassword(h, "secret passphrase", other)
		require.NoError(t, err)
		require.True(t, ok, "a hash verifies under its own parameters")
		require.True(t, rehash, "%+v", other)
	}

	// A known vector: RFC 9106 style parameters encoded by another
	// implementation (the reference argon2 CLI) for "password" and salt
	// "somesalt".
	ok, _, err = verifyPassword("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "password", p)
	require.NoError(t, err)
	require.True(t, ok)

	for _, bad := range []string{
		"",
		"plain",
		"$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=16$m=64,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=64,t=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=64,t=1,p=0$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=64,t=1,p=1$!!!$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$",
		"$argon2id$v=19$m=99999999999,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=64,t=1,p=1,x=2$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=064,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
	} {
		_, _, err := verifyPassword(bad, "password", p)
		require.ErrorIs(t, err, errBadPHC, "%q", bad)
	}
}

func TestCursor(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 5, 6, 7, 8, 9, 123456000, time.UTC)
	for _, c := range []Cursor{{ID: 0}, {ID: 42}, {ID: 1<<63 - 1}, {ID: 7, Time: at}} {
		got, err := DecodeCursor(c.Encode())
		require.NoError(t, err)
		require.Equal(t, c, got)
		require.NotContains(t, c.Encode(), "=")
	}
	for _, bad := range []string{
		"!!", "YWJj", // "abc"
		Cursor{ID: 1}.Encode() + "x",
		"YzE6",        // "c1:"
		"YzE6LTE",     // "c1:-1"
		"YzI6MQ",      // "c2:1"
		"YzE6MToyOjM", // "c1:1:2:3"
		"YzE6MTp4",    // "c1:1:x"
		strings.Repeat("Y", 200),
	} {
		_, err := DecodeCursor(bad)
		require.Error(t, err, "%q", bad)
		require.Equal(t, errcode.BadUserInput, errcode.Of(err))
	}
}

func TestPageArgsQuery(t *testing.T) {
	t.Parallel()
	after := Cursor{ID: 9}.Encode()
	for _, tc := range []struct {
		args PageArgs
		want PageQuery
		ok   bool
	}{
		{PageArgs{}, PageQuery{Limit: DefaultPageSize}, true},
		{PageArgs{First: 1}, PageQuery{Limit: 1}, true},
		{PageArgs{First: 100, After: after}, PageQuery{Limit: 100, After: Cursor{ID: 9}, HasAfter: true}, true},
		{PageArgs{First: 101}, PageQuery{}, false},
		{PageArgs{First: -1}, PageQuery{}, false},
		{PageArgs{After: "%%%"}, PageQuery{}, false},
	} {
		got, err := tc.args.Query()
		require.Equal(t, tc.ok, err == nil, "%+v: %v", tc.args, err)
		require.Equal(t, tc.want, got)
	}
}

func TestNewConnection(t *testing.T) {
	t.Parallel()
	key := func(i int64) Cursor { return Cursor{ID: i} }
	c := NewConnection(PageQuery{Limit: 2}, []int64{1, 2, 3}, key)
	require.Equal(t, []int64{1, 2}, c.Nodes())
	require.True(t, c.PageInfo.HasNextPage)
	require.Equal(t, Cursor{ID: 1}.Encode(), c.PageInfo.StartCursor)
	require.Equal(t, Cursor{ID: 2}.Encode(), c.PageInfo.EndCursor)
	c = NewConnection(PageQuery{Limit: 2}, []int64{5}, key)
	require.Equal(t, []int64{5}, c.Nodes())
	require.False(t, c.PageInfo.HasNextPage)
	c = NewConnection(PageQuery{Limit: 2}, nil, key)
	require.Empty(t, c.Edges)
	require.Empty(t, c.PageInfo.EndCursor)
}

func TestSlidingCount(t *testing.T) {
	t.Parallel()
	w := time.Minute
	for _, tc := range []struct {
		cur, prev int
		elapsed   time.Duration
		want      float64
	}{
		{1, 0, 0, 1},
		{1, 10, 0, 11},
		{1, 10, 30 * time.Second, 6},
		{1, 10, 45 * time.Second, 3.5},
		{3, 10, time.Minute, 3},
		{3, 10, 2 * time.Minute, 3},
		{3, 10, -time.Second, 13},
	} {
		require.InDelta(t, tc.want, slidingCount(tc.cur, tc.prev, tc.elapsed, w), 1e-9, "%+v", tc)
	}
}

func TestIPKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ip   string
		want string
	}{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::", "2001:db8:1:2::/64"},
	} {
		got, ok := ipKey(netip.MustParseAddr(tc.ip))
		require.True(t, ok)
		require.Equal(t, tc.want, got)
	}
	_, ok := ipKey(netip.Addr{})
	require.False(t, ok)
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	s, h := newSecret(SessionTokenPrefix)
	require.True(t, wellFormedSecret(s, SessionTokenPrefix))
	require.False(t, wellFormedSecret(s, APITokenPrefix))
	require.Len(t, s, 4+43)
	require.Equal(t, hashSecret(s), h)
	require.Len(t, h, 32)
	s2, _ := newSecret(SessionTokenPrefix)
	require.NotEqual(t, s, s2)
	require.False(t, wellFormedSecret(s[:len(s)-1], SessionTokenPrefix))

	seen := map[byte]bool{}
	for range 200 {
		l := randomLabel(8)
		require.Len(t, l, 8)
		require.NoError(t, ValidateDNSLabel("x", l))
		for i := range len(l) {
			seen[l[i]] = true
		}
	}
	require.Greater(t, len(seen), 30, "all of a-z0-9 show up")
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, DefaultConfig().Validate())
	for name, broken := range map[string]func(*Config){
		"argon2 time":         func(c *Config) { c.Argon2.Time = 0 },
		"argon2 memory":       func(c *Config) { c.Argon2.MemoryKiB = 4 },
		"argon2 threads":      func(c *Config) { c.Argon2.Threads = 0 },
		"argon2 key":          func(c *Config) { c.Argon2.KeyLen = 8 },
		"session ttl":         func(c *Config) { c.SessionTTL = 0 },
		"invitation ttl":      func(c *Config) { c.InvitationTTL = 31 * 24 * time.Hour },
		"api token ttl":       func(c *Config) { c.APITokenTTL = -time.Hour },
		"rate limit max":      func(c *Config) { c.RateLimits.LogInPerIP.Max = 0 },
		"rate limit window":   func(c *Config) { c.RateLimits.SignUpPerEmail.Window = time.Millisecond },
		"invite limit":        func(c *Config) { c.RateLimits.InvitePerUser = RateLimit{} },
		"max orgs":            func(c *Config) { c.MaxOrgsPerUser = 0 },
		"base url":            func(c *Config) { c.BaseURL = "console.example.com" },
		"base url scheme":     func(c *Config) { c.BaseURL = "ftp://console.example.com" },
		"last used interval":  func(c *Config) { c.LastUsedInterval = 0 },
		"verification ttl":    func(c *Config) { c.VerificationTTL = -1 },
		"max namespaces":      func(c *Config) { c.MaxNamespacesPerOrg = -1 },
		"invitation max ttl":  func(c *Config) { c.InvitationMaxTTL = 0 },
		"api token max ttl":   func(c *Config) { c.APITokenMaxTTL = time.Hour },
		"reset ttl":           func(c *Config) { c.ResetTTL = 0 },
		"argon2 salt":         func(c *Config) { c.Argon2.SaltLen = 4 },
		"max api tokens":      func(c *Config) { c.MaxAPITokensPerUser = 0 },
		"reset per ip window": func(c *Config) { c.RateLimits.ResetPerIP.Window = 0 },
	} {
		c := DefaultConfig()
		broken(&c)
		require.Error(t, c.Validate(), name)
	}
}

func TestSenderBackoff(t *testing.T) {
	t.Parallel()
	c := SenderConfig{BackoffBase: 30 * time.Second, BackoffMax: 10 * time.Minute}
	for attempt, want := range map[int]time.Duration{
		1: 30 * time.Second, 2: time.Minute, 3: 2 * time.Minute, 4: 4 * time.Minute,
		5: 8 * time.Minute, 6: 10 * time.Minute, 60: 10 * time.Minute,
	} {
		require.Equal(t, want, c.Backoff(attempt), "attempt %d", attempt)
	}
	require.NoError(t, DefaultSenderConfig().Validate())
	bad := DefaultSenderConfig()
	bad.Lease = bad.SendTimeout
	require.Error(t, bad.Validate())
}

func TestRolesAndStatus(t *testing.T) {
	t.Parallel()
	require.True(t, RoleOwner.AtLeast(RoleAdmin))
	require.True(t, RoleAdmin.AtLeast(RoleAdmin))
	require.False(t, RoleDeveloper.AtLeast(RoleAdmin))
	require.False(t, Role("").AtLeast(RoleViewer))
	require.False(t, Role("root").Valid())
	for _, r := range Roles() {
		require.True(t, r.Valid())
	}
	for _, r := range OrgRoles() {
		require.True(t, r.Valid())
	}
	require.False(t, OrgRole("admin").Valid())

	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := now.Add(-time.Minute)
	by := int64(3)
	for _, tc := range []struct {
		inv  Invitation
		want InvitationStatus
	}{
		{Invitation{ExpiresAt: now.Add(time.Second)}, InvitationPending},
		{Invitation{ExpiresAt: now}, InvitationExpired},
		{Invitation{ExpiresAt: now.Add(time.Hour), RevokedAt: &at}, InvitationRevoked},
		{Invitation{ExpiresAt: now.Add(-time.Hour), AcceptedAt: &at, AcceptedBy: &by}, InvitationAccepted},
	} {
		require.Equal(t, tc.want, tc.inv.Status(now))
	}
	require.Equal(t, "ns:7", NamespaceKey(7))
	id, ok := parseKey("ns:7", "ns")
	require.True(t, ok)
	require.Equal(t, int64(7), id)
	for _, bad := range []string{"ns:", "ns:x", "org:7", "ns:-1", "ns7", "ns:0"} {
		_, ok := parseKey(bad, "ns")
		require.False(t, ok, bad)
	}
}
