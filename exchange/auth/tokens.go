package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"govx/exchange"
)

// tokenPrefix marks govx tokens so secret scanners and people recognize them.
const tokenPrefix = "govx_"

// TokenRecord is what the token file keeps of one token: never the token itself.
type TokenRecord struct {
	ID        string           `json:"id"`
	Hash      string           `json:"sha256"` // hex SHA-256 of the whole token
	Subject   exchange.Subject `json:"subject"`
	Note      string           `json:"note,omitempty"`
	IssuedAt  time.Time        `json:"issued_at"`
	RevokedAt time.Time        `json:"revoked_at,omitzero"`
}

// Revoked reports whether the token was revoked.
func (r TokenRecord) Revoked() bool { return !r.RevokedAt.IsZero() }

// Tokens is a token file (JSON) shared by `govx token` and a running exchange. The
// exchange checks the file's modification time on each authentication, so an issue or
// a revocation takes effect on the next request without a restart.
type Tokens struct {
	path string
	// certCheck, when set, is asked about every verified client certificate chain at
	// every call (see CheckCertificates).
	certCheck func(verified [][]*x509.Certificate) error

	mu      sync.Mutex
	modTime time.Time
	size    int64
	byHash  map[string]TokenRecord
}

// OpenTokens opens the token file at path; a missing file is an empty store.
func OpenTokens(path string) *Tokens {
	return &Tokens{path: path}
}

// Path returns the token file's path.
func (t *Tokens) Path() string { return t.path }

// Authenticate returns the subject holding token, or ErrUnauthenticated. The token
// file is re-read when it has changed since the last call.
func (t *Tokens) Authenticate(token string) (exchange.Subject, error) {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 128 {
		return exchange.Subject{}, ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(token))
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refreshLocked(); err != nil {
		// Fail closed: an unreadable token file authenticates nobody.
		return exchange.Subject{}, &exchange.Error{Kind: exchange.Unavailable, Code: "credentials_unavailable",
			Message: "the exchange cannot read its token file; ask the operator", Err: err}
	}
	rec, ok := t.byHash[hex.EncodeToString(sum[:])]
	if !ok || rec.Revoked() {
		return exchange.Subject{}, ErrUnauthenticated
	}
	return rec.Subject, nil
}

// Check reports why the token file cannot be read (nil when it can, or when there is
// none): while it cannot, nobody authenticates by token, and the exchange is not ready.
func (t *Tokens) Check() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.refreshLocked(); err != nil {
		return fmt.Errorf("token file %s cannot be read, so no token authenticates: %w", t.path, err)
	}
	return nil
}

func (t *Tokens) refreshLocked() error {
	fi, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		t.byHash, t.modTime, t.size = map[string]TokenRecord{}, time.Time{}, 0
		return nil
	}
	if err != nil {
		return err
	}
	if t.byHash != nil && fi.ModTime().Equal(t.modTime) && fi.Size() == t.size {
		return nil
	}
	recs, err := readTokenFile(t.path)
	if err != nil {
		return err
	}
	m := make(map[string]TokenRecord, len(recs))
	for _, r := range recs {
		m[r.Hash] = r
	}
	t.byHash, t.modTime, t.size = m, fi.ModTime(), fi.Size()
	return nil
}

func readTokenFile(path string) ([]TokenRecord, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []TokenRecord
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return recs, nil
}

// writeTokenFile replaces the file atomically, so a running exchange never reads half.
func writeTokenFile(path string, recs []TokenRecord) error {
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tokens-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Issue creates a token for subject, records its hash, and returns the token: the only
// time it is ever visible.
func (t *Tokens) Issue(subject exchange.Subject, note string) (token string, rec TokenRecord, err error) {
	if _, err := ParseSubject(subject.String()); err != nil {
		return "", TokenRecord{}, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", TokenRecord{}, err
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", TokenRecord{}, err
	}
	rec = TokenRecord{
		ID: "tok-" + hex.EncodeToString(id[:]), Hash: hex.EncodeToString(sum[:]),
		Subject: subject, Note: note, IssuedAt: time.Now().UTC().Truncate(time.Second),
	}
	err = t.update(func(recs []TokenRecord) ([]TokenRecord, error) { return append(recs, rec), nil })
	return token, rec, err
}

// Revoke marks the token with the given id revoked.
func (t *Tokens) Revoke(id string) (TokenRecord, error) {
	var out TokenRecord
	err := t.update(func(recs []TokenRecord) ([]TokenRecord, error) {
		for i := range recs {
			if recs[i].ID == id {
				if !recs[i].Revoked() {
					recs[i].RevokedAt = time.Now().UTC()
				}
				out = recs[i]
				return recs, nil
			}
		}
		return nil, fmt.Errorf("no token with id %q; `govx token list` shows the ids", id)
	})
	return out, err
}

// List returns every token record, oldest first.
func (t *Tokens) List() ([]TokenRecord, error) {
	recs, err := readTokenFile(t.path)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].IssuedAt.Before(recs[j].IssuedAt) })
	return recs, err
}

func (t *Tokens) update(fn func([]TokenRecord) ([]TokenRecord, error)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	recs, err := readTokenFile(t.path)
	if err != nil {
		return err
	}
	recs, err = fn(recs)
	if err != nil {
		return err
	}
	if err := writeTokenFile(t.path, recs); err != nil {
		return err
	}
	t.byHash = nil // force a re-read on the next Authenticate
	return nil
}
