package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	tmail "github.com/tenantplane/tenantplane/tenancy/mail"
)

// Mailer sends each message over its own SMTP connection. It is safe for
// concurrent use.
type Mailer struct {
	cfg  Config
	from *mail.Address
	log  *slog.Logger
	now  func() time.Time
}

var _ tmail.Mailer = (*Mailer)(nil)

// New validates cfg and returns a Mailer. It does not connect: a server that
// is down shows up as an error of Send, which the caller retries. now dates
// the messages.
func New(cfg Config, log *slog.Logger, now func() time.Time) (*Mailer, error) {
	if log == nil {
		return nil, errors.New("smtp mailer: logger is required")
	}
	if now == nil {
		return nil, errors.New("smtp mailer: clock is required")
	}
	cfg, from, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	return &Mailer{cfg: cfg, from: from, log: log, now: now}, nil
}

// Send delivers m, one connection per message. A nil error means the server
// accepted the message. An error means it did not, and the caller may retry
// unless [Permanent] reports the message can never be accepted.
func (m *Mailer) Send(ctx context.Context, msg tmail.Message) error {
	data, rcpt, err := compose(msg, m.from, m.cfg.MessageIDDomain, m.now())
	if err != nil {
		return fmt.Errorf("composing message %d: %w", msg.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.SendTimeout)
	defer cancel()
	if err := m.deliver(ctx, rcpt, data); err != nil {
		return fmt.Errorf("sending message %d via %s: %w", msg.ID, m.addr(), err)
	}
	m.log.InfoContext(ctx, "mail sent", "message_id", msg.ID, "server", m.addr())
	return nil
}

func (m *Mailer) addr() string { return net.JoinHostPort(m.cfg.Host, strconv.Itoa(m.cfg.Port)) }

// deliver runs one SMTP transaction: connect, EHLO, STARTTLS, AUTH, MAIL,
// RCPT, DATA, QUIT.
func (m *Mailer) deliver(ctx context.Context, rcpt string, data []byte) (err error) {
	conn, err := m.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The whole conversation ends at ctx's deadline, or at once when ctx is
	// cancelled: blocked reads and writes then fail.
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return fmt.Errorf("setting deadline: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() {
		switch {
		case err == nil:
		case ctx.Err() != nil:
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The connection's deadline is ctx's, which may fire a moment
			// before ctx itself reports it.
			err = fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
		}
	}()

	c, err := smtp.NewClient(conn, m.cfg.Host)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(m.cfg.HeloName); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if m.cfg.TLS == StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("server does not offer STARTTLS")
		}
		if err := c.StartTLS(m.cfg.tlsConfig()); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	}
	if m.cfg.Username != "" {
		if err := m.auth(c); err != nil {
			return err
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		return fmt.Errorf("rcpt to: %w", rejected(err))
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", rejected(err))
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("writing data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of data: %w", rejected(err))
	}
	// The message is accepted: a failing QUIT must not make the caller send
	// it again.
	if err := c.Quit(); err != nil {
		m.log.DebugContext(ctx, "smtp quit after delivery", "err", err)
	}
	return nil
}

func (m *Mailer) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: m.cfg.DialTimeout}
	if m.cfg.TLS == ImplicitTLS {
		td := &tls.Dialer{NetDialer: d, Config: m.cfg.tlsConfig()}
		hctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
		defer cancel()
		conn, err := td.DialContext(hctx, "tcp", m.addr())
		if err != nil {
			return nil, fmt.Errorf("connecting with TLS: %w", err)
		}
		return conn, nil
	}
	conn, err := d.DialContext(ctx, "tcp", m.addr())
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	return conn, nil
}

// auth authenticates with PLAIN, or LOGIN when that is all the server
// offers. Both refuse to run without TLS except on loopback.
func (m *Mailer) auth(c *smtp.Client) error {
	ok, params := c.Extension("AUTH")
	if !ok {
		return errors.New("server does not offer AUTH")
	}
	mechs := strings.Fields(strings.ToUpper(params))
	var a smtp.Auth
	switch {
	case slices.Contains(mechs, "PLAIN"):
		a = smtp.PlainAuth("", m.cfg.Username, m.cfg.Password, m.cfg.Host)
	case slices.Contains(mechs, "LOGIN"):
		a = &loginAuth{username: m.cfg.Username, password: m.cfg.Password, host: m.cfg.Host}
	default:
		return fmt.Errorf("server offers no supported AUTH mechanism (offers %s)", params)
	}
	if err := c.Auth(a); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}

// loginAuth is the LOGIN SASL mechanism (draft-murchison-sasl-login), which
// some submission servers offer instead of PLAIN.
type loginAuth struct {
	username, password, host string
	step                     int
}

// Start begins LOGIN, refusing an unencrypted connection to another host as
// smtp.PlainAuth does.
func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !isLoopback(server.Name) {
		return "", nil, errors.New("unencrypted connection")
	}
	if server.Name != a.host {
		return "", nil, errors.New("wrong host name")
	}
	a.step = 0
	return "LOGIN", nil, nil
}

// Next answers the server's two prompts, user name then password.
func (a *loginAuth) Next(_ []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.step++
	switch a.step {
	case 1:
		return []byte(a.username), nil
	case 2:
		return []byte(a.password), nil
	default:
		return nil, errors.New("unexpected LOGIN challenge")
	}
}

// permanentError marks a server's 5xx refusal of this message (its
// recipient or its content), which retrying cannot change.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// rejected marks err permanent when it is a 5xx reply.
func rejected(err error) error {
	if te, ok := errors.AsType[*textproto.Error](err); ok && te.Code >= 500 && te.Code < 600 {
		return &permanentError{err: err}
	}
	return err
}

// Permanent reports whether err from Send means this message will never be
// accepted: it is malformed, or the server refused its recipient or content
// with a 5xx reply. Failures to connect, authenticate or of the sender
// address are about the server or the configuration, and are not permanent.
func Permanent(err error) bool {
	if _, ok := errors.AsType[*permanentError](err); ok {
		return true
	}
	_, ok := errors.AsType[*invalidMessageError](err)
	return ok
}
