package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/tenancy"
	"github.com/tenantplane/tenantplane/tenancy/mail"
)

// recordingMailer records deliveries and refuses mail to addresses in fail.
type recordingMailer struct {
	mu   sync.Mutex
	sent map[int64]int // message id → deliveries
	msgs []mail.Message
	fail map[string]bool
}

func newRecordingMailer() *recordingMailer {
	return &recordingMailer{sent: map[int64]int{}, fail: map[string]bool{}}
}

func (m *recordingMailer) Send(_ context.Context, msg mail.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail[msg.To] {
		return errors.New("550 mailbox unavailable")
	}
	m.sent[msg.ID]++
	m.msgs = append(m.msgs, msg)
	return nil
}

func (m *recordingMailer) deliveries() map[int64]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int64]int{}
	for k, v := range m.sent {
		out[k] = v
	}
	return out
}

func senderConfig() tenancy.SenderConfig {
	return tenancy.SenderConfig{
		Batch: 10, Lease: 5 * time.Minute, PollInterval: 10 * time.Millisecond, MaxAttempts: 3,
		BackoffBase: time.Minute, BackoffMax: 10 * time.Minute, SendTimeout: time.Second,
	}
}

func TestSenderDeliversRetriesAndGivesUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, e := range []string{"s1@example.com", "s2@example.com", "bounce@example.com"} {
		_, err := b.svc.SignUp(anon(), e, password, "")
		require.NoError(t, err)
	}
	m := newRecordingMailer()
	m.fail["bounce@example.com"] = true
	s, err := tenancy.NewSender(b.store, m, senderConfig(), nil, b.clock.Now)
	require.NoError(t, err)
	ctx := context.Background()

	sent, failed, err := s.SendDue(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, sent)
	require.Equal(t, 1, failed)
	require.Len(t, m.msgs, 2)
	require.Equal(t, "Verify your email address", m.msgs[0].Subject)
	require.Contains(t, m.msgs[0].Text, "/verify-email?token=tpv_")
	require.NotZero(t, m.msgs[0].ID)
	require.Equal(t, 2, b.count(`SELECT count(*) FROM mail_outbox WHERE sent_at IS NOT NULL AND body_text = '' AND attempts = 1`),
		"sent mail is blanked: it held a secret link")

	bounce := func() (attempts int, next time.Time, lastErr string, failedAt *time.Time) {
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT attempts, next_attempt_at, last_error, failed_at
			FROM mail_outbox WHERE recipient = 'bounce@example.com'`).Scan(&attempts, &next, &lastErr, &failedAt))
		return
	}
	attempts, next, lastErr, failedAt := bounce()
	require.Equal(t, 1, attempts)
	require.Equal(t, b.clock.Now().Add(time.Minute), next.UTC())
	require.Equal(t, "550 mailbox unavailable", lastErr)
	require.Nil(t, failedAt)

	sent, failed, err = s.SendDue(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, sent+failed, "nothing is due before the backoff ends")

	b.clock.Advance(time.Minute)
	_, failed, err = s.SendDue(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, failed)
	attempts, next, _, _ = bounce()
	require.Equal(t, 2, attempts)
	require.Equal(t, b.clock.Now().Add(2*time.Minute), next.UTC())

	b.clock.Advance(2 * time.Minute)
	_, failed, err = s.SendDue(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, failed)
	attempts, _, _, failedAt = bounce()
	require.Equal(t, 3, attempts)
	require.NotNil(t, failedAt, "given up after MaxAttempts")

	b.clock.Advance(24 * time.Hour)
	sent, failed, err = s.SendDue(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, sent+failed)
}

func TestSendersOnManyReplicasDeliverEachMessageOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const n = 60
	for i := range n {
		require.NoError(t, b.store.EnqueueMail(ctx, tenancy.OutgoingMail{
			Kind: "test", To: fmt.Sprintf("r%d@example.com", i), Subject: "hi", Text: "hello", At: b.clock.Now(),
		}))
	}
	m := newRecordingMailer()
	var wg sync.WaitGroup
	for range 4 {
		s, err := tenancy.NewSender(b.store, m, senderConfig(), nil, b.clock.Now)
		require.NoError(t, err)
		wg.Go(func() {
			for {
				sent, failed, err := s.SendDue(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if sent+failed == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	d := m.deliveries()
	require.Len(t, d, n)
	for id, times := range d {
		require.Equal(t, 1, times, "message %d", id)
	}
}

func TestSenderRunStopsWithItsContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.svc.SignUp(anon(), "run@example.com", password, "")
	require.NoError(t, err)
	m := newRecordingMailer()
	s, err := tenancy.NewSender(b.store, m, senderConfig(), nil, b.clock.Now)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.Eventually(t, func() bool { return len(m.deliveries()) == 1 }, 10*time.Second, 10*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
