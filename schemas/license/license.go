// Package license signs and verifies e-licences (电子证照, dataset license.certificate):
// the canonical message an issuing department signs, Ed25519 signing and verification,
// the issuers' keyring, content digests and a licence's effective status.
//
// The issuer signs what the licence says, not what the register currently says about
// it: number, type, holder, issuer, dates and the SHA-256 digest of the licence's
// content. Status and updated_at are left out on purpose, because the register changes
// them (a suspension, a revocation) without the issuer re-issuing the licence; a
// revoked licence still carries a valid signature, and its status says it is revoked.
//
// It imports nothing of govx but schemas (for the shared text normalizer), so the
// generator, the connectors, the policy loader and the exchange may all use it.
package license

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	"govx/schemas"
)

// MessageVersion starts every canonical message; a later format would change it, so a
// signature can never be read as one over a message of another format.
const MessageVersion = "govx-licence-v1"

// Errors a check returns, wrapped with the detail; test with errors.Is.
var (
	// ErrMalformed: the licence cannot be signed or verified as given (a missing field,
	// a control character, a date or digest or signature in the wrong form).
	ErrMalformed = errors.New("malformed licence")
	// ErrUnknownIssuer: the keyring holds no key for the licence's issuer.
	ErrUnknownIssuer = errors.New("unknown issuer")
	// ErrBadSignature: the signature does not verify under the issuer's key: the
	// licence was altered after signing, or signed by someone else.
	ErrBadSignature = errors.New("issuer signature does not verify")
)

// Licence holds the signed fields of a licence, named as the dataset's fields, in the
// canonical form connectors publish (dates YYYY-MM-DD), plus the signature.
type Licence struct {
	No             string // licence_no
	Type           string // licence_type, a code of the schema's code list
	HolderUSCC     string // holder_uscc; exactly one of the two holder fields is set
	HolderIDNumber string // holder_id_number
	HolderName     string // holder_name
	Issuer         string // issuer: the issuing department's code
	IssuerRegion   string // issuer_region
	IssuedOn       string // issued_on, YYYY-MM-DD
	ValidUntil     string // valid_until, YYYY-MM-DD; empty for a licence without a term
	ContentDigest  string // content_digest, SHA-256 of the content in lower-case hex
	// Signature is issuer_signature: the Ed25519 signature over Message, in lower-case
	// hex. It is not part of the message.
	Signature string
}

// FromRecord reads a licence from a license.certificate record in canonical form (a
// Kafka value, a store row as a map). Absent and nil fields read as empty.
func FromRecord(rec map[string]any) (Licence, error) {
	var l Licence
	var errs []string
	get := func(name string) string {
		switch v := rec[name].(type) {
		case nil:
			return ""
		case string:
			return v
		default:
			errs = append(errs, fmt.Sprintf("%s is %T, not a string", name, v))
			return ""
		}
	}
	l.No, l.Type = get("licence_no"), get("licence_type")
	l.HolderUSCC, l.HolderIDNumber, l.HolderName = get("holder_uscc"), get("holder_id_number"), get("holder_name")
	l.Issuer, l.IssuerRegion = get("issuer"), get("issuer_region")
	l.IssuedOn, l.ValidUntil = get("issued_on"), get("valid_until")
	l.ContentDigest, l.Signature = get("content_digest"), get("issuer_signature")
	if len(errs) > 0 {
		return Licence{}, fmt.Errorf("%w: %s", ErrMalformed, strings.Join(errs, "; "))
	}
	return l, nil
}

// Message returns the canonical message an issuer signs. It is UTF-8 text: the line
// "govx-licence-v1", then one line per signed field in this fixed order, each
// "<field>=<value>" and ending in "\n":
//
//	licence_no, licence_type, holder_uscc, holder_id_number, holder_name, issuer,
//	issuer_region, issued_on, valid_until, content_digest
//
// An unset field (the other holder, a missing valid_until) has an empty value. Values
// are normalized first as connectors normalize them (schemas.NormalizeText: trimmed,
// full-width folded; holder identifiers and the digest case-folded), so a signature
// made over source values holds over the published record. A value holding a control
// character (a line break could forge another line) is refused, as is anything
// required that is missing or not in its form.
func Message(l Licence) ([]byte, error) {
	n := normalized(l)
	var errs []string
	required := func(name, v string) {
		if v == "" {
			errs = append(errs, name+" is missing")
		}
	}
	required("licence_no", n.No)
	required("licence_type", n.Type)
	required("holder_name", n.HolderName)
	required("issuer", n.Issuer)
	required("issuer_region", n.IssuerRegion)
	if (n.HolderUSCC == "") == (n.HolderIDNumber == "") {
		errs = append(errs, "exactly one of holder_uscc and holder_id_number must be set")
	}
	if !isDate(n.IssuedOn) {
		errs = append(errs, fmt.Sprintf("issued_on %q is not a date YYYY-MM-DD", n.IssuedOn))
	}
	if n.ValidUntil != "" && !isDate(n.ValidUntil) {
		errs = append(errs, fmt.Sprintf("valid_until %q is not a date YYYY-MM-DD", n.ValidUntil))
	}
	if !isHex(n.ContentDigest, sha256.Size) {
		errs = append(errs, fmt.Sprintf("content_digest %q is not a SHA-256 in hex", n.ContentDigest))
	}
	fields := [...][2]string{
		{"licence_no", n.No}, {"licence_type", n.Type}, {"holder_uscc", n.HolderUSCC},
		{"holder_id_number", n.HolderIDNumber}, {"holder_name", n.HolderName}, {"issuer", n.Issuer},
		{"issuer_region", n.IssuerRegion}, {"issued_on", n.IssuedOn}, {"valid_until", n.ValidUntil},
		{"content_digest", n.ContentDigest},
	}
	for _, f := range fields {
		if strings.IndexFunc(f[1], unicode.IsControl) >= 0 {
			errs = append(errs, f[0]+" holds a control character")
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, strings.Join(errs, "; "))
	}
	var b strings.Builder
	b.WriteString(MessageVersion + "\n")
	for _, f := range fields {
		b.WriteString(f[0] + "=" + f[1] + "\n")
	}
	return []byte(b.String()), nil
}

func normalized(l Licence) Licence {
	t := schemas.NormalizeText
	return Licence{
		No: t(l.No), Type: t(l.Type),
		HolderUSCC: strings.ToUpper(t(l.HolderUSCC)), HolderIDNumber: strings.ToUpper(t(l.HolderIDNumber)),
		HolderName: t(l.HolderName), Issuer: t(l.Issuer), IssuerRegion: t(l.IssuerRegion),
		IssuedOn: t(l.IssuedOn), ValidUntil: t(l.ValidUntil),
		ContentDigest: strings.ToLower(t(l.ContentDigest)),
	}
}

// Sign returns the issuer's signature over l's message, in lower-case hex, for the
// issuer_signature field.
func Sign(key ed25519.PrivateKey, l Licence) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("%w: an Ed25519 private key has %d bytes, got %d", ErrMalformed, ed25519.PrivateKeySize, len(key))
	}
	msg, err := Message(l)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(ed25519.Sign(key, msg)), nil
}

// Verify reports whether l.Signature is the signature of key over l's message: nil when
// it holds, ErrBadSignature when it does not, ErrMalformed when l cannot be checked.
func Verify(key ed25519.PublicKey, l Licence) error {
	if len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: an Ed25519 public key has %d bytes, got %d", ErrMalformed, ed25519.PublicKeySize, len(key))
	}
	msg, err := Message(l)
	if err != nil {
		return err
	}
	sig := strings.ToLower(schemas.NormalizeText(l.Signature))
	if !isHex(sig, ed25519.SignatureSize) {
		return fmt.Errorf("%w: issuer_signature is not %d bytes in hex", ErrMalformed, ed25519.SignatureSize)
	}
	raw, _ := hex.DecodeString(sig)
	if !ed25519.Verify(key, msg, raw) {
		return fmt.Errorf("%w: licence %s, issuer %s", ErrBadSignature, l.No, l.Issuer)
	}
	return nil
}

// Keyring holds the issuers' public keys, by issuer code. It is immutable and safe for
// concurrent use.
type Keyring struct {
	keys map[string]ed25519.PublicKey
}

// NewKeyring returns a keyring of the given keys (issuer code → public key).
func NewKeyring(keys map[string]ed25519.PublicKey) (*Keyring, error) {
	k := &Keyring{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for code, pub := range keys {
		if code == "" {
			return nil, errors.New("license: a key without an issuer code")
		}
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("license: issuer %s: an Ed25519 public key has %d bytes, got %d", code, ed25519.PublicKeySize, len(pub))
		}
		k.keys[code] = append(ed25519.PublicKey(nil), pub...)
	}
	return k, nil
}

// Key returns the public key of an issuer.
func (k *Keyring) Key(issuer string) (ed25519.PublicKey, bool) {
	if k == nil {
		return nil, false
	}
	pub, ok := k.keys[issuer]
	return pub, ok
}

// Issuers returns the issuer codes the keyring holds, sorted.
func (k *Keyring) Issuers() []string {
	if k == nil {
		return nil
	}
	out := make([]string, 0, len(k.keys))
	for c := range k.keys {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Verify verifies l under its issuer's key: nil when the signature holds,
// ErrUnknownIssuer when the keyring has no key for l.Issuer, otherwise as Verify.
func (k *Keyring) Verify(l Licence) error {
	pub, ok := k.Key(schemas.NormalizeText(l.Issuer))
	if !ok {
		return fmt.Errorf("%w: %q has no public key in the issuers data", ErrUnknownIssuer, l.Issuer)
	}
	return Verify(pub, l)
}

// keyPrefix names the algorithm in the text form of a public key, so a key of another
// kind can never be read as an Ed25519 key.
const keyPrefix = "ed25519:"

// FormatPublicKey returns the text form of a public key used in the issuers data:
// "ed25519:" and the 32 bytes in standard base64.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return keyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey reads a public key in the form FormatPublicKey writes.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b64, ok := strings.CutPrefix(s, keyPrefix)
	if !ok {
		return nil, fmt.Errorf("public key %q must start with %q", abbreviate(s), keyPrefix)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("public key %q: not standard base64: %v", abbreviate(s), err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %q: %d bytes, an Ed25519 public key has %d", abbreviate(s), len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

func abbreviate(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// ContentDigest returns the content_digest of a licence's content (the document the
// holder is given): its SHA-256 in lower-case hex.
func ContentDigest(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// ParseDigest reads a digest as a person presents it (printed on a copy, typed in):
// surrounding space and full-width characters folded, either case; it returns the
// canonical lower-case hex, or an error saying what is wrong.
func ParseDigest(s string) (string, error) {
	d := strings.ToLower(schemas.NormalizeText(s))
	if !isHex(d, sha256.Size) {
		return "", fmt.Errorf("%w: a content digest is %d hexadecimal characters (SHA-256), got %q", ErrMalformed, 2*sha256.Size, abbreviate(s))
	}
	return d, nil
}

// The statuses of the license.certificate schema.
const (
	StatusValid     = "valid"
	StatusSuspended = "suspended"
	StatusRevoked   = "revoked"
	StatusExpired   = "expired"
)

// EffectiveStatus returns a licence's status at instant at: the register's status,
// except that a licence recorded as valid whose valid_until day (China Standard Time)
// has passed is expired — the register may not have caught up yet, and a verification
// must not call such a licence valid. Suspended and revoked stay as they are.
func EffectiveStatus(status, validUntil string, at time.Time) string {
	if status != StatusValid || validUntil == "" {
		return status
	}
	last, err := time.ParseInLocation(time.DateOnly, validUntil, schemas.ChinaTime)
	if err != nil {
		return status
	}
	if !at.Before(last.AddDate(0, 0, 1)) {
		return StatusExpired
	}
	return status
}

func isDate(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}

// isHex reports whether s is exactly n bytes in lower-case hex.
func isHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
