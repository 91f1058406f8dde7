package smtp

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"time"
)

// TLSMode is how the connection to the SMTP server is protected.
type TLSMode string

// The TLS modes.
const (
	// StartTLS connects in plain text and upgrades with STARTTLS before
	// anything else; a server that does not offer it is refused. Port 587.
	StartTLS TLSMode = "starttls"
	// ImplicitTLS speaks TLS from the first byte (SMTPS). Port 465.
	ImplicitTLS TLSMode = "implicit"
	// NoTLS sends in plain text; allowed only to a loopback host, such as a
	// local relay or a development mail catcher. Port 25.
	NoTLS TLSMode = "none"
)

// Defaults for [Config].
const (
	DefaultDialTimeout = 10 * time.Second
	DefaultSendTimeout = 30 * time.Second
)

// Config configures the SMTP mailer.
type Config struct {
	// Host is the SMTP server's host name or address. It is also the name
	// its TLS certificate must carry, unless TLSConfig.ServerName says
	// otherwise.
	Host string
	// Port defaults by TLS mode: 587 for starttls, 465 for implicit, 25 for
	// none.
	Port int
	// Username and Password, when Username is set, authenticate with
	// AUTH PLAIN, or AUTH LOGIN when the server offers only that. They are
	// never sent before TLS, except to a loopback host.
	Username string
	Password string
	// From is the sender, as an RFC 5322 address with an optional display
	// name: "Tenantplane <no-reply@example.com>". Its address is also the
	// envelope sender, where bounces go.
	From string
	// TLS is the TLS mode; required.
	TLS TLSMode
	// TLSConfig is cloned for the TLS handshake; nil means the system roots.
	// ServerName defaults to Host and MinVersion to TLS 1.2.
	TLSConfig *tls.Config
	// HeloName is the name this client gives in EHLO. Empty means
	// "localhost".
	HeloName string
	// MessageIDDomain is the right-hand side of every Message-ID. Empty
	// means the domain of From. Give each deployment its own when several
	// send from the same domain, so their ids never collide.
	MessageIDDomain string
	// DialTimeout bounds connecting and the TLS handshake; SendTimeout
	// bounds a whole Send. Zero means the defaults.
	DialTimeout time.Duration
	SendTimeout time.Duration
}

var domainName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// validate checks c and returns it with defaults filled in, and the parsed
// From.
func (c Config) validate() (Config, *mail.Address, error) {
	var errs []error
	if c.Host == "" || (strings.ContainsAny(c.Host, " /:@\r\n") && net.ParseIP(c.Host) == nil) {
		errs = append(errs, fmt.Errorf("host %q: must be a host name or address", c.Host))
	}
	switch c.TLS {
	case StartTLS:
		c.Port = cmp.Or(c.Port, 587)
	case ImplicitTLS:
		c.Port = cmp.Or(c.Port, 465)
	case NoTLS:
		c.Port = cmp.Or(c.Port, 25)
		if !isLoopback(c.Host) {
			errs = append(errs, fmt.Errorf("tls mode none: allowed only for a loopback host, not %q", c.Host))
		}
	default:
		errs = append(errs, fmt.Errorf("tls mode %q: must be starttls, implicit or none", c.TLS))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: out of range", c.Port))
	}
	if c.Username == "" && c.Password != "" {
		errs = append(errs, errors.New("password set without username"))
	}
	from, err := parseAddress(c.From)
	if err != nil {
		errs = append(errs, fmt.Errorf("from: %w", err))
	}
	if c.HeloName == "" {
		c.HeloName = "localhost"
	} else if !domainName.MatchString(c.HeloName) {
		errs = append(errs, fmt.Errorf("helo name %q: not a domain name", c.HeloName))
	}
	if c.MessageIDDomain == "" && from != nil {
		c.MessageIDDomain = from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	}
	if from != nil && !domainName.MatchString(c.MessageIDDomain) {
		errs = append(errs, fmt.Errorf("message id domain %q: not a domain name", c.MessageIDDomain))
	}
	if c.DialTimeout < 0 || c.SendTimeout < 0 {
		errs = append(errs, errors.New("timeouts: must not be negative"))
	}
	c.DialTimeout = cmp.Or(c.DialTimeout, DefaultDialTimeout)
	c.SendTimeout = cmp.Or(c.SendTimeout, DefaultSendTimeout)
	if err := errors.Join(errs...); err != nil {
		return Config{}, nil, fmt.Errorf("smtp config: %w", err)
	}
	return c, from, nil
}

// tlsConfig returns the TLS configuration for a handshake with the server.
func (c Config) tlsConfig() *tls.Config {
	t := &tls.Config{}
	if c.TLSConfig != nil {
		t = c.TLSConfig.Clone()
	}
	if t.ServerName == "" {
		t.ServerName = c.Host
	}
	if t.MinVersion == 0 {
		t.MinVersion = tls.VersionTLS12
	}
	return t
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
