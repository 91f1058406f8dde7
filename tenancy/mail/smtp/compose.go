package smtp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	tmail "github.com/tenantplane/tenantplane/tenancy/mail"
)

// maxLine is the folding width for header lines (RFC 5322 2.1.1 "SHOULD
// be no more than 78 characters").
const maxLine = 78

// invalidMessageError is a message that no server will ever accept as it
// is; [Permanent] reports it.
type invalidMessageError struct{ msg string }

func (e *invalidMessageError) Error() string { return "invalid message: " + e.msg }

func invalid(format string, args ...any) error {
	return &invalidMessageError{msg: fmt.Sprintf(format, args...)}
}

// parseAddress parses one RFC 5322 address whose addr-spec is ASCII (the
// client does not speak SMTPUTF8), so that it is safe in the envelope.
func parseAddress(s string) (*mail.Address, error) {
	if s == "" {
		return nil, errors.New("address required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", s, err)
	}
	for _, r := range a.Address {
		if r < 0x21 || r > 0x7e {
			return nil, fmt.Errorf("address %q: only ASCII addresses are supported", s)
		}
	}
	if !strings.Contains(a.Address, "@") {
		return nil, fmt.Errorf("address %q: no domain", s)
	}
	return a, nil
}

// messageID returns the Message-ID of outbox message id: the same for every
// delivery attempt of that message. A message without an outbox id gets a
// random one.
func messageID(id int64, domain string) string {
	if id > 0 {
		return "<tenantplane.mail." + strconv.FormatInt(id, 10) + "@" + domain + ">"
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return "<tenantplane.adhoc." + hex.EncodeToString(b) + "@" + domain + ">"
}

// compose renders m as an RFC 5322 message with CRLF line endings, from the
// sender from, dated date. It returns the recipient's address for the
// envelope.
func compose(m tmail.Message, from *mail.Address, idDomain string, date time.Time) ([]byte, string, error) {
	to, err := parseAddress(m.To)
	if err != nil {
		return nil, "", invalid("to: %v", err)
	}
	if strings.TrimSpace(m.Text) == "" {
		return nil, "", invalid("a text body is required")
	}
	for name, v := range map[string]string{"subject": m.Subject, "text": m.Text, "html": m.HTML} {
		if !utf8.ValidString(v) {
			return nil, "", invalid("%s: not valid UTF-8", name)
		}
	}

	var buf bytes.Buffer
	header := func(name, value string) { buf.WriteString(fold(name + ": " + value)) }
	header("Date", date.UTC().Format(time.RFC1123Z))
	header("From", from.String())
	header("To", to.String())
	header("Subject", encodeText(m.Subject))
	header("Message-ID", messageID(m.ID, idDomain))
	header("MIME-Version", "1.0")
	header("Auto-Submitted", "auto-generated")

	if m.HTML == "" {
		header("Content-Type", `text/plain; charset="utf-8"`)
		header("Content-Transfer-Encoding", "quoted-printable")
		buf.WriteString("\r\n")
		if err := writeQP(&buf, m.Text); err != nil {
			return nil, "", err
		}
		return buf.Bytes(), to.Address, nil
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	header("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	buf.WriteString("\r\n")
	// Least preferred first (RFC 2046 5.1.4): text, then HTML.
	for _, part := range []struct{ contentType, content string }{
		{`text/plain; charset="utf-8"`, m.Text},
		{`text/html; charset="utf-8"`, m.HTML},
	} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.contentType},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, "", fmt.Errorf("creating part: %w", err)
		}
		if err := writeQP(w, part.content); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", fmt.Errorf("closing multipart: %w", err)
	}
	buf.Write(body.Bytes())
	return buf.Bytes(), to.Address, nil
}

// writeQP writes s quoted-printable with CRLF line breaks (any of CRLF, LF
// or CR in s is a line break), ending with a line break.
func writeQP(w interface{ Write([]byte) (int, error) }, s string) error {
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(s)); err != nil {
		return fmt.Errorf("encoding body: %w", err)
	}
	if !strings.HasSuffix(s, "\n") && !strings.HasSuffix(s, "\r") {
		if _, err := qp.Write([]byte("\r\n")); err != nil {
			return fmt.Errorf("encoding body: %w", err)
		}
	}
	if err := qp.Close(); err != nil {
		return fmt.Errorf("encoding body: %w", err)
	}
	return nil
}

// encodeText makes s safe as an unstructured header value (RFC 5322
// 2.2.1): line breaks and other control characters become spaces; text that
// is not printable ASCII is Q-encoded (RFC 2047) with mime.QEncoding; and
// ASCII text that a reader would misread (it looks like an encoded word) or
// that has a word too long to fold is Q-encoded as well.
func encodeText(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r < 0x20 || r == 0x7f
	}), " ")
	for _, r := range s {
		if r > 0x7e {
			return mime.QEncoding.Encode("utf-8", s)
		}
	}
	if strings.Contains(s, "=?") {
		return qEncodeASCII(s)
	}
	for word := range strings.SplitSeq(s, " ") {
		if len(word) > maxLine-len("Subject: ") {
			return qEncodeASCII(s)
		}
	}
	return s
}

// qEncodeASCII Q-encodes printable ASCII s into encoded words of at most 75
// characters (RFC 2047 2), which mime.QEncoding does only for text that
// needs it.
func qEncodeASCII(s string) string {
	const prefix, suffix = "=?utf-8?q?", "?="
	const room = 75 - len(prefix) - len(suffix)
	var words []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		var enc string
		switch {
		case c == ' ':
			enc = "_"
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '!', c == '*', c == '+', c == '-', c == '/':
			enc = string(c)
		default:
			enc = fmt.Sprintf("=%02X", c)
		}
		if cur.Len()+len(enc) > room {
			words = append(words, prefix+cur.String()+suffix)
			cur.Reset()
		}
		cur.WriteString(enc)
	}
	return strings.Join(append(words, prefix+cur.String()+suffix), " ")
}

// fold breaks a header line at spaces so that no line is longer than
// maxLine where that is possible, and ends it with CRLF. Encoded words are
// at most 75 characters, so an encoded header always folds within limits.
func fold(line string) string {
	var b strings.Builder
	width := 0
	for i, word := range strings.Split(line, " ") {
		switch {
		case i == 0:
		case width+1+len(word) > maxLine:
			b.WriteString("\r\n")
			width = 0
			fallthrough
		default:
			b.WriteByte(' ')
			width++
		}
		b.WriteString(word)
		width += len(word)
	}
	b.WriteString("\r\n")
	return b.String()
}
