package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
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
//
// A CRL number only grows, so a list numbered lower than one already loaded for the
// same CA is a rollback (an old file copied back, or an attacker un-revoking a
// certificate): it is refused, the newer list stays in force and Err names both
// numbers. With WithNumbersFile the highest numbers survive a restart, so an exchange
// started onto an old list refuses every client certificate until a current one is in
// place. It is safe for concurrent use.
type Revocations struct {
	path     string
	cas      []*x509.Certificate
	interval time.Duration
	now      func() time.Time

	mu        sync.Mutex
	set       *CRLSet
	loadErr   error // the file cannot be used and no list is in force
	staleErr  error // the file is older than the list in force (a rollback), or its number could not be recorded
	highest   *crlNumbers
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

// WithNumbersFile keeps the highest CRL number loaded of each CA in path (the
// exchange's state directory), read at open and rewritten when a number grows. With
// readOnly (a config check) the file is read but never written.
func WithNumbersFile(path string, readOnly bool) RevocationsOption {
	return func(r *Revocations) { r.highest = &crlNumbers{path: path, readOnly: readOnly} }
}

// OpenRevocations opens the CRL file at path for the client CAs cas and loads it. It
// does not fail: a file that cannot be used at start refuses every client certificate
// as it would later, and Err says why (a config check treats that as an error).
func OpenRevocations(path string, cas []*x509.Certificate, opts ...RevocationsOption) *Revocations {
	r := &Revocations{path: path, cas: cas, interval: DefaultReloadInterval, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	if r.highest == nil {
		r.highest = &crlNumbers{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.highest.load()
	r.refreshLocked(true)
	return r
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

// Err returns why the CRL file is not in force: client certificates are refused
// wholesale (the file cannot be loaded, or a CA's list is past its next update), or the
// file is a rollback and the newer list loaded before stays in force. It refreshes too,
// so a readiness check sees a fixed file without waiting for a client.
func (r *Revocations) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked(false)
	if r.loadErr != nil {
		return r.loadErr
	}
	if r.staleErr != nil {
		return r.staleErr
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
	if r.highest.err != nil {
		r.fail(r.highest.err) // without the numbers a rollback would go unnoticed
		return
	}
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
	if err := r.highest.older(set); err != nil {
		err = fmt.Errorf("tls.crl %s: %w", r.path, err)
		if r.set == nil {
			r.fail(err) // nothing newer in force (a restart onto an old list): fail closed
			return
		}
		// The newer list stays in force; this file is not looked at again until it changes.
		r.modTime, r.size = fi.ModTime(), fi.Size()
		r.report(&r.staleErr, err)
		return
	}
	r.set, r.loadErr, r.modTime, r.size = set, nil, fi.ModTime(), fi.Size()
	r.staleErr = nil
	if err := r.highest.record(set); err != nil {
		// The list is good and in force; only its number is not kept across a restart.
		r.report(&r.staleErr, fmt.Errorf("tls.crl: the CRL number cannot be recorded, so a restart would not detect a rollback: %w", err))
		return
	}
	if r.onRefresh != nil {
		r.onRefresh(nil)
	}
}

// fail records a load error. The list loaded before is dropped, not kept: a CRL that
// was replaced may have revoked more, and serving on the older list would accept those.
func (r *Revocations) fail(err error) {
	r.set, r.modTime, r.size, r.staleErr = nil, time.Time{}, 0, nil
	r.report(&r.loadErr, err)
}

// report sets *slot to err and tells OnReload when the error is new.
func (r *Revocations) report(slot *error, err error) {
	changed := *slot == nil || (*slot).Error() != err.Error()
	*slot = err
	if changed && r.onRefresh != nil {
		r.onRefresh(err)
	}
}

// crlNumbers is the highest CRL number loaded of each CA, by the SHA-256 of the CA
// certificate, kept in a file when path is set.
type crlNumbers struct {
	path     string
	readOnly bool
	byCA     map[string]crlNumber
	err      error // the file could not be read: every client certificate is refused
}

type crlNumber struct {
	Issuer string `json:"issuer"` // for a reader of the file
	Number int64  `json:"number"`
}

func (n *crlNumbers) load() {
	n.byCA = map[string]crlNumber{}
	if n.path == "" {
		return
	}
	data, err := os.ReadFile(n.path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil {
		err = json.Unmarshal(data, &n.byCA)
	}
	if err != nil {
		n.err = fmt.Errorf("CRL numbers file %s (the highest CRL number loaded of each CA; fix or remove it): %w", n.path, err)
	}
}

// older returns an error naming both numbers when a CA's list in set is numbered lower
// than one loaded before.
func (n *crlNumbers) older(set *CRLSet) error {
	for id, e := range set.byCA {
		if prev, ok := n.byCA[hex.EncodeToString(id[:])]; ok && e.number < prev.Number {
			return fmt.Errorf("the CRL of %q is number %d, older than number %d loaded before: refused (a rollback un-revokes certificates); publish the current CRL (`govx pki crl`)",
				e.issuer, e.number, prev.Number)
		}
	}
	return nil
}

// record raises the numbers to set's and writes the file when one grew.
func (n *crlNumbers) record(set *CRLSet) error {
	grew := false
	for id, e := range set.byCA {
		key := hex.EncodeToString(id[:])
		if prev, ok := n.byCA[key]; !ok || e.number > prev.Number {
			n.byCA[key] = crlNumber{Issuer: e.issuer, Number: e.number}
			grew = true
		}
	}
	if !grew || n.path == "" || n.readOnly {
		return nil
	}
	data, err := json.MarshalIndent(n.byCA, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(n.path, append(data, '\n'), 0o600)
}
