package smtp

import (
	"crypto/tls"
	"mime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	tmail "github.com/tenantplane/tenantplane/tenancy/mail"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	base := Config{Host: "smtp.example.com", From: "no-reply@example.com", TLS: StartTLS}
	tests := []struct {
		name     string
		change   func(c *Config)
		wantErr  string
		wantPort int
	}{
		{"starttls default port", func(*Config) {}, "", 587},
		{"implicit default port", func(c *Config) { c.TLS = ImplicitTLS }, "", 465},
		{"none on loopback", func(c *Config) { c.TLS, c.Host = NoTLS, "127.0.0.1" }, "", 25},
		{"none on localhost", func(c *Config) { c.TLS, c.Host = NoTLS, "localhost" }, "", 25},
		{"explicit port", func(c *Config) { c.Port = 2525 }, "", 2525},
		{"ipv6 host", func(c *Config) { c.Host = "::1" }, "", 587},
		{"none to a remote host", func(c *Config) { c.TLS = NoTLS }, "allowed only for a loopback host", 0},
		{"unknown tls mode", func(c *Config) { c.TLS = "ssl" }, `tls mode "ssl"`, 0},
		{"no tls mode", func(c *Config) { c.TLS = "" }, "tls mode", 0},
		{"no host", func(c *Config) { c.Host = "" }, "host", 0},
		{"host with port", func(c *Config) { c.Host = "smtp.example.com:587" }, "host", 0},
		{"port out of range", func(c *Config) { c.Port = 70000 }, "port 70000", 0},
		{"password without user", func(c *Config) { c.Password = "x" }, "password set without username", 0},
		{"no from", func(c *Config) { c.From = "" }, "from: address required", 0},
		{"bad from", func(c *Config) { c.From = "not an address" }, "from:", 0},
		{"bad helo", func(c *Config) { c.HeloName = "bad name" }, "helo name", 0},
		{"bad message id domain", func(c *Config) { c.MessageIDDomain = "a b" }, "message id domain", 0},
		{"negative timeout", func(c *Config) { c.SendTimeout = -time.Second }, "timeouts", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := base
			tt.change(&c)
			got, from, err := c.validate()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantPort, got.Port)
			require.Equal(t, "no-reply@example.com", from.Address)
			require.Equal(t, "example.com", got.MessageIDDomain)
			require.Equal(t, "localhost", got.HeloName)
			require.Equal(t, DefaultDialTimeout, got.DialTimeout)
			require.Equal(t, DefaultSendTimeout, got.SendTimeout)
		})
	}
}

func TestTLSConfig(t *testing.T) {
	t.Parallel()
	c := Config{Host: "smtp.example.com"}
	require.Equal(t, "smtp.example.com", c.tlsConfig().ServerName)
	require.Equal(t, uint16(tls.VersionTLS12), c.tlsConfig().MinVersion)
	own := &tls.Config{ServerName: "relay.example.com", MinVersion: tls.VersionTLS13}
	c.TLSConfig = own
	got := c.tlsConfig()
	require.Equal(t, "relay.example.com", got.ServerName)
	require.Equal(t, uint16(tls.VersionTLS13), got.MinVersion)
	require.NotSame(t, own, got, "the caller's config is cloned")
}

func TestEncodeText(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 80)
	tests := []struct {
		in      string
		encoded bool
		want    string // decoded
	}{
		{"Verify your email", false, "Verify your email"},
		{"", false, ""},
		{"  spaces\tand\ttabs  ", false, "spaces and tabs"},
		{"line\r\nbreak", false, "line break"},
		{"bell\x07", false, "bell"},
		{"Grüße", true, "Grüße"},
		{"=?utf-8?q?x?=", true, "=?utf-8?q?x?="},
		{long, true, long},
		{"日本語の件名", true, "日本語の件名"},
	}
	for _, tt := range tests {
		got := encodeText(tt.in)
		require.Equal(t, tt.encoded, strings.HasPrefix(got, "=?utf-8?q?"), "%q -> %q", tt.in, got)
		dec, err := new(mime.WordDecoder).DecodeHeader(got)
		require.NoError(t, err)
		require.Equal(t, tt.want, dec, tt.in)
	}
}

func TestFold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
	}{
		{"Subject: short", "Subject: short\r\n"},
		{"Subject: " + strings.Repeat("word ", 20) + "end",
			"Subject: word word word word word word word word word word word word word word\r\n word word word word word word end\r\n"},
		{"Message-ID: <" + strings.Repeat("a", 80) + ">", "Message-ID:\r\n <" + strings.Repeat("a", 80) + ">\r\n"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, fold(tt.in))
	}
}

func TestComposeLongSubjectFolds(t *testing.T) {
	t.Parallel()
	from, err := parseAddress("Ünïcode Sender <no-reply@example.com>")
	require.NoError(t, err)
	subject := strings.Repeat("Ihre Rechnung für März ist verfügbar – ", 4)
	data, rcpt, err := compose(tmail.Message{ID: 1, To: "a@b.example", Subject: subject, Text: "t"}, from, "example.com", time.Unix(0, 0))
	require.NoError(t, err)
	require.Equal(t, "a@b.example", rcpt)
	head, _, ok := strings.Cut(string(data), "\r\n\r\n")
	require.True(t, ok)
	var subjectLines []string
	inSubject := false
	for line := range strings.SplitSeq(head, "\r\n") {
		require.LessOrEqual(t, len(line), 78, line)
		switch {
		case strings.HasPrefix(line, "Subject:"):
			inSubject = true
		case !strings.HasPrefix(line, " "):
			inSubject = false
		}
		if inSubject {
			subjectLines = append(subjectLines, line)
		}
	}
	require.Greater(t, len(subjectLines), 1, "the subject is folded")
	dec, err := new(mime.WordDecoder).DecodeHeader(strings.TrimSpace(strings.TrimPrefix(strings.Join(subjectLines, ""), "Subject:")))
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(subject), dec)
	require.Contains(t, head, "From: =?utf-8?q?=C3=9Cn=C3=AFcode_Sender?= <no-reply@example.com>")
	require.Contains(t, head, "Date: Thu, 01 Jan 1970 00:00:00 +0000")
}
