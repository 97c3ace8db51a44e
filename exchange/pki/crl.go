package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrRevoked is returned for a certificate its CA revoked.
var ErrRevoked = errors.New("certificate revoked")

// crlEntry is the newest CRL of one CA.
type crlEntry struct {
	issuer     string // the CA's common name, for messages
	number     int64
	nextUpdate time.Time
	revoked    map[string]time.Time // serial (Serial format) -> revocation time
}

// CRLSet is the revocation state of a set of CAs: for each, the newest valid CRL it
// signed.
type CRLSet struct {
	byCA map[[32]byte]*crlEntry // by SHA-256 of the CA certificate
}

// ParseCRLs reads a PEM file of CRLs ("X509 CRL" blocks; several CAs' lists concatenated
// while a CA is rotated) and checks each against cas: every CRL must be signed by one
// of them, and every one of them must have a CRL. A list may not be used before its
// this-update. Lists past their next update load (so an operator sees the reason) but
// make Check refuse every certificate of that CA.
func ParseCRLs(data []byte, cas []*x509.Certificate, now time.Time) (*CRLSet, error) {
	s := &CRLSet{byCA: map[[32]byte]*crlEntry{}}
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("unexpected PEM block %q; want X509 CRL", block.Type)
		}
		n++
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", n, err)
		}
		var ca *x509.Certificate
		for _, c := range cas {
			if bytes.Equal(crl.RawIssuer, c.RawSubject) && crl.CheckSignatureFrom(c) == nil {
				ca = c
				break
			}
		}
		if ca == nil {
			return nil, fmt.Errorf("CRL %d (issuer %q) is not signed by any CA of tls.client_ca", n, crl.Issuer.String())
		}
		if crl.ThisUpdate.After(now) {
			return nil, fmt.Errorf("CRL %d of %q is dated %s, in the future: check the clocks", n, ca.Subject.CommonName, crl.ThisUpdate.Format(time.RFC3339))
		}
		num := int64(-1)
		if crl.Number != nil && crl.Number.IsInt64() {
			num = crl.Number.Int64()
		}
		id := sha256.Sum256(ca.Raw)
		if prev, ok := s.byCA[id]; ok && prev.number >= num {
			continue // an older list of the same CA: the newest one counts
		}
		e := &crlEntry{issuer: ca.Subject.CommonName, number: num, nextUpdate: crl.NextUpdate, revoked: map[string]time.Time{}}
		for _, r := range crl.RevokedCertificateEntries {
			e.revoked[Serial(r.SerialNumber)] = r.RevocationTime
		}
		s.byCA[id] = e
	}
	if n == 0 {
		return nil, errors.New("no PEM X509 CRL")
	}
	for _, c := range cas {
		if _, ok := s.byCA[sha256.Sum256(c.Raw)]; !ok {
			return nil, fmt.Errorf("no CRL of CA %q: with tls.crl set, every CA of tls.client_ca needs its CRL in the file (concatenate them)", c.Subject.CommonName)
		}
	}
	return s, nil
}

// Check reports whether the verified chains (leaf first, as crypto/tls hands them over)
// may be accepted: every certificate in them is checked against the CRL of the CA that
// issued it. A revoked certificate is ErrRevoked; an issuer without a CRL, or whose CRL
// is past its next update, is refused too (fail closed).
func (s *CRLSet) Check(chains [][]*x509.Certificate, now time.Time) error {
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			cert, issuer := chain[i], chain[i+1]
			e, ok := s.byCA[sha256.Sum256(issuer.Raw)]
			if !ok {
				return fmt.Errorf("no CRL of the certificate's issuer %q", issuer.Subject.CommonName)
			}
			if !e.nextUpdate.IsZero() && now.After(e.nextUpdate) {
				return fmt.Errorf("the CRL of %q expired at %s: issue a fresh one (`govx pki crl`)", e.issuer, e.nextUpdate.Format(time.RFC3339))
			}
			serial := Serial(cert.SerialNumber)
			if at, ok := e.revoked[serial]; ok {
				return fmt.Errorf("%w: %q, serial %s, revoked at %s", ErrRevoked, cert.Subject.CommonName, serial, at.UTC().Format(time.RFC3339))
			}
		}
	}
	return nil
}

// Revocations is a CRL file an exchange checks client certificates against, reloaded
// when the file changes: its modification time and size are looked at no more often
// than every interval, on the next check after that. It fails closed: while the file
// is missing, unreadable, not signed by the client CAs or past its next update, every
// client certificate is refused (bearer tokens are not affected), and Err says why.
// It is safe for concurrent use.
type Revocations struct {
	path     string
	cas      []*x509.Certificate
	interval time.Duration
	now      func() time.Time

	mu        sync.Mutex
	set       *CRLSet
	loadErr   error
	modTime   time.Time
	size      int64
	lastStat  time.Time
	onRefresh func(err error)
}

// DefaultReloadInterval is how often Revocations looks at its file at most.
const DefaultReloadInterval = time.Second

// RevocationsOption adjusts Revocations.
type RevocationsOption func(*Revocations)

// WithReloadInterval sets how often the CRL file is looked at, at most.
func WithReloadInterval(d time.Duration) RevocationsOption {
	return func(r *Revocations) { r.interval = d }
}

// WithRevocationsClock sets the clock (tests).
func WithRevocationsClock(now func() time.Time) RevocationsOption {
	return func(r *Revocations) { r.now = now }
}

// OnReload sets a function called after each reload of the file with its outcome (nil:
// loaded), e.g. to log it. It runs with the lock held and must not call back.
func OnReload(fn func(err error)) RevocationsOption {
	return func(r *Revocations) { r.onRefresh = fn }
}

// LoadRevocations loads the CRL file at path for the client CAs cas. The first load
// must succeed: an exchange configured with a CRL it cannot read does not start.
func LoadRevocations(path string, cas []*x509.Certificate, opts ...RevocationsOption) (*Revocations, error) {
	r := &Revocations{path: path, cas: cas, interval: DefaultReloadInterval, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked(true)
	if r.loadErr != nil {
		return nil, r.loadErr
	}
	if err := r.expiredLocked(); err != nil {
		return nil, err
	}
	return r, nil
}

// Check refreshes the list if it is due and reports whether the verified chains may be
// accepted (see CRLSet.Check); a chain-less connection (no client certificate) passes.
func (r *Revocations) Check(chains [][]*x509.Certificate) error {
	if len(chains) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked(false)
	if r.loadErr != nil {
		return fmt.Errorf("client certificates are refused while the CRL cannot be loaded: %w", r.loadErr)
	}
	return r.set.Check(chains, r.now())
}

// Err returns why client certificates are being refused wholesale (the file cannot be
// loaded, or a CA's list is past its next update), or nil. It refreshes too, so a
// readiness check sees a fixed file without waiting for a client.
func (r *Revocations) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked(false)
	if r.loadErr != nil {
		return r.loadErr
	}
	return r.expiredLocked()
}

// NextUpdate returns the earliest next update of the loaded lists, or the zero time
// when none is loaded.
func (r *Revocations) NextUpdate() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked(false)
	var first time.Time
	if r.set == nil {
		return first
	}
	for _, e := range r.set.byCA {
		if first.IsZero() || (!e.nextUpdate.IsZero() && e.nextUpdate.Before(first)) {
			first = e.nextUpdate
		}
	}
	return first
}

func (r *Revocations) expiredLocked() error {
	now := r.now()
	for _, e := range r.set.byCA {
		if !e.nextUpdate.IsZero() && now.After(e.nextUpdate) {
			return fmt.Errorf("%s: the CRL of %q expired at %s: issue a fresh one (`govx pki crl`)", r.path, e.issuer, e.nextUpdate.Format(time.RFC3339))
		}
	}
	return nil
}

func (r *Revocations) refreshLocked(force bool) {
	now := r.now()
	if !force && now.Sub(r.lastStat) < r.interval {
		return
	}
	r.lastStat = now
	fi, err := os.Stat(r.path)
	if err != nil {
		r.fail(fmt.Errorf("tls.crl: %w", err))
		return
	}
	if !force && r.loadErr == nil && fi.ModTime().Equal(r.modTime) && fi.Size() == r.size {
		return
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		r.fail(fmt.Errorf("tls.crl: %w", err))
		return
	}
	set, err := ParseCRLs(data, r.cas, now)
	if err != nil {
		r.fail(fmt.Errorf("tls.crl %s: %w", r.path, err))
		return
	}
	r.set, r.loadErr, r.modTime, r.size = set, nil, fi.ModTime(), fi.Size()
	if r.onRefresh != nil {
		r.onRefresh(nil)
	}
}

// fail records a load error. The list loaded before is dropped, not kept: a CRL that
// was replaced may have revoked more, and serving on the older list would accept those.
func (r *Revocations) fail(err error) {
	changed := r.loadErr == nil || r.loadErr.Error() != err.Error()
	r.set, r.loadErr, r.modTime, r.size = nil, err, time.Time{}, 0
	if changed && r.onRefresh != nil {
		r.onRefresh(err)
	}
}
