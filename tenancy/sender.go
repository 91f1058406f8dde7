package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tenantplane/tenantplane/tenancy/mail"
)

// SenderConfig tunes mail delivery from the outbox.
type SenderConfig struct {
	// Batch is how many messages one round claims (20).
	Batch int
	// Lease is how long a claimed message is kept from other senders
	// (5 minutes); a sender that dies leaves it due again after that.
	Lease time.Duration
	// PollInterval is the pause between rounds that found nothing (5s).
	PollInterval time.Duration
	// MaxAttempts is how many deliveries are tried before giving up (10).
	MaxAttempts int
	// BackoffBase and BackoffMax bound the pause after a failure: it
	// doubles from BackoffBase with each attempt, up to BackoffMax
	// (30s, 1h).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// SendTimeout bounds one delivery (30s).
	SendTimeout time.Duration
}

// DefaultSenderConfig returns the documented defaults.
func DefaultSenderConfig() SenderConfig {
	return SenderConfig{
		Batch: 20, Lease: 5 * time.Minute, PollInterval: 5 * time.Second, MaxAttempts: 10,
		BackoffBase: 30 * time.Second, BackoffMax: time.Hour, SendTimeout: 30 * time.Second,
	}
}

// Validate reports the first invalid setting.
func (c SenderConfig) Validate() error {
	switch {
	case c.Batch < 1 || c.Batch > 1000:
		return errors.New("sender Batch must be 1..1000")
	case c.MaxAttempts < 1:
		return errors.New("sender MaxAttempts must be positive")
	case c.PollInterval <= 0 || c.BackoffBase <= 0 || c.SendTimeout <= 0:
		return errors.New("sender PollInterval, BackoffBase and SendTimeout must be positive")
	case c.BackoffMax < c.BackoffBase:
		return errors.New("sender BackoffMax must be at least BackoffBase")
	case c.Lease <= c.SendTimeout:
		return errors.New("sender Lease must exceed SendTimeout")
	}
	return nil
}

// Sender delivers the mail outbox through a mail.Mailer. Any number of
// senders may run, on any replicas: each message is claimed by one.
type Sender struct {
	store  Store
	mailer mail.Mailer
	cfg    SenderConfig
	log    *slog.Logger
	now    func() time.Time
}

// NewSender returns a Sender. log and clock default as in New.
func NewSender(store Store, mailer mail.Mailer, cfg SenderConfig, log *slog.Logger, clock func() time.Time) (*Sender, error) {
	if store == nil || mailer == nil {
		return nil, errors.New("mail sender: nil store or mailer")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mail sender: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	return &Sender{store: store, mailer: mailer, cfg: cfg, log: log, now: func() time.Time { return clock().UTC() }}, nil
}

// Backoff is the pause after the given failed attempt (1 for the first).
func (c SenderConfig) Backoff(attempt int) time.Duration {
	d := c.BackoffBase
	for i := 1; i < attempt && d < c.BackoffMax; i++ {
		d *= 2
	}
	return min(d, c.BackoffMax)
}

// SendDue claims the messages that are due and tries to deliver each once.
// It returns how many were sent and how many failed.
func (s *Sender) SendDue(ctx context.Context) (sent, failed int, err error) {
	claimed, err := s.store.ClaimMail(ctx, s.now(), s.cfg.Lease, s.cfg.Batch)
	if err != nil {
		return 0, 0, fmt.Errorf("sending mail: %w", err)
	}
	for _, m := range claimed {
		sendCtx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
		sendErr := s.mailer.Send(sendCtx, m.Message)
		cancel()
		now := s.now()
		if sendErr == nil {
			if err := s.store.MarkMailSent(ctx, m.ID, now); err != nil {
				return sent, failed, fmt.Errorf("sending mail %d: %w", m.ID, err)
			}
			sent++
			continue
		}
		failed++
		final := m.Attempts >= s.cfg.MaxAttempts
		next := now.Add(s.cfg.Backoff(m.Attempts))
		s.log.WarnContext(ctx, "mail delivery failed", "mail_id", m.ID, "attempt", m.Attempts, "final", final, "err", sendErr)
		msg := sendErr.Error()
		if len(msg) > 1000 {
			msg = msg[:1000]
		}
		if err := s.store.MarkMailFailed(ctx, m.ID, msg, next, final, now); err != nil {
			return sent, failed, fmt.Errorf("sending mail %d: %w", m.ID, err)
		}
	}
	return sent, failed, nil
}

// Run sends due mail until ctx ends, pausing PollInterval when a round
// finds nothing to do. It returns nil when ctx is cancelled.
func (s *Sender) Run(ctx context.Context) error {
	for {
		sent, failed, err := s.SendDue(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "mail sender round", "err", err)
		}
		if err == nil && sent+failed == s.cfg.Batch {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.PollInterval):
		}
	}
}
