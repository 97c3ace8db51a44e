package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Signer seals small JSON payloads (tickets, cursors) with HMAC-SHA256 under the
// exchange's secret. A sealed value is base64url(payload) "." base64url(mac); the
// purpose string is mixed into the MAC so a cursor can never pass as a ticket.
type Signer struct {
	key []byte
}

// NewSigner returns a signer with secret, which must be at least 32 bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 32 {
		return nil, errors.New("the exchange secret must be at least 32 bytes")
	}
	return &Signer{key: append([]byte(nil), secret...)}, nil
}

// ErrBadSeal is returned for a value that was not sealed by this exchange, was changed,
// or was sealed for another purpose.
var ErrBadSeal = errors.New("not a valid signed value")

// ErrExpired is returned for a sealed value whose lifetime has passed.
var ErrExpired = errors.New("expired")

func (s *Signer) mac(purpose string, payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)
}

// Seal signs v (marshaled as JSON) for purpose.
func (s *Signer) Seal(purpose string, v any) (string, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(s.mac(purpose, payload)), nil
}

// Open checks a sealed value for purpose and unmarshals its payload into v.
func (s *Signer) Open(purpose, sealed string, v any) error {
	if len(sealed) > 1<<20 {
		return ErrBadSeal
	}
	p, m, ok := strings.Cut(sealed, ".")
	if !ok {
		return ErrBadSeal
	}
	// Strict: the unused low bits of a last character must be zero, so one sealed value
	// has one spelling (a ticket is not redeemed under a second name).
	enc := base64.RawURLEncoding.Strict()
	payload, err1 := enc.DecodeString(p)
	mac, err2 := enc.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(purpose, payload)) {
		return ErrBadSeal
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return ErrBadSeal
	}
	return nil
}

// Expiring is embedded in sealed payloads that have a lifetime.
type Expiring struct {
	Expires time.Time `json:"exp"`
}

// Check returns ErrExpired once now is past the expiry.
func (e Expiring) Check(now time.Time) error {
	if now.After(e.Expires) {
		return ErrExpired
	}
	return nil
}
