package mail

import (
	"context"
	"log/slog"
)

// LogMailer writes each message to a logger instead of sending it, for
// `make run` and development. It logs the whole text, links with secret
// tokens included, so it must never be used in production.
type LogMailer struct {
	Log *slog.Logger
}

// Send logs m at info level and always succeeds.
func (l LogMailer) Send(ctx context.Context, m Message) error {
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	log.InfoContext(ctx, "mail", "id", m.ID, "to", m.To, "subject", m.Subject, "text", m.Text)
	return nil
}
