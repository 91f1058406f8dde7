package oidc

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// maxCookieLen bounds the state cookie accepted on the callback; a sealed
// state is about 250 bytes.
const maxCookieLen = 1024

// loginState is what the login route remembers for its callback. It lives
// sealed in a cookie, so its field names are short.
type loginState struct {
	Provider string `json:"p"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"` // Unix seconds
}

// sealer encrypts and authenticates login states with AES-256-GCM. The
// provider name is additional data, so a state sealed for one provider does
// not open for another.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return sealer{}, fmt.Errorf("state cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return sealer{}, fmt.Errorf("state cipher: %w", err)
	}
	return sealer{aead: aead}, nil
}

func additionalData(provider string) []byte {
	return []byte("tenantplane oidc state v1\x00" + provider)
}

// seal returns st encrypted as a cookie-safe string: base64url(nonce ‖
// ciphertext).
func (s sealer) seal(st loginState) (string, error) {
	plain, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("encoding state: %w", err)
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("state nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, additionalData(st.Provider))), nil
}

var errBadState = errors.New("state cookie invalid")

// open decrypts a value made by seal for provider and checks that it has not
// expired at now.
func (s sealer) open(provider, value string, now time.Time) (loginState, error) {
	if len(value) > maxCookieLen {
		return loginState{}, errBadState
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return loginState{}, errBadState
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], additionalData(provider))
	if err != nil {
		return loginState{}, errBadState
	}
	var st loginState
	if err := json.Unmarshal(plain, &st); err != nil || st.Provider != provider {
		return loginState{}, errBadState
	}
	if !now.Before(time.Unix(st.Expires, 0)) {
		return loginState{}, errors.New("state cookie expired")
	}
	return st, nil
}

// stateCookie describes the state cookie of one provider: its name and path,
// and whether it is Secure. A Secure cookie gets the __Secure- prefix, which
// browsers refuse to let a plain-HTTP response set.
type stateCookie struct {
	name   string
	path   string
	secure bool
}

func newStateCookie(provider, path string, secure bool) stateCookie {
	name := "tp_oidc_" + provider
	if secure {
		name = "__Secure-" + name
	}
	return stateCookie{name: name, path: path, secure: secure}
}

// set returns the cookie that carries value for ttl.
func (c stateCookie) set(value string, ttl time.Duration) *http.Cookie {
	return &http.Cookie{
		Name:     c.name,
		Value:    value,
		Path:     c.path,
		MaxAge:   int(ttl / time.Second),
		HttpOnly: true,
		Secure:   c.secure,
		SameSite: http.SameSiteLaxMode,
	}
}

// clear returns the cookie that deletes the state cookie.
func (c stateCookie) clear() *http.Cookie {
	ck := c.set("", 0)
	ck.MaxAge = -1
	return ck
}

// take finds the state cookie in r whose sealed state is for provider, is
// unexpired at now and has the given state value, and tells the browser to
// delete the cookie whatever the outcome.
func (c stateCookie) take(w http.ResponseWriter, r *http.Request, s sealer, provider, state string, now time.Time) (loginState, error) {
	var found bool
	lastErr := errors.New("no state cookie")
	for _, ck := range r.CookiesNamed(c.name) {
		found = true
		st, err := s.open(provider, ck.Value, now)
		if err != nil {
			lastErr = err
			continue
		}
		if state == "" || subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) != 1 {
			lastErr = errors.New("state does not match the state cookie")
			continue
		}
		http.SetCookie(w, c.clear())
		return st, nil
	}
	if found {
		http.SetCookie(w, c.clear())
	}
	return loginState{}, lastErr
}

// randomToken returns n random bytes, base64url-encoded.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
