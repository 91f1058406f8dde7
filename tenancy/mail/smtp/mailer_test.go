package smtp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/tenantplane/tenantplane/internal/testenv"
	tmail "github.com/tenantplane/tenantplane/tenancy/mail"
	"github.com/tenantplane/tenantplane/tenancy/mail/smtp"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var sentAt = time.Date(2026, 3, 1, 12, 30, 5, 0, time.UTC)

func clock() time.Time { return sentAt }

// received is one message as the server saw it.
type received struct {
	helo string
	from string
	to   []string
	data []byte
	user string
	tls  bool
}

type serverOptions struct {
	// tls makes the server offer STARTTLS, or speak TLS from the start when
	// implicit is set.
	tls      *tls.Config
	implicit bool
	// users, when set, makes the server offer AUTH (after TLS, or on plain
	// text when insecureAuth) with mechs (default PLAIN) and require it.
	users        map[string]string
	mechs        []string
	insecureAuth bool
	// rejectRcpt is refused with 550.
	rejectRcpt string
}

// server is a real SMTP server (github.com/emersion/go-smtp) on loopback
// that keeps what it receives.
type server struct {
	opts serverOptions
	host string
	port int

	mu           sync.Mutex
	msgs         []received
	sessions     int
	authAttempts int
}

func startServer(t *testing.T, opts serverOptions) *server {
	t.Helper()
	s := &server{opts: opts}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		return &session{srv: s, conn: c}, nil
	}))
	srv.Domain = "mx.test"
	srv.AllowInsecureAuth = opts.insecureAuth
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if opts.tls != nil {
		if opts.implicit {
			l = tls.NewListener(l, opts.tls)
		} else {
			srv.TLSConfig = opts.tls
		}
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	host, port, err := net.SplitHostPort(l.Addr().String())
	require.NoError(t, err)
	s.host = host
	s.port, err = strconv.Atoi(port)
	require.NoError(t, err)
	return s
}

func (s *server) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

type session struct {
	srv  *server
	conn *gosmtp.Conn
	user string
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string {
	if s.srv.opts.users == nil {
		return nil
	}
	if len(s.srv.opts.mechs) > 0 {
		return s.srv.opts.mechs
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	s.srv.mu.Lock()
	s.srv.authAttempts++
	s.srv.mu.Unlock()
	check := func(user, pass string) error {
		if want, ok := s.srv.opts.users[user]; !ok || want != pass {
			return gosmtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, gosmtp.ErrAuthUnknownMechanism
}

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.srv.opts.users != nil && s.user == "" {
		return gosmtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if to == s.srv.opts.rejectRcpt {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.msgs = append(s.srv.msgs, received{
		helo: s.conn.Hostname(), from: s.from, to: s.to, data: b, user: s.user, tls: isTLS,
	})
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

// loginServer is the server side of the LOGIN SASL mechanism, which
// go-sasl does not provide.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

// selfSigned returns a server certificate for 127.0.0.1 and localhost and
// a pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mx.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

func newMailer(t *testing.T, s *server, change func(c *smtp.Config)) *smtp.Mailer {
	t.Helper()
	cfg := smtp.Config{
		Host:     s.host,
		Port:     s.port,
		From:     "Tenantplane <no-reply@tenantplane.example>",
		TLS:      smtp.NoTLS,
		HeloName: "cp.tenantplane.example",
	}
	if change != nil {
		change(&cfg)
	}
	m, err := smtp.New(cfg, slog.New(slog.DiscardHandler), clock)
	require.NoError(t, err)
	return m
}

// parsed is a received message read back with net/mail and mime.
type parsed struct {
	header mail.Header
	parts  []part // one for text/plain only, two for multipart/alternative
}

type part struct {
	contentType string
	body        string
}

func parse(t *testing.T, data []byte) parsed {
	t.Helper()
	for i, line := range strings.SplitAfter(string(data), "\r\n") {
		require.False(t, strings.ContainsAny(strings.TrimSuffix(line, "\r\n"), "\r\n"), "line %d has a bare CR or LF: %q", i, line)
		require.LessOrEqual(t, len(line), 998+2, "line %d is too long: %q", i, line)
		if strings.Contains(strings.TrimSpace(line), " ") {
			require.LessOrEqual(t, len(line), 78+2, "line %d could have been folded: %q", i, line)
		}
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(data)))
	require.NoError(t, err)
	p := parsed{header: msg.Header}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	if mt != "multipart/alternative" {
		require.Equal(t, "quoted-printable", msg.Header.Get("Content-Transfer-Encoding"))
		body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
		require.NoError(t, err)
		return parsed{header: msg.Header, parts: []part{{msg.Header.Get("Content-Type"), string(body)}}}
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		pt, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		body, err := io.ReadAll(pt) // NextPart decodes quoted-printable
		require.NoError(t, err)
		p.parts = append(p.parts, part{pt.Header.Get("Content-Type"), string(body)})
	}
	return p
}

func decodeHeader(t *testing.T, v string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	require.NoError(t, err)
	return s
}

// crlf turns the LF line breaks of a Go literal into the CRLF the message
// carries.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

const awkwardText = `Hello Zoë,

.a line that starts with a dot
..and one with two
.
From the start of a line, with trailing spaces   
A very long line that goes on and on well past the seventy-six characters quoted-printable allows on one line: ✓ done.
=?utf-8?q?not_an_encoded_word?=
`

func TestSendPlainText(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	m := newMailer(t, s, nil)
	err := m.Send(t.Context(), tmail.Message{
		ID: 42, To: "Zoë Müller <zoe@customer.example>", Subject: "Bestätigen Sie Ihre E-Mail-Adresse", Text: awkwardText,
	})
	require.NoError(t, err)

	got := s.received()
	require.Len(t, got, 1)
	r := got[0]
	require.Equal(t, "cp.tenantplane.example", r.helo)
	require.Equal(t, "no-reply@tenantplane.example", r.from)
	require.Equal(t, []string{"zoe@customer.example"}, r.to)
	require.False(t, r.tls)

	p := parse(t, r.data)
	date, err := p.header.Date()
	require.NoError(t, err)
	require.True(t, sentAt.Equal(date), date)
	from, err := p.header.AddressList("From")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Tenantplane", Address: "no-reply@tenantplane.example"}}, from)
	to, err := p.header.AddressList("To")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Zoë Müller", Address: "zoe@customer.example"}}, to)
	require.True(t, strings.HasPrefix(p.header.Get("Subject"), "=?utf-8?q?"), p.header.Get("Subject"))
	require.Equal(t, "Bestätigen Sie Ihre E-Mail-Adresse", decodeHeader(t, p.header.Get("Subject")))
	require.Equal(t, "<tenantplane.mail.42@tenantplane.example>", p.header.Get("Message-ID"))
	require.Equal(t, "1.0", p.header.Get("MIME-Version"))
	require.Equal(t, "auto-generated", p.header.Get("Auto-Submitted"))
	require.Equal(t, []part{{`text/plain; charset="utf-8"`, crlf(awkwardText)}}, p.parts)
}

func TestSendMultipartAlternative(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	m := newMailer(t, s, nil)
	html := "<!doctype html>\n<p>Hello Zoë,</p>\n<p><a href=\"https://console.example/verify?t=abc&amp;x=1\">Verify</a></p>\n.\n"
	require.NoError(t, m.Send(t.Context(), tmail.Message{
		ID: 7, To: "zoe@customer.example", Subject: "Verify your email", Text: "Hello Zoë,\nopen https://console.example/verify?t=abc&x=1", HTML: html,
	}))
	got := s.received()
	require.Len(t, got, 1)
	p := parse(t, got[0].data)
	mt, params, err := mime.ParseMediaType(p.header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative", mt)
	require.NotEmpty(t, params["boundary"])
	require.Equal(t, "Verify your email", p.header.Get("Subject"), "plain ASCII stays unencoded")
	require.Equal(t, []part{
		{`text/plain; charset="utf-8"`, "Hello Zoë,\r\nopen https://console.example/verify?t=abc&x=1\r\n"},
		{`text/html; charset="utf-8"`, crlf(html)},
	}, p.parts)
}

func TestMessageIDIsStableAcrossRetries(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	m := newMailer(t, s, func(c *smtp.Config) { c.MessageIDDomain = "mail.eu-1.tenantplane.example" })
	msg := tmail.Message{ID: 9001, To: "a@b.example", Subject: "s", Text: "t"}
	require.NoError(t, m.Send(t.Context(), msg))
	require.NoError(t, m.Send(t.Context(), msg))
	require.NoError(t, m.Send(t.Context(), tmail.Message{ID: 9002, To: "a@b.example", Subject: "s", Text: "t"}))
	require.NoError(t, m.Send(t.Context(), tmail.Message{To: "a@b.example", Subject: "s", Text: "t"}))
	require.NoError(t, m.Send(t.Context(), tmail.Message{To: "a@b.example", Subject: "s", Text: "t"}))
	var ids []string
	for _, r := range s.received() {
		ids = append(ids, parse(t, r.data).header.Get("Message-ID"))
	}
	require.Equal(t, "<tenantplane.mail.9001@mail.eu-1.tenantplane.example>", ids[0])
	require.Equal(t, ids[0], ids[1], "a retry carries the same Message-ID")
	require.Equal(t, "<tenantplane.mail.9002@mail.eu-1.tenantplane.example>", ids[2])
	require.NotEqual(t, ids[3], ids[4], "messages without an outbox id get unique ids")
	require.True(t, strings.HasPrefix(ids[3], "<tenantplane.adhoc."), ids[3])
}

func TestSendSTARTTLS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		mechs []string
	}{
		{"auth plain", []string{sasl.Plain}},
		{"auth login", []string{sasl.Login}},
		{"both offered", []string{sasl.Login, sasl.Plain}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			serverTLS, roots := selfSigned(t)
			s := startServer(t, serverOptions{tls: serverTLS, users: map[string]string{"mailer": "pa55 word"}, mechs: tt.mechs})
			m := newMailer(t, s, func(c *smtp.Config) {
				c.TLS = smtp.StartTLS
				c.TLSConfig = &tls.Config{RootCAs: roots}
				c.Username, c.Password = "mailer", "pa55 word"
			})
			require.NoError(t, m.Send(t.Context(), tmail.Message{ID: 1, To: "a@b.example", Subject: "hi", Text: "body"}))
			got := s.received()
			require.Len(t, got, 1)
			require.True(t, got[0].tls)
			require.Equal(t, "mailer", got[0].user)
			require.Equal(t, []part{{`text/plain; charset="utf-8"`, "body\r\n"}}, parse(t, got[0].data).parts)
		})
	}
}

func TestSendImplicitTLS(t *testing.T) {
	t.Parallel()
	serverTLS, roots := selfSigned(t)
	s := startServer(t, serverOptions{tls: serverTLS, implicit: true, users: map[string]string{"mailer": "pw"}})
	m := newMailer(t, s, func(c *smtp.Config) {
		c.TLS = smtp.ImplicitTLS
		c.TLSConfig = &tls.Config{RootCAs: roots}
		c.Username, c.Password = "mailer", "pw"
	})
	require.NoError(t, m.Send(t.Context(), tmail.Message{ID: 1, To: "a@b.example", Subject: "hi", Text: "body"}))
	got := s.received()
	require.Len(t, got, 1)
	require.True(t, got[0].tls)
	require.Equal(t, "mailer", got[0].user)
}

func TestAuthFailure(t *testing.T) {
	t.Parallel()
	serverTLS, roots := selfSigned(t)
	s := startServer(t, serverOptions{tls: serverTLS, users: map[string]string{"mailer": "right"}})
	m := newMailer(t, s, func(c *smtp.Config) {
		c.TLS = smtp.StartTLS
		c.TLSConfig = &tls.Config{RootCAs: roots}
		c.Username, c.Password = "mailer", "wrong"
	})
	err := m.Send(t.Context(), tmail.Message{ID: 3, To: "a@b.example", Subject: "hi", Text: "body"})
	require.ErrorContains(t, err, "sending message 3 via 127.0.0.1:")
	require.ErrorContains(t, err, "auth:")
	te, ok := errors.AsType[*textproto.Error](err)
	require.True(t, ok, err)
	require.Equal(t, 535, te.Code)
	require.False(t, smtp.Permanent(err), "bad credentials are a configuration fault, not the message's")
	require.Empty(t, s.received())
}

// TestNoCredentialsBeforeTLS: credentials never travel before the
// connection is encrypted and the server's certificate is trusted.
func TestNoCredentialsBeforeTLS(t *testing.T) {
	t.Parallel()
	serverTLS, _ := selfSigned(t)
	tests := []struct {
		name    string
		opts    serverOptions
		wantErr string
	}{
		{"server without STARTTLS", serverOptions{users: map[string]string{"mailer": "pw"}, insecureAuth: true},
			"server does not offer STARTTLS"},
		{"untrusted certificate", serverOptions{tls: serverTLS, users: map[string]string{"mailer": "pw"}},
			"certificate signed by unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, tt.opts)
			m := newMailer(t, s, func(c *smtp.Config) {
				c.TLS = smtp.StartTLS
				c.Username, c.Password = "mailer", "pw"
			})
			err := m.Send(t.Context(), tmail.Message{ID: 1, To: "a@b.example", Subject: "s", Text: "t"})
			require.ErrorContains(t, err, tt.wantErr)
			require.False(t, smtp.Permanent(err))
			s.mu.Lock()
			defer s.mu.Unlock()
			require.Zero(t, s.authAttempts)
			require.Empty(t, s.msgs)
		})
	}
}

func TestPlainAuthOnLoopback(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{users: map[string]string{"dev": "dev"}, insecureAuth: true})
	m := newMailer(t, s, func(c *smtp.Config) { c.Username, c.Password = "dev", "dev" })
	require.NoError(t, m.Send(t.Context(), tmail.Message{ID: 1, To: "a@b.example", Subject: "s", Text: "t"}))
	require.Equal(t, "dev", s.received()[0].user)
}

func TestRecipientRejectedIsPermanent(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{rejectRcpt: "gone@b.example"})
	m := newMailer(t, s, nil)
	err := m.Send(t.Context(), tmail.Message{ID: 5, To: "gone@b.example", Subject: "s", Text: "t"})
	require.ErrorContains(t, err, "rcpt to:")
	require.True(t, smtp.Permanent(err))
	require.Empty(t, s.received())
}

func TestInvalidMessageIsPermanent(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	m := newMailer(t, s, nil)
	tests := []struct {
		name    string
		msg     tmail.Message
		wantErr string
	}{
		{"no recipient", tmail.Message{ID: 1, Subject: "s", Text: "t"}, "to:"},
		{"two recipients", tmail.Message{ID: 1, To: "a@b.example, c@d.example", Subject: "s", Text: "t"}, "to:"},
		{"header injection in to", tmail.Message{ID: 1, To: "a@b.example\r\nBcc: x@evil.example", Subject: "s", Text: "t"}, "to:"},
		{"non-ASCII address", tmail.Message{ID: 1, To: "zoë@b.example", Subject: "s", Text: "t"}, "ASCII"},
		{"no text", tmail.Message{ID: 1, To: "a@b.example", Subject: "s", HTML: "<p>x</p>"}, "text body"},
		{"invalid UTF-8", tmail.Message{ID: 1, To: "a@b.example", Subject: "s\xff", Text: "t"}, "UTF-8"},
	}
	for _, tt := range tests {
		err := m.Send(t.Context(), tt.msg)
		require.ErrorContains(t, err, tt.wantErr, tt.name)
		require.True(t, smtp.Permanent(err), tt.name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Zero(t, s.sessions, "an invalid message opens no connection")
}

func TestSubjectInjectionIsNeutralised(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	m := newMailer(t, s, nil)
	require.NoError(t, m.Send(t.Context(), tmail.Message{
		ID: 1, To: "a@b.example", Subject: "Hello\r\nBcc: x@evil.example\r\n\r\nbody", Text: "t",
	}))
	p := parse(t, s.received()[0].data)
	require.Empty(t, p.header.Get("Bcc"))
	require.Equal(t, "Hello Bcc: x@evil.example body", p.header.Get("Subject"))
	require.Equal(t, "t\r\n", p.parts[0].body)
}

// TestSendTimeout: a server that accepts the connection and never greets
// cannot hold Send past its timeout, nor past the caller's context.
func TestSendTimeout(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	_, port, err := net.SplitHostPort(l.Addr().String())
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	m := newMailer(t, &server{host: "127.0.0.1", port: p}, func(c *smtp.Config) { c.SendTimeout = 200 * time.Millisecond })

	start := time.Now()
	err = m.Send(t.Context(), tmail.Message{ID: 1, To: "a@b.example", Subject: "s", Text: "t"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	m = newMailer(t, &server{host: "127.0.0.1", port: p}, nil)
	start = time.Now()
	err = m.Send(ctx, tmail.Message{ID: 1, To: "a@b.example", Subject: "s", Text: "t"})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestServerDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	m := newMailer(t, &server{host: "127.0.0.1", port: port}, nil)
	err = m.Send(t.Context(), tmail.Message{ID: 1, To: "a@b.example", Subject: "s", Text: "t"})
	require.ErrorContains(t, err, "connecting:")
	require.False(t, smtp.Permanent(err))
}
