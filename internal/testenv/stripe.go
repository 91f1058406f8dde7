package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"
)

// StripeMock is a running stripe-mock, a fake of the Stripe API that
// answers every documented endpoint with fixtures and keeps no state.
type StripeMock struct {
	// URL is the plain HTTP base URL, e.g. http://127.0.0.1:41234; point a
	// Stripe client's API backend here.
	URL string
	// HTTPSURL is the HTTPS base URL. Its certificate is stripe-mock's own
	// self-signed one, so a client must skip verification.
	HTTPSURL string

	dir  string
	proc *process
}

// stripeListening matches the lines in which stripe-mock says where it
// listens, e.g. "Listening for HTTPS at address: 127.0.0.1:43211".
var stripeListening = regexp.MustCompile(`Listening for (HTTPS?) at address: (\S+)`)

// StartStripeMock starts stripe-mock on two free loopback ports, one for
// HTTP and one for HTTPS, and returns once it listens on both.
func StartStripeMock(ctx context.Context) (*StripeMock, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	if err := checkInstalled("stripe-mock"); err != nil {
		return nil, err
	}
	dir, err := makePeerDir("tenantplane-stripe-")
	if err != nil {
		return nil, fmt.Errorf("start stripe-mock: %w", err)
	}
	s := &StripeMock{dir: dir}
	out := &lockedBuffer{}
	s.proc, err = startProcess("stripe-mock", ToolPath("stripe-mock", StripeMockVersion),
		[]string{"-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0"}, dir, nil, out)
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("start stripe-mock: %w", err)
	}
	err = poll(ctx, "stripe-mock to listen", 10*time.Millisecond, []*process{s.proc}, func(context.Context) (bool, error) {
		for _, m := range stripeListening.FindAllStringSubmatch(out.String(), -1) {
			switch m[1] {
			case "HTTP":
				s.URL = "http://" + m[2]
			case "HTTPS":
				s.HTTPSURL = "https://" + m[2]
			}
		}
		return s.URL != "" && s.HTTPSURL != "", nil
	})
	if err != nil {
		err = fmt.Errorf("start stripe-mock: %w", err)
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Stop ends stripe-mock and removes its folder. It may be called more than
// once.
func (s *StripeMock) Stop() {
	if s.proc != nil {
		s.proc.stop(2 * time.Second)
	}
	_ = os.RemoveAll(s.dir)
}

// lockedBuffer keeps the start of what a process writes, while we read it.
// Past the first 64 KiB it drops the rest (the log file has it all), so a
// long-running process does not grow it forever.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var sharedStripe struct {
	once sync.Once
	mock *StripeMock
	err  error
}

// Stripe returns the stripe-mock shared by the tests of this test binary,
// starting it on first use; Main stops it. stripe-mock keeps no state, so
// tests cannot disturb each other through it. If it cannot be started, t
// fails with what to install.
func Stripe(t testing.TB) *StripeMock {
	t.Helper()
	sharedStripe.once.Do(func() {
		sharedStripe.mock, sharedStripe.err = StartStripeMock(context.Background())
		if sharedStripe.err == nil {
			onStop(sharedStripe.mock.Stop)
		}
	})
	if sharedStripe.err != nil {
		peerFailed(t, "stripe-mock", "tools", sharedStripe.err)
	}
	return sharedStripe.mock
}
