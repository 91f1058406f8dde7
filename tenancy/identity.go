package tenancy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// Messages that must not tell one failure from another.
var (
	errBadLogin     = errcode.New(errcode.Unauthenticated, "invalid email or password")
	errBadToken     = errcode.New(errcode.Unauthenticated, "invalid or expired token")
	errDisabled     = errcode.New(errcode.Unauthenticated, "account is disabled")
	errNotVerified  = errcode.New(errcode.Unauthenticated, "email address is not verified")
	errBadMailToken = errcode.Invalid("token", "invalid or expired link")
)

// SignUp registers a user with email and password. In one transaction it
// creates the user (status pending), a personal org named after the email's
// local part, one namespace "ns-<random>", owner memberships of both, audit
// rows, an outbox row for the namespace and a queued verification mail.
// Limited per client IP (from the Actor) and per email: RATE_LIMITED.
// A registered email (case-insensitively) is CONFLICT.
func (s *Service) SignUp(ctx context.Context, email, password, displayName string) (User, error) {
	a := actorOf(ctx)
	if err := s.limitIP(ctx, "signup", s.cfg.RateLimits.SignUpPerIP); err != nil {
		return User{}, err
	}
	email, err := NormalizeEmail(email)
	if err != nil {
		return User{}, err
	}
	if err := s.limitEmail(ctx, "signup", email, s.cfg.RateLimits.SignUpPerEmail); err != nil {
		return User{}, err
	}
	if err := ValidatePassword(password); err != nil {
		return User{}, err
	}
	displayName, err = cleanText("displayName", displayName, MaxDisplayNameLen)
	if err != nil {
		return User{}, err
	}
	hash, err := hashPassword(s.cfg.Argon2, password)
	if err != nil {
		return User{}, fmt.Errorf("sign up: %w", err)
	}
	var u User
	err = s.store.InTx(ctx, func(tx Tx) error {
		u, err = tx.InsertUser(ctx, NewUserRow{
			Email: email, DisplayName: displayName, PasswordHash: hash, Status: UserPending, Now: s.now(),
		})
		if err != nil {
			if errors.Is(err, ErrConflict) {
				return errcode.New(errcode.Conflict, "an account with this email address exists")
			}
			return err
		}
		if err := s.auditAs(ctx, tx, a, UserKey(u.ID), "user.signup", UserKey(u.ID),
			map[string]any{"email": u.Email, "method": "password"}); err != nil {
			return err
		}
		if _, _, err := s.provisionPersonal(ctx, tx, a, u); err != nil {
			return err
		}
		return s.queueVerification(ctx, tx, u)
	})
	if err != nil {
		return User{}, fmt.Errorf("sign up: %w", err)
	}
	return u, nil
}

// provisionPersonal creates u's personal org and its first namespace with u
// as owner of both, in tx.
func (s *Service) provisionPersonal(ctx context.Context, tx Tx, a Actor, u User) (Org, Namespace, error) {
	now := s.now()
	actorKey := UserKey(u.ID)
	base := orgNameFromEmail(u.Email)
	var org Org
	for i := 0; ; i++ {
		if i == 8 {
			return Org{}, Namespace{}, errors.New("no free personal org name")
		}
		name := base
		if i > 0 {
			name = strings.Trim(base[:min(len(base), MaxDNSLabelLen-7)], "-") + "-" + randomLabel(6)
		}
		o, ok, err := tx.InsertOrg(ctx, name, u.DisplayName, true, now)
		if err != nil {
			return Org{}, Namespace{}, err
		}
		if ok {
			org = o
			break
		}
	}
	if err := tx.InsertOrgMember(ctx, OrgMember{OrgID: org.ID, UserID: u.ID, Role: OrgRoleOwner, CreatedAt: now}); err != nil {
		return Org{}, Namespace{}, err
	}
	if err := s.auditAs(ctx, tx, a, actorKey, "org.create", OrgKey(org.ID),
		map[string]any{"name": org.Name, "personal": true}); err != nil {
		return Org{}, Namespace{}, err
	}
	var ns Namespace
	for i := 0; ; i++ {
		if i == 8 {
			return Org{}, Namespace{}, errors.New("no free namespace name")
		}
		n, ok, err := tx.InsertNamespace(ctx, org.ID, "ns-"+randomLabel(8), now)
		if err != nil {
			return Org{}, Namespace{}, err
		}
		if ok {
			ns = n
			break
		}
	}
	if err := s.addNamespaceOwner(ctx, tx, a, actorKey, ns, u.ID); err != nil {
		return Org{}, Namespace{}, err
	}
	return org, ns, nil
}

// addNamespaceOwner makes userID the owner of a namespace just created and
// records the creation: membership, audit and outbox.
func (s *Service) addNamespaceOwner(ctx context.Context, tx Tx, a Actor, actorKey string, ns Namespace, userID int64) error {
	if err := tx.InsertMember(ctx, Member{NamespaceID: ns.ID, UserID: userID, Role: RoleOwner, CreatedAt: s.now()}); err != nil {
		return err
	}
	if err := s.auditAs(ctx, tx, a, actorKey, "namespace.create", NamespaceKey(ns.ID),
		map[string]any{"name": ns.Name, "org_id": ns.OrgID, "owner_id": userID}); err != nil {
		return err
	}
	return s.outbox(ctx, tx, "namespace.create", NamespaceKey(ns.ID), map[string]any{
		"namespace_id": ns.ID, "name": ns.Name, "org_id": ns.OrgID, "state": ns.State, "owner_id": userID,
	})
}

// queueVerification issues a verification token for u and queues its mail.
func (s *Service) queueVerification(ctx context.Context, tx Tx, u User) error {
	secret, hash := newSecret(verifyTokenPrefix)
	now := s.now()
	if err := tx.InsertUserToken(ctx, UserTokenRow{
		UserID: u.ID, Purpose: PurposeVerifyEmail, Hash: hash, Email: u.Email,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.VerificationTTL),
	}); err != nil {
		return err
	}
	return tx.EnqueueMail(ctx, s.verificationMail(u.Email, secret, s.cfg.VerificationTTL))
}

// VerifyEmail consumes a single-use verification token and makes the user
// active. Unknown, used or expired tokens are BAD_USER_INPUT on "token".
func (s *Service) VerifyEmail(ctx context.Context, token string) (User, error) {
	if !wellFormedSecret(token, verifyTokenPrefix) {
		return User{}, errBadMailToken
	}
	a := actorOf(ctx)
	var u User
	err := s.store.InTx(ctx, func(tx Tx) error {
		now := s.now()
		t, err := tx.ConsumeUserToken(ctx, PurposeVerifyEmail, hashSecret(token), now)
		if errors.Is(err, ErrNotFound) {
			return errBadMailToken
		} else if err != nil {
			return err
		}
		u, err = tx.UserByIDForUpdate(ctx, t.UserID)
		if err != nil {
			return err
		}
		if u.Email != t.Email {
			return errBadMailToken
		}
		if err := tx.ExpireUserTokens(ctx, u.ID, PurposeVerifyEmail, now); err != nil {
			return err
		}
		if u.EmailVerifiedAt != nil && u.Status != UserPending {
			return nil
		}
		status := u.Status
		if status == UserPending {
			status = UserActive
		}
		u, err = tx.SetUserStatus(ctx, u.ID, status, &now, u.DisabledAt, now)
		if err != nil {
			return err
		}
		return s.auditAs(ctx, tx, a, UserKey(u.ID), "user.verify_email", UserKey(u.ID), map[string]any{"email": u.Email})
	})
	if err != nil {
		return User{}, fmt.Errorf("verify email: %w", err)
	}
	return u, nil
}

// ResendVerification queues a new verification mail for the acting user
// when their email is not verified yet; limited like password resets.
func (s *Service) ResendVerification(ctx context.Context) error {
	a, err := requireUser(ctx)
	if err != nil {
		return err
	}
	if err := s.limitIP(ctx, "verify", s.cfg.RateLimits.ResetPerIP); err != nil {
		return err
	}
	if err := s.limitEmail(ctx, "verify", UserKey(a.UserID), s.cfg.RateLimits.ResetPerEmail); err != nil {
		return err
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		u, err := tx.UserByIDForUpdate(ctx, a.UserID)
		if err != nil {
			return err
		}
		if u.EmailVerifiedAt != nil {
			return errcode.New(errcode.Conflict, "email address is already verified")
		}
		if err := tx.ExpireUserTokens(ctx, u.ID, PurposeVerifyEmail, s.now()); err != nil {
			return err
		}
		if err := s.queueVerification(ctx, tx, u); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, "user.resend_verification", UserKey(u.ID), nil)
	})
	if err != nil {
		return fmt.Errorf("resend verification: %w", err)
	}
	return nil
}

// LogIn checks email and password and issues a session token (prefix
// "tps_"). Wrong email or password are the same UNAUTHENTICATED error;
// disabled users (and, under RequireVerifiedEmail, pending users) are
// refused. Limited per IP and per email. Rehashes the password when the
// argon2 parameters changed.
func (s *Service) LogIn(ctx context.Context, email, password string) (NewToken, error) {
	a := actorOf(ctx)
	if err := s.limitIP(ctx, "login", s.cfg.RateLimits.LogInPerIP); err != nil {
		return NewToken{}, err
	}
	email, err := NormalizeEmail(email)
	if err != nil {
		return NewToken{}, errBadLogin
	}
	if err := s.limitEmail(ctx, "login", email, s.cfg.RateLimits.LogInPerEmail); err != nil {
		return NewToken{}, err
	}
	if len(password) > MaxPasswordLen {
		return NewToken{}, errBadLogin
	}
	u, hash, err := s.store.UserByEmail(ctx, email)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return NewToken{}, fmt.Errorf("log in: %w", err)
	}
	if err != nil || hash == "" {
		// Spend the time a real check takes, so timing does not tell
		// whether the address is registered.
		_, _, _ = verifyPassword(s.dummyHash, password, s.cfg.Argon2)
		return NewToken{}, errBadLogin
	}
	ok, rehash, err := verifyPassword(hash, password, s.cfg.Argon2)
	if err != nil {
		return NewToken{}, fmt.Errorf("log in: user %d: %w", u.ID, err)
	}
	if !ok {
		return NewToken{}, errBadLogin
	}
	if err := s.mayLogIn(u); err != nil {
		return NewToken{}, err
	}
	var newHash string
	if rehash {
		if newHash, err = hashPassword(s.cfg.Argon2, password); err != nil {
			return NewToken{}, fmt.Errorf("log in: %w", err)
		}
	}
	var tok NewToken
	err = s.store.InTx(ctx, func(tx Tx) error {
		// Re-read under lock: the user may have been disabled meanwhile.
		u, err := tx.UserByIDForUpdate(ctx, u.ID)
		if err != nil {
			return err
		}
		if err := s.mayLogIn(u); err != nil {
			return err
		}
		if newHash != "" {
			if err := tx.SetPasswordHash(ctx, u.ID, newHash, s.now()); err != nil {
				return err
			}
		}
		tok, err = s.issueToken(ctx, tx, u.ID, TokenSession, "", s.cfg.SessionTTL)
		if err != nil {
			return err
		}
		return s.auditAs(ctx, tx, a, UserKey(u.ID), "user.login", UserKey(u.ID),
			map[string]any{"method": "password", "token_id": tok.ID, "rehashed": newHash != ""})
	})
	if err != nil {
		return NewToken{}, fmt.Errorf("log in: %w", err)
	}
	return tok, nil
}

// mayLogIn refuses disabled users, and pending ones under
// RequireVerifiedEmail.
func (s *Service) mayLogIn(u User) error {
	switch {
	case u.Status == UserDisabled:
		return errDisabled
	case u.Status == UserPending && s.cfg.RequireVerifiedEmail:
		return errNotVerified
	}
	return nil
}

// issueToken stores a new session or API token for userID in tx.
func (s *Service) issueToken(ctx context.Context, tx Tx, userID int64, kind TokenKind, name string, ttl time.Duration) (NewToken, error) {
	prefix := SessionTokenPrefix
	if kind == TokenAPI {
		prefix = APITokenPrefix
	}
	secret, hash := newSecret(prefix)
	now := s.now()
	t := NewToken{Kind: kind, Secret: secret, ExpiresAt: now.Add(ttl)}
	id, err := tx.InsertAuthToken(ctx, AuthTokenRow{
		UserID: userID, Kind: kind, Name: name, Hash: hash, CreatedAt: now, ExpiresAt: t.ExpiresAt,
	})
	if err != nil {
		return NewToken{}, err
	}
	t.ID = id
	return t, nil
}

// Bounds of OIDC claims.
const maxOIDCClaimLen = 255

// LogInOIDC logs in the person behind a verified OIDC identity and issues a
// session token. An identity already linked logs in its user; otherwise a
// user whose email the provider verified gets linked; otherwise a new active
// user is created with a personal org and namespace, as at sign-up.
// Disabled users are refused.
//
// Linking to an existing user whose email was never verified takes the
// account over for the identity: its password (set by whoever signed up
// with the address) is removed and its tokens revoked.
func (s *Service) LogInOIDC(ctx context.Context, id OIDCIdentity) (NewToken, error) {
	if id.Issuer == "" || len(id.Issuer) > maxOIDCClaimLen {
		return NewToken{}, errcode.Invalid("issuer", "is missing or too long")
	}
	if id.Subject == "" || len(id.Subject) > maxOIDCClaimLen {
		return NewToken{}, errcode.Invalid("subject", "is missing or too long")
	}
	email, err := NormalizeEmail(id.Email)
	if err != nil {
		return NewToken{}, err
	}
	name, err := cleanText("name", id.Name, MaxDisplayNameLen)
	if err != nil {
		name = ""
	}
	var tok NewToken
	// Two first log-ins of one identity may race to create the user: the
	// loser sees a unique violation and, on the second try, the link.
	for attempt := 0; ; attempt++ {
		tok, err = s.logInOIDC(ctx, id, email, name)
		if err != nil && errors.Is(err, ErrConflict) && attempt == 0 {
			if _, lookErr := s.store.OIDCUserID(ctx, id.Issuer, id.Subject); lookErr == nil {
				continue
			}
		}
		break
	}
	if err != nil {
		return NewToken{}, fmt.Errorf("log in with oidc: %w", err)
	}
	return tok, nil
}

func (s *Service) logInOIDC(ctx context.Context, id OIDCIdentity, email, name string) (NewToken, error) {
	a := actorOf(ctx)
	var tok NewToken
	err := s.store.InTx(ctx, func(tx Tx) error {
		now := s.now()
		var u User
		userID, err := tx.OIDCUserID(ctx, id.Issuer, id.Subject)
		switch {
		case err == nil:
			if u, err = tx.UserByIDForUpdate(ctx, userID); err != nil {
				return err
			}
			if err := tx.TouchOIDC(ctx, id.Issuer, id.Subject, now); err != nil {
				return err
			}
		case errors.Is(err, ErrNotFound):
			u, err = s.linkOrCreateOIDC(ctx, tx, a, id, email, name)
			if err != nil {
				return err
			}
		default:
			return err
		}
		if u.Status == UserDisabled {
			return errDisabled
		}
		if u.Status == UserPending && s.cfg.RequireVerifiedEmail {
			return errNotVerified
		}
		tok, err = s.issueToken(ctx, tx, u.ID, TokenSession, "", s.cfg.SessionTTL)
		if err != nil {
			return err
		}
		return s.auditAs(ctx, tx, a, UserKey(u.ID), "user.login", UserKey(u.ID),
			map[string]any{"method": "oidc", "issuer": id.Issuer, "token_id": tok.ID})
	})
	return tok, err
}

// linkOrCreateOIDC links an identity seen for the first time to the user
// with its verified email, or creates that user.
func (s *Service) linkOrCreateOIDC(ctx context.Context, tx Tx, a Actor, id OIDCIdentity, email, name string) (User, error) {
	now := s.now()
	u, _, err := tx.UserByEmailForUpdate(ctx, email)
	switch {
	case err == nil:
		if !id.EmailVerified {
			return User{}, errcode.New(errcode.Conflict,
				"an account with this email address exists and the identity provider did not verify the address")
		}
		if u.Status == UserDisabled {
			return User{}, errDisabled
		}
		detail := map[string]any{"issuer": id.Issuer, "subject": id.Subject, "email": email}
		if u.EmailVerifiedAt == nil {
			// Whoever set the password never proved they own the address.
			if err := tx.SetPasswordHash(ctx, u.ID, "", now); err != nil {
				return User{}, err
			}
			if _, err := tx.RevokeUserTokens(ctx, u.ID, now); err != nil {
				return User{}, err
			}
			if u, err = tx.SetUserStatus(ctx, u.ID, UserActive, &now, nil, now); err != nil {
				return User{}, err
			}
			detail["took_over_unverified"] = true
		}
		if err := tx.LinkOIDC(ctx, id.Issuer, id.Subject, u.ID, email, now); err != nil {
			return User{}, err
		}
		return u, s.auditAs(ctx, tx, a, UserKey(u.ID), "user.oidc_link", UserKey(u.ID), detail)
	case errors.Is(err, ErrNotFound):
		var verifiedAt *time.Time
		if id.EmailVerified {
			verifiedAt = &now
		}
		u, err := tx.InsertUser(ctx, NewUserRow{
			Email: email, DisplayName: name, Status: UserActive, EmailVerifiedAt: verifiedAt, Now: now,
		})
		if err != nil {
			return User{}, err
		}
		if err := tx.LinkOIDC(ctx, id.Issuer, id.Subject, u.ID, email, now); err != nil {
			return User{}, err
		}
		if err := s.auditAs(ctx, tx, a, UserKey(u.ID), "user.signup", UserKey(u.ID),
			map[string]any{"email": email, "method": "oidc", "issuer": id.Issuer}); err != nil {
			return User{}, err
		}
		if _, _, err := s.provisionPersonal(ctx, tx, a, u); err != nil {
			return User{}, err
		}
		return u, nil
	default:
		return User{}, err
	}
}

// LogOut revokes the acting user's token tokenID (Principal.TokenID).
func (s *Service) LogOut(ctx context.Context, tokenID int64) error {
	a, err := requireUser(ctx)
	if err != nil {
		return err
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		if err := tx.RevokeToken(ctx, a.UserID, tokenID, "", s.now()); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, "user.logout", UserKey(a.UserID), map[string]any{"token_id": tokenID})
	})
	if err != nil {
		return fmt.Errorf("log out: %w", err)
	}
	return nil
}

// RequestPasswordReset queues a reset mail when email belongs to a user who
// can log in. It never tells whether the email exists; only rate limits
// (per IP and per email) and a malformed address produce an error.
func (s *Service) RequestPasswordReset(ctx context.Context, email string) error {
	a := actorOf(ctx)
	if err := s.limitIP(ctx, "reset", s.cfg.RateLimits.ResetPerIP); err != nil {
		return err
	}
	email, err := NormalizeEmail(email)
	if err != nil {
		return err
	}
	if err := s.limitEmail(ctx, "reset", email, s.cfg.RateLimits.ResetPerEmail); err != nil {
		return err
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		u, _, err := tx.UserByEmailForUpdate(ctx, email)
		if errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if u.Status == UserDisabled {
			return nil
		}
		now := s.now()
		// Only the newest link works.
		if err := tx.ExpireUserTokens(ctx, u.ID, PurposeResetPassword, now); err != nil {
			return err
		}
		secret, hash := newSecret(resetTokenPrefix)
		if err := tx.InsertUserToken(ctx, UserTokenRow{
			UserID: u.ID, Purpose: PurposeResetPassword, Hash: hash, Email: u.Email,
			CreatedAt: now, ExpiresAt: now.Add(s.cfg.ResetTTL),
		}); err != nil {
			return err
		}
		if err := tx.EnqueueMail(ctx, s.resetMail(u.Email, secret, s.cfg.ResetTTL)); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, "user.password_reset_request", UserKey(u.ID), nil)
	})
	if err != nil {
		return fmt.Errorf("request password reset: %w", err)
	}
	return nil
}

// ResetPassword consumes a single-use reset token, sets the new password
// and revokes every session and API token of the user. Since the link
// reached the mailbox, it also verifies the email address.
func (s *Service) ResetPassword(ctx context.Context, token, newPassword string) error {
	if !wellFormedSecret(token, resetTokenPrefix) {
		return errBadMailToken
	}
	if err := ValidatePassword(newPassword); err != nil {
		return err
	}
	hash, err := hashPassword(s.cfg.Argon2, newPassword)
	if err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	a := actorOf(ctx)
	err = s.store.InTx(ctx, func(tx Tx) error {
		now := s.now()
		t, err := tx.ConsumeUserToken(ctx, PurposeResetPassword, hashSecret(token), now)
		if errors.Is(err, ErrNotFound) {
			return errBadMailToken
		} else if err != nil {
			return err
		}
		u, err := tx.UserByIDForUpdate(ctx, t.UserID)
		if err != nil {
			return err
		}
		if u.Email != t.Email || u.Status == UserDisabled {
			return errBadMailToken
		}
		if err := tx.SetPasswordHash(ctx, u.ID, hash, now); err != nil {
			return err
		}
		revoked, err := tx.RevokeUserTokens(ctx, u.ID, now)
		if err != nil {
			return err
		}
		if err := tx.ExpireUserTokens(ctx, u.ID, PurposeResetPassword, now); err != nil {
			return err
		}
		if u.Status == UserPending {
			if _, err := tx.SetUserStatus(ctx, u.ID, UserActive, &now, nil, now); err != nil {
				return err
			}
		}
		return s.auditAs(ctx, tx, a, UserKey(u.ID), "user.password_reset", UserKey(u.ID),
			map[string]any{"tokens_revoked": revoked})
	})
	if err != nil {
		return fmt.Errorf("reset password: %w", err)
	}
	return nil
}

// CreateAPIToken issues a personal API token (prefix "tpa_") for the acting
// user, valid for ttl (0 means Config.APITokenTTL, at most APITokenMaxTTL).
func (s *Service) CreateAPIToken(ctx context.Context, name string, ttl time.Duration) (NewToken, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return NewToken{}, err
	}
	name, err = cleanText("name", name, MaxTokenNameLen)
	if err != nil {
		return NewToken{}, err
	}
	if name == "" {
		return NewToken{}, errcode.Invalid("name", "is required")
	}
	switch {
	case ttl == 0:
		ttl = s.cfg.APITokenTTL
	case ttl < time.Minute || ttl > s.cfg.APITokenMaxTTL:
		return NewToken{}, errcode.Invalid("ttl", fmt.Sprintf("must be between 1 minute and %s", s.cfg.APITokenMaxTTL))
	}
	var tok NewToken
	err = s.store.InTx(ctx, func(tx Tx) error {
		u, err := tx.UserByIDForUpdate(ctx, a.UserID)
		if err != nil {
			return err
		}
		if err := s.mayLogIn(u); err != nil {
			return err
		}
		n, err := tx.CountLiveAPITokens(ctx, u.ID, s.now())
		if err != nil {
			return err
		}
		if n >= s.cfg.MaxAPITokensPerUser {
			return errcode.New(errcode.Conflict, fmt.Sprintf("at most %d API tokens may be live", s.cfg.MaxAPITokensPerUser))
		}
		tok, err = s.issueToken(ctx, tx, u.ID, TokenAPI, name, ttl)
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, a, "token.create", UserKey(u.ID),
			map[string]any{"token_id": tok.ID, "name": name, "expires_at": tok.ExpiresAt})
	})
	if err != nil {
		return NewToken{}, fmt.Errorf("create api token: %w", err)
	}
	return tok, nil
}

// APITokens lists the acting user's API tokens, oldest first.
func (s *Service) APITokens(ctx context.Context, page PageArgs) (Connection[APIToken], error) {
	a, err := requireUser(ctx)
	if err != nil {
		return Connection[APIToken]{}, err
	}
	return listPage(page, "list api tokens", func(q PageQuery) ([]APIToken, error) {
		return s.store.APITokens(ctx, a.UserID, q)
	}, func(t APIToken) int64 { return t.ID })
}

// RevokeAPIToken revokes one of the acting user's live API tokens; another
// user's token, or one already revoked or expired, is NOT_FOUND.
func (s *Service) RevokeAPIToken(ctx context.Context, id int64) error {
	a, err := requireUser(ctx)
	if err != nil {
		return err
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		if err := tx.RevokeToken(ctx, a.UserID, id, TokenAPI, s.now()); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, "token.revoke", UserKey(a.UserID), map[string]any{"token_id": id})
	})
	if err != nil {
		return fmt.Errorf("revoke api token: %w", err)
	}
	return nil
}

// Authenticate resolves a bearer secret to its Principal in one indexed
// query. Unknown, revoked and expired tokens and tokens of disabled users
// are UNAUTHENTICATED. It records the token's last use at most once per
// Config.LastUsedInterval.
func (s *Service) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	var kind TokenKind
	switch {
	case wellFormedSecret(bearer, SessionTokenPrefix):
		kind = TokenSession
	case wellFormedSecret(bearer, APITokenPrefix):
		kind = TokenAPI
	default:
		return Principal{}, errBadToken
	}
	now := s.now()
	key := tokenKey(sha256.Sum256([]byte(bearer)))
	e, ok := s.tokens.get(key, now)
	if !ok {
		gen, _ := s.tokens.generation()
		m, err := s.store.TokenByHash(ctx, key[:], now)
		if errors.Is(err, ErrNotFound) {
			return Principal{}, errBadToken
		} else if err != nil {
			return Principal{}, fmt.Errorf("authenticate: %w", err)
		}
		e = s.tokens.put(gen, key, m, now)
	}
	m := &e.m
	if m.TokenKind != kind {
		return Principal{}, errBadToken
	}
	if m.Status == UserPending && s.cfg.RequireVerifiedEmail {
		return Principal{}, errNotVerified
	}
	s.touch(ctx, e, now)
	return m.Principal, nil
}

// touch records a token's use when its last-used time is LastUsedInterval
// old: one writer among the requests that find it so.
func (s *Service) touch(ctx context.Context, e *cachedToken, now time.Time) {
	last := e.lastUsed.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < s.cfg.LastUsedInterval {
		return
	}
	if !e.lastUsed.CompareAndSwap(last, now.UnixNano()) {
		return // another request records it
	}
	if err := s.store.TouchToken(ctx, e.m.TokenID, now, now.Add(-s.cfg.LastUsedInterval)); err != nil {
		s.log.WarnContext(ctx, "recording token use", "token_id", e.m.TokenID, "err", err)
	}
}

// Me returns the acting user.
func (s *Service) Me(ctx context.Context) (User, error) {
	a, err := requireUser(ctx)
	if err != nil {
		return User{}, err
	}
	u, err := s.store.UserByID(ctx, a.UserID)
	if err != nil {
		return User{}, fmt.Errorf("me: %w", err)
	}
	return u, nil
}

// DisableUser disables a user and revokes all their tokens at once; only
// platform admins and the platform itself may, and not on themselves.
// Writes an outbox row so Kubernetes access goes too.
func (s *Service) DisableUser(ctx context.Context, userID int64) error {
	return s.DisableUserWithReason(ctx, userID, "")
}

// DisableUserWithReason is DisableUser with a reason for the audit log,
// such as a platform admin's.
func (s *Service) DisableUserWithReason(ctx context.Context, userID int64, reason string) error {
	a, err := requirePrivileged(ctx)
	if err != nil {
		return err
	}
	if reason, err = cleanText("reason", reason, maxReasonLen); err != nil {
		return err
	}
	if userID == a.UserID {
		return errcode.Invalid("userId", "you cannot disable yourself")
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		u, err := tx.UserByIDForUpdate(ctx, userID)
		if err != nil {
			return err
		}
		if u.Status == UserDisabled {
			return nil
		}
		now := s.now()
		if _, err := tx.SetUserStatus(ctx, u.ID, UserDisabled, u.EmailVerifiedAt, &now, now); err != nil {
			return err
		}
		revoked, err := tx.RevokeUserTokens(ctx, u.ID, now)
		if err != nil {
			return err
		}
		detail := map[string]any{"tokens_revoked": revoked}
		if reason != "" {
			detail["reason"] = reason
		}
		if err := s.audit(ctx, tx, a, "user.disable", UserKey(u.ID), detail); err != nil {
			return err
		}
		return s.outbox(ctx, tx, "user.disable", UserKey(u.ID), map[string]any{"user_id": u.ID})
	})
	if err != nil {
		return fmt.Errorf("disable user: %w", err)
	}
	return nil
}

// EnableUser re-enables a disabled user (active, or pending when the email
// was never verified). Only platform admins and the platform itself may.
func (s *Service) EnableUser(ctx context.Context, userID int64) error {
	a, err := requirePrivileged(ctx)
	if err != nil {
		return err
	}
	err = s.store.InTx(ctx, func(tx Tx) error {
		u, err := tx.UserByIDForUpdate(ctx, userID)
		if err != nil {
			return err
		}
		if u.Status != UserDisabled {
			return nil
		}
		now := s.now()
		status := UserActive
		if u.EmailVerifiedAt == nil && u.HasPassword {
			status = UserPending
		}
		if _, err := tx.SetUserStatus(ctx, u.ID, status, u.EmailVerifiedAt, nil, now); err != nil {
			return err
		}
		if _, err := tx.RevokeUserTokens(ctx, u.ID, now); err != nil {
			return err
		}
		if err := s.audit(ctx, tx, a, "user.enable", UserKey(u.ID), map[string]any{"status": status}); err != nil {
			return err
		}
		return s.outbox(ctx, tx, "user.enable", UserKey(u.ID), map[string]any{"user_id": u.ID})
	})
	if err != nil {
		return fmt.Errorf("enable user: %w", err)
	}
	return nil
}

// GrantPlatformAdmin makes the user with email a platform admin; for the
// seed and the CLI (system actor) or an existing platform admin.
func (s *Service) GrantPlatformAdmin(ctx context.Context, email string) (User, error) {
	return s.setPlatformAdmin(ctx, email, true)
}

// RevokePlatformAdmin takes the platform admin role from the user with
// email.
func (s *Service) RevokePlatformAdmin(ctx context.Context, email string) (User, error) {
	return s.setPlatformAdmin(ctx, email, false)
}

func (s *Service) setPlatformAdmin(ctx context.Context, email string, admin bool) (User, error) {
	a, err := requirePrivileged(ctx)
	if err != nil {
		return User{}, err
	}
	email, err = NormalizeEmail(email)
	if err != nil {
		return User{}, err
	}
	action := "user.platform_admin.revoke"
	if admin {
		action = "user.platform_admin.grant"
	}
	var u User
	err = s.store.InTx(ctx, func(tx Tx) error {
		cur, _, err := tx.UserByEmailForUpdate(ctx, email)
		if err != nil {
			return err
		}
		if cur.PlatformAdmin == admin {
			u = cur
			return nil
		}
		if u, err = tx.SetPlatformAdmin(ctx, cur.ID, admin, s.now()); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, action, UserKey(u.ID), nil)
	})
	if err != nil {
		return User{}, fmt.Errorf("%s: %w", strings.ReplaceAll(action, ".", " "), err)
	}
	return u, nil
}
