package tenancy

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// TokenCache remembers the tokens a replica authenticated a moment ago, so
// that most requests authenticate without a statement. It serves only
// while a change feed keeps it current (tenancystore.TokenFeed): the feed
// calls Listening once it listens, ForgetUser for every change to a user's
// tokens, status, email or platform role (migration 015's triggers, on
// every replica), and Lost when its connection drops, which empties the
// cache and sends every request to the database until the feed listens
// again. The replica that makes such a change forgets the user as soon as
// it commits, so a revoked token fails at once there and within the
// notification's delay elsewhere. An entry lives at most TTL, whatever the
// feed says, and never past its token's expiry.
type TokenCache struct {
	ttl time.Duration
	max int

	mu     sync.RWMutex
	live   bool
	gen    uint64 // bumped by every forgetting; see generation
	byHash map[tokenKey]*cachedToken
	byUser map[int64][]tokenKey
}

type tokenKey [sha256.Size]byte

type cachedToken struct {
	m     AuthTokenMatch
	until time.Time
	// lastUsed is the last-used time last written (Unix nanoseconds, 0
	// for never), so that a cached token's use is still recorded every
	// LastUsedInterval.
	lastUsed atomic.Int64
}

// newTokenCache returns an empty cache that serves nothing until
// Listening; a ttl of zero returns nil, which never serves.
func newTokenCache(ttl time.Duration, size int) *TokenCache {
	if ttl <= 0 {
		return nil
	}
	return &TokenCache{ttl: ttl, max: size, byHash: map[tokenKey]*cachedToken{}, byUser: map[int64][]tokenKey{}}
}

// Listening empties the cache and lets it serve: the feed listens, and
// whatever changed before it did is forgotten with everything else.
func (c *TokenCache) Listening() { c.reset(true) }

// Lost empties the cache and stops it serving until Listening: changes
// may go unheard.
func (c *TokenCache) Lost() { c.reset(false) }

// ForgetAll empties the cache, e.g. for a notification that cannot be
// read; whether it serves does not change.
func (c *TokenCache) ForgetAll() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetAll()
}

func (c *TokenCache) reset(live bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.forgetAll()
}

func (c *TokenCache) forgetAll() {
	c.gen++
	clear(c.byHash)
	clear(c.byUser)
}

// ForgetUser drops every token of a user.
func (c *TokenCache) ForgetUser(userID int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, k := range c.byUser[userID] {
		delete(c.byHash, k)
	}
	delete(c.byUser, userID)
}

// Serving reports whether the cache answers: its feed listens.
func (c *TokenCache) Serving() bool {
	_, live := c.generation()
	return live
}

// Len is the number of tokens remembered.
func (c *TokenCache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byHash)
}

// get returns the entry of a token still good at now.
func (c *TokenCache) get(k tokenKey, now time.Time) (*cachedToken, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.byHash[k]
	live := c.live
	c.mu.RUnlock()
	if !ok || !live || !now.Before(e.until) {
		return nil, false
	}
	return e, true
}

// generation returns what put needs to know that nothing was forgotten
// since, and whether the cache serves at all. Read it before the
// statement whose answer is put: an answer read before a change commits
// and put after the change was forgotten would otherwise outlive it.
func (c *TokenCache) generation() (uint64, bool) {
	if c == nil {
		return 0, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen, c.live
}

// put returns the entry of a token read from the database, and
// remembers it when the cache serves, nothing was forgotten since gen, and
// there is room.
func (c *TokenCache) put(gen uint64, k tokenKey, m AuthTokenMatch, now time.Time) *cachedToken {
	e := &cachedToken{m: m, until: m.ExpiresAt}
	if m.LastUsedAt != nil {
		e.lastUsed.Store(m.LastUsedAt.UnixNano())
	}
	if c == nil {
		return e
	}
	if u := now.Add(c.ttl); u.Before(e.until) {
		e.until = u
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || c.gen != gen || len(c.byHash) >= c.max {
		return e
	}
	if _, ok := c.byHash[k]; !ok {
		c.byUser[m.UserID] = append(c.byUser[m.UserID], k)
	}
	c.byHash[k] = e
	return e
}

// Sweep drops the entries that can no longer serve at now, so that tokens
// used once do not hold their room; the server runs it every minute.
func (c *TokenCache) Sweep(now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.byHash {
		if now.Before(e.until) {
			continue
		}
		delete(c.byHash, k)
		keys := c.byUser[e.m.UserID]
		for i, uk := range keys {
			if uk == k {
				keys = append(keys[:i], keys[i+1:]...)
				break
			}
		}
		if len(keys) == 0 {
			delete(c.byUser, e.m.UserID)
		} else {
			c.byUser[e.m.UserID] = keys
		}
	}
}

// forgetful is the service's store: what it commits that changes a user's
// tokens, status or platform role makes the token cache forget that user
// as soon as it is committed.
type forgetful struct {
	Store
	tokens *TokenCache
}

// InTx forgets the users whose tokens fn touched once the transaction
// ends (whether it committed or not: forgetting costs one statement).
func (f forgetful) InTx(ctx context.Context, fn func(tx Tx) error) error {
	r := &recordingTx{}
	err := f.Store.InTx(ctx, func(tx Tx) error {
		r.Tx = tx
		return fn(r)
	})
	for _, id := range r.users {
		f.tokens.ForgetUser(id)
	}
	return err
}

// The changes outside a transaction run in one, so that InTx records them.

func (f forgetful) RevokeToken(ctx context.Context, userID, id int64, kind TokenKind, now time.Time) error {
	return f.InTx(ctx, func(tx Tx) error { return tx.RevokeToken(ctx, userID, id, kind, now) })
}

func (f forgetful) RevokeUserTokens(ctx context.Context, userID int64, now time.Time) (n int64, err error) {
	err = f.InTx(ctx, func(tx Tx) error {
		n, err = tx.RevokeUserTokens(ctx, userID, now)
		return err
	})
	return n, err
}

func (f forgetful) SetUserStatus(ctx context.Context, id int64, status UserStatus, verifiedAt, disabledAt *time.Time, now time.Time) (u User, err error) {
	err = f.InTx(ctx, func(tx Tx) error {
		u, err = tx.SetUserStatus(ctx, id, status, verifiedAt, disabledAt, now)
		return err
	})
	return u, err
}

func (f forgetful) SetPlatformAdmin(ctx context.Context, id int64, admin bool, now time.Time) (u User, err error) {
	err = f.InTx(ctx, func(tx Tx) error {
		u, err = tx.SetPlatformAdmin(ctx, id, admin, now)
		return err
	})
	return u, err
}

// recordingTx notes the users whose tokens a transaction touches.
type recordingTx struct {
	Tx
	users []int64
}

func (r *recordingTx) RevokeToken(ctx context.Context, userID, id int64, kind TokenKind, now time.Time) error {
	r.users = append(r.users, userID)
	return r.Tx.RevokeToken(ctx, userID, id, kind, now)
}

func (r *recordingTx) RevokeUserTokens(ctx context.Context, userID int64, now time.Time) (int64, error) {
	r.users = append(r.users, userID)
	return r.Tx.RevokeUserTokens(ctx, userID, now)
}

func (r *recordingTx) SetUserStatus(ctx context.Context, id int64, status UserStatus, verifiedAt, disabledAt *time.Time, now time.Time) (User, error) {
	r.users = append(r.users, id)
	return r.Tx.SetUserStatus(ctx, id, status, verifiedAt, disabledAt, now)
}

func (r *recordingTx) SetPlatformAdmin(ctx context.Context, id int64, admin bool, now time.Time) (User, error) {
	r.users = append(r.users, id)
	return r.Tx.SetPlatformAdmin(ctx, id, admin, now)
}
