package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe to write from one goroutine and read
// from another.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// TestDevServesThenLeavesNothingBehind is `make run` in one test: dev starts
// its own Postgres, Kubernetes and stripe-mock, serves until cancelled (what
// Ctrl-C does), then stops every peer and removes their folders.
func TestDevServesThenLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	cfg := devConfig()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.LogLevel = "warn"
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDev(ctx, out, io.Discard, cfg) }()

	field := func(name string) string {
		m := regexp.MustCompile(name + ` +(\S+)`).FindStringSubmatch(out.String())
		if m == nil {
			return ""
		}
		return m[1]
	}
	deadline := time.After(3 * time.Minute)
	for field("readiness") == "" {
		select {
		case err := <-done:
			t.Fatalf("dev stopped before serving: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("dev did not serve within 3 minutes:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(field("readiness"))
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond)

	// A seeded tenant logs in through GraphQL and sees its own namespace.
	m := regexp.MustCompile(`bob@acme\.localhost +password (\S+)`).FindStringSubmatch(out.String())
	require.NotNil(t, m, out.String())
	gql := newGQLClient(t, field("GraphQL")).do
	login := gql("", `mutation($e: String!, $p: String!) { logIn(input: {email: $e, password: $p}) { token } }`,
		map[string]any{"e": "bob@acme.localhost", "p": m[1]})
	token := login["logIn"].(map[string]any)["token"].(string)
	me := gql(token, `{ me { email namespaces { edges { node { name } } } } }`, nil)["me"].(map[string]any)
	require.Equal(t, "bob@acme.localhost", me["email"])
	require.Len(t, me["namespaces"].(map[string]any)["edges"], 2, "his personal namespace and Alice's")

	dbURL, err := url.Parse(field("database"))
	require.NoError(t, err)
	stripeURL, err := url.Parse(field("stripe api"))
	require.NoError(t, err)
	kubeDir := filepath.Dir(field("kubeconfig"))
	apiHost := regexp.MustCompile(`http://(\S+)/graphql`).FindStringSubmatch(out.String())[1]

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("dev did not stop within a minute of Ctrl-C")
	}
	for _, addr := range []string{dbURL.Host, stripeURL.Host, apiHost} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		require.Error(t, err, "%s still accepts connections after dev stopped", addr)
	}
	_, err = os.Stat(kubeDir)
	require.ErrorIs(t, err, os.ErrNotExist, "the control plane's folder is removed")
	require.Contains(t, out.String(), "==> stopped")
}
