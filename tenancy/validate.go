package tenancy

import (
	"strings"
	"unicode/utf8"

	"github.com/tenantplane/tenantplane/internal/errcode"
)

// Input bounds.
const (
	MaxEmailLen       = 254
	maxEmailLocalLen  = 64
	MinPasswordLen    = 10
	MaxPasswordLen    = 256
	MaxDisplayNameLen = 100
	MaxTokenNameLen   = 100
	MaxDNSLabelLen    = 63
	maxReasonLen      = 500
)

// NormalizeEmail trims and case-folds an email address and checks that it
// is a plain ASCII address "local@domain.tld" of at most 254 bytes. The
// error is BAD_USER_INPUT on field "email".
func NormalizeEmail(s string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(s))
	bad := func(msg string) (string, error) { return "", errcode.Invalid("email", msg) }
	if e == "" {
		return bad("is required")
	}
	if len(e) > MaxEmailLen {
		return bad("is too long")
	}
	at := strings.LastIndexByte(e, '@')
	if at <= 0 || at == len(e)-1 || strings.Count(e, "@") != 1 {
		return bad("is not a valid email address")
	}
	local, domain := e[:at], e[at+1:]
	if len(local) > maxEmailLocalLen {
		return bad("is not a valid email address")
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return bad("is not a valid email address")
	}
	for i := 0; i < len(local); i++ {
		if !isAtext(local[i]) && local[i] != '.' {
			return bad("is not a valid email address")
		}
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return bad("is not a valid email address")
	}
	for _, l := range labels {
		if !isHostLabel(l) {
			return bad("is not a valid email address")
		}
	}
	return e, nil
}

// isAtext reports whether c may appear in the local part of an unquoted
// address (RFC 5322 atext), lower case.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+/=?^_`{|}~-", c) >= 0
}

// isHostLabel reports whether l is a DNS host label: letters, digits and
// inner hyphens, 1..63 bytes.
func isHostLabel(l string) bool {
	if len(l) == 0 || len(l) > MaxDNSLabelLen || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidatePassword checks the password policy: 10 to 256 bytes.
func ValidatePassword(p string) error {
	switch {
	case len(p) < MinPasswordLen:
		return errcode.Invalid("password", "must be at least 10 characters")
	case len(p) > MaxPasswordLen:
		return errcode.Invalid("password", "must be at most 256 bytes")
	}
	return nil
}

// ValidateDNSLabel checks that name is an RFC 1123 label as Kubernetes
// requires of namespace names: lower-case letters, digits and inner
// hyphens, 1..63 characters. field names the input in the error.
func ValidateDNSLabel(field, name string) error {
	if name == "" {
		return errcode.Invalid(field, "is required")
	}
	if len(name) > MaxDNSLabelLen {
		return errcode.Invalid(field, "must be at most 63 characters")
	}
	if !isHostLabel(name) {
		return errcode.Invalid(field, "must consist of lower-case letters, digits and '-', and start and end with a letter or digit")
	}
	return nil
}

// ValidateNamespaceName checks a namespace name: a DNS label that is not
// reserved for the cluster or the platform ("default", "kube-*",
// "tenantplane*").
func ValidateNamespaceName(name string) error {
	if err := ValidateDNSLabel("name", name); err != nil {
		return err
	}
	if name == "default" || strings.HasPrefix(name, "kube-") || strings.HasPrefix(name, "tenantplane") {
		return errcode.Invalid("name", "is reserved")
	}
	return nil
}

// ValidateOrgName checks an org name: a DNS label.
func ValidateOrgName(name string) error { return ValidateDNSLabel("name", name) }

// cleanText trims s and checks it is valid UTF-8 without control
// characters and at most max bytes.
func cleanText(field, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) > max {
		return "", errcode.Invalid(field, "is too long")
	}
	if !utf8.ValidString(s) {
		return "", errcode.Invalid(field, "is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", errcode.Invalid(field, "must not contain control characters")
		}
	}
	return s, nil
}

// orgNameFromEmail derives a DNS label from an email's local part: lower
// case, runs of other characters become one hyphen, at most 40 characters,
// "user" when nothing is left.
func orgNameFromEmail(email string) string {
	local := email
	if at := strings.IndexByte(email, '@'); at >= 0 {
		local = email[:at]
	}
	if plus := strings.IndexByte(local, '+'); plus > 0 {
		local = local[:plus]
	}
	var b strings.Builder
	dash := false
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 40 {
		name = strings.Trim(name[:40], "-")
	}
	if name == "" {
		name = "user"
	}
	return name
}
