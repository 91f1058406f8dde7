package tenancy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTokenCacheRace(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newTokenCache(10*time.Second, 2)
	m := AuthTokenMatch{Principal: Principal{UserID: 7, ExpiresAt: now.Add(time.Hour)}}
	k1, k2, k3 := tokenKey{1}, tokenKey{2}, tokenKey{3}

	// Nothing is remembered before the feed listens.
	gen, live := c.generation()
	require.False(t, live)
	c.put(gen, k1, m, now)
	_, ok := c.get(k1, now)
	require.False(t, ok)

	c.Listening()
	// An answer read before a change was forgotten is not remembered
	// after it: it may predate the change.
	gen, live = c.generation()
	require.True(t, live)
	c.ForgetUser(99)
	c.put(gen, k1, m, now)
	_, ok = c.get(k1, now)
	require.False(t, ok)

	gen, _ = c.generation()
	c.put(gen, k1, m, now)
	e, ok := c.get(k1, now)
	require.True(t, ok)
	require.Equal(t, int64(7), e.m.UserID)
	// Bounded: a third token finds no room.
	c.put(gen, k2, m, now)
	c.put(gen, k3, m, now)
	require.Equal(t, 2, c.Len())

	// Entries end with the TTL, and sweeping drops them.
	_, ok = c.get(k1, now.Add(10*time.Second))
	require.False(t, ok)
	c.Sweep(now.Add(10 * time.Second))
	require.Zero(t, c.Len())
	require.Empty(t, c.byUser)

	// Forgetting a user drops all of theirs, and only theirs.
	gen, _ = c.generation()
	c.put(gen, k1, m, now)
	other := m
	other.UserID = 8
	c.put(gen, k2, other, now)
	c.ForgetUser(7)
	_, ok = c.get(k1, now)
	require.False(t, ok)
	_, ok = c.get(k2, now)
	require.True(t, ok)

	// A lost feed stops it serving and empties it.
	c.Lost()
	require.False(t, c.Serving())
	require.Zero(t, c.Len())
}
