package tenancy

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Config holds the rules of identity and tenancy. Start from DefaultConfig;
// New validates it.
type Config struct {
	// Argon2 are the password hashing parameters. Changing them makes every
	// successful log-in rehash the password with the new ones.
	Argon2 Argon2Params

	// SessionTTL is how long a log-in session lasts (default 14 days).
	SessionTTL time.Duration
	// VerificationTTL is how long an email verification link works (48h).
	VerificationTTL time.Duration
	// ResetTTL is how long a password reset link works (1h).
	ResetTTL time.Duration
	// InvitationTTL is the default lifetime of an invitation (7 days);
	// InvitationMaxTTL the longest one may ask for (30 days).
	InvitationTTL    time.Duration
	InvitationMaxTTL time.Duration
	// APITokenTTL is the default lifetime of a personal API token (90 days);
	// APITokenMaxTTL the longest one may ask for (1 year).
	APITokenTTL    time.Duration
	APITokenMaxTTL time.Duration
	// LastUsedInterval is how often a token's last-used time is written at
	// most (1 minute), so that authentication rarely writes.
	LastUsedInterval time.Duration
	// TokenCacheTTL is how long a replica may answer for a token it
	// authenticated without asking the database again (10s), while its
	// change feed listens (see TokenCache); zero turns the cache off.
	TokenCacheTTL time.Duration
	// TokenCacheSize bounds the tokens remembered (100,000).
	TokenCacheSize int

	// RequireVerifiedEmail refuses log-in (and tokens) to users whose email
	// address is not verified yet. When false they may log in and their
	// status shows "pending".
	RequireVerifiedEmail bool

	// RateLimits bound sign-up, log-in and password reset requests.
	RateLimits RateLimits

	// MaxOrgsPerUser bounds the orgs a user owns (10).
	MaxOrgsPerUser int
	// MaxNamespacesPerOrg bounds the namespaces of one org (20).
	MaxNamespacesPerOrg int
	// MaxAPITokensPerUser bounds a user's live API tokens (50).
	MaxAPITokensPerUser int

	// BaseURL is the console's address, used for links in mail, e.g.
	// "https://console.example.com".
	BaseURL string
}

// Argon2Params are argon2id parameters, as recorded in PHC strings.
type Argon2Params struct {
	// Time is the number of passes (iterations).
	Time uint32
	// MemoryKiB is the memory used, in KiB.
	MemoryKiB uint32
	// Threads is the degree of parallelism.
	Threads uint8
	// KeyLen is the length of the derived key in bytes.
	KeyLen uint32
	// SaltLen is the length of the random salt in bytes.
	SaltLen uint32
}

// RateLimit allows Max events per Window for one key.
type RateLimit struct {
	Max    int
	Window time.Duration
}

// RateLimits are the limits per client IP and per email address.
type RateLimits struct {
	SignUpPerIP    RateLimit
	SignUpPerEmail RateLimit
	LogInPerIP     RateLimit
	LogInPerEmail  RateLimit
	ResetPerIP     RateLimit
	ResetPerEmail  RateLimit
	// InvitePerUser bounds the invitations one user sends, so invitations
	// cannot be used to send mail in bulk.
	InvitePerUser RateLimit
}

// DefaultArgon2 follows the OWASP recommendation for argon2id
// (19 MiB, 2 passes, 1 thread).
var DefaultArgon2 = Argon2Params{Time: 2, MemoryKiB: 19 * 1024, Threads: 1, KeyLen: 32, SaltLen: 16}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Argon2:           DefaultArgon2,
		SessionTTL:       14 * 24 * time.Hour,
		VerificationTTL:  48 * time.Hour,
		ResetTTL:         time.Hour,
		InvitationTTL:    7 * 24 * time.Hour,
		InvitationMaxTTL: 30 * 24 * time.Hour,
		APITokenTTL:      90 * 24 * time.Hour,
		APITokenMaxTTL:   365 * 24 * time.Hour,
		LastUsedInterval: time.Minute,
		TokenCacheTTL:    10 * time.Second,
		TokenCacheSize:   100_000,
		RateLimits: RateLimits{
			SignUpPerIP:    RateLimit{Max: 10, Window: time.Hour},
			SignUpPerEmail: RateLimit{Max: 3, Window: time.Hour},
			LogInPerIP:     RateLimit{Max: 60, Window: 10 * time.Minute},
			LogInPerEmail:  RateLimit{Max: 10, Window: 10 * time.Minute},
			ResetPerIP:     RateLimit{Max: 10, Window: time.Hour},
			ResetPerEmail:  RateLimit{Max: 3, Window: time.Hour},
			InvitePerUser:  RateLimit{Max: 50, Window: time.Hour},
		},
		MaxOrgsPerUser:      10,
		MaxNamespacesPerOrg: 20,
		MaxAPITokensPerUser: 50,
		BaseURL:             "http://localhost:8080",
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	var errs []error
	if err := c.Argon2.Validate(); err != nil {
		errs = append(errs, err)
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"SessionTTL", c.SessionTTL}, {"VerificationTTL", c.VerificationTTL},
		{"ResetTTL", c.ResetTTL}, {"InvitationTTL", c.InvitationTTL},
		{"InvitationMaxTTL", c.InvitationMaxTTL}, {"APITokenTTL", c.APITokenTTL},
		{"APITokenMaxTTL", c.APITokenMaxTTL}, {"LastUsedInterval", c.LastUsedInterval},
	}
	for _, d := range durations {
		if d.d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", d.name))
		}
	}
	if c.TokenCacheTTL < 0 || c.TokenCacheTTL > time.Hour {
		errs = append(errs, errors.New("TokenCacheTTL must be within 0..1h"))
	}
	if c.TokenCacheTTL > 0 && (c.TokenCacheSize <= 0 || c.TokenCacheSize > 10_000_000) {
		errs = append(errs, errors.New("TokenCacheSize must be within 1..10,000,000"))
	}
	if c.InvitationTTL > c.InvitationMaxTTL {
		errs = append(errs, errors.New("InvitationTTL exceeds InvitationMaxTTL"))
	}
	if c.APITokenTTL > c.APITokenMaxTTL {
		errs = append(errs, errors.New("APITokenTTL exceeds APITokenMaxTTL"))
	}
	limits := []struct {
		name string
		l    RateLimit
	}{
		{"SignUpPerIP", c.RateLimits.SignUpPerIP}, {"SignUpPerEmail", c.RateLimits.SignUpPerEmail},
		{"LogInPerIP", c.RateLimits.LogInPerIP}, {"LogInPerEmail", c.RateLimits.LogInPerEmail},
		{"ResetPerIP", c.RateLimits.ResetPerIP}, {"ResetPerEmail", c.RateLimits.ResetPerEmail},
		{"InvitePerUser", c.RateLimits.InvitePerUser},
	}
	for _, l := range limits {
		if l.l.Max <= 0 || l.l.Window < time.Second {
			errs = append(errs, fmt.Errorf("rate limit %s needs Max > 0 and Window >= 1s", l.name))
		}
	}
	if c.MaxOrgsPerUser <= 0 || c.MaxNamespacesPerOrg <= 0 || c.MaxAPITokensPerUser <= 0 {
		errs = append(errs, errors.New("MaxOrgsPerUser, MaxNamespacesPerOrg and MaxAPITokensPerUser must be positive"))
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("BaseURL %q must be an absolute http(s) URL", c.BaseURL))
	}
	if len(errs) > 0 {
		return fmt.Errorf("tenancy config: %w", errors.Join(errs...))
	}
	return nil
}

// Validate checks argon2id parameters for sane bounds.
func (p Argon2Params) Validate() error {
	switch {
	case p.Time < 1 || p.Time > 100:
		return errors.New("argon2 Time must be 1..100")
	case p.MemoryKiB < 8*uint32(max(p.Threads, 1)) || p.MemoryKiB > 4*1024*1024:
		return errors.New("argon2 MemoryKiB must be at least 8 per thread and at most 4 GiB")
	case p.Threads < 1:
		return errors.New("argon2 Threads must be at least 1")
	case p.KeyLen < 16 || p.KeyLen > 128:
		return errors.New("argon2 KeyLen must be 16..128")
	case p.SaltLen < 8 || p.SaltLen > 64:
		return errors.New("argon2 SaltLen must be 8..64")
	}
	return nil
}
