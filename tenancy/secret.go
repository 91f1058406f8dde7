package tenancy

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Prefixes of the one-time secrets that are mailed.
const (
	verifyTokenPrefix = "tpv_"
	resetTokenPrefix  = "tpr_"
	inviteTokenPrefix = "tpi_"
)

// secretBytes is the entropy of every token secret.
const secretBytes = 32

// newSecret returns prefix followed by 32 random bytes in URL-safe base64,
// and the SHA-256 hash that is stored in its place.
func newSecret(prefix string) (string, []byte) {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	s := prefix + base64.RawURLEncoding.EncodeToString(b)
	return s, hashSecret(s)
}

// hashSecret is how secrets are stored and looked up.
func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// wellFormedSecret reports whether s has the prefix and length of a secret
// made by newSecret, so garbage never reaches the database.
func wellFormedSecret(s, prefix string) bool {
	return strings.HasPrefix(s, prefix) &&
		len(s) == len(prefix)+base64.RawURLEncoding.EncodedLen(secretBytes)
}

const base36 = "abcdefghijklmnopqrstuvwxyz0123456789"

// randomLabel returns n random lower-case letters and digits.
func randomLabel(n int) string {
	b := make([]byte, n)
	out := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		// 252 = 7*36: reject the bytes that would bias the result.
		for b[i] >= 252 {
			var one [1]byte
			_, _ = rand.Read(one[:])
			b[i] = one[0]
		}
		out[i] = base36[b[i]%36]
	}
	return string(out)
}
