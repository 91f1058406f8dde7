package mail

import "context"

// Message is one outgoing mail, plain text with an optional HTML part.
type Message struct {
	// ID is the outbox row's id; a Mailer may use it as a Message-ID seed so
	// that a retried delivery is recognisable as the same message.
	ID      int64
	To      string
	Subject string
	Text    string
	HTML    string
}

// Mailer delivers messages. Send must be safe for concurrent use; an error
// means the message was not accepted and will be retried.
type Mailer interface {
	Send(ctx context.Context, m Message) error
}
