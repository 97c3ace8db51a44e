// Package pki is the department PKI of an exchange: a certificate authority kept in a
// state directory, the exchange's server certificates, one client certificate per
// department system (common name "DEPT/SYSTEM", the subject exchange/auth reads), and
// revocation published as a signed X.509 CRL. The exchange side (Revocations) loads that
// CRL, reloads it when the file changes and refuses revoked client certificates.
//
// Keys are ECDSA P-256 throughout: Go's crypto/tls, gRPC's C++ core (pyarrow.flight) and
// every browser and proxy accept it, which Ed25519 certificates are not yet everywhere.
//
// `govx pki` and exchange/server import it.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"govx/exchange/auth"
)

// Files of a CA state directory.
const (
	CertFile  = "ca.pem"  // the CA certificate: what exchanges use as tls.client_ca and clients as their root
	KeyFile   = "ca.key"  // the CA's private key (mode 0600); it never leaves the directory
	StateFile = "ca.json" // every certificate issued, its serial and revocation
	CRLFile   = "crl.pem" // the latest CRL, rewritten by every revoke and crl
	lockFile  = "ca.lock"
	certsDir  = "certs" // a copy of every issued certificate, by serial (no keys)
)

// Kinds of certificate the CA issues.
const (
	KindServer = "server"
	KindClient = "client"
)

// Default validities.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 397 * 24 * time.Hour // the longest public CAs issue; rotate yearly
	DefaultCRLValidity  = 7 * 24 * time.Hour
	defaultBackdate     = 5 * time.Minute // tolerate clocks a little behind the CA's
	serialBits          = 128
)

// ErrNoCA is returned when a directory holds no CA (run `govx pki init`).
var ErrNoCA = errors.New("no CA in this directory: create one with `govx pki init --ca DIR`")

// Record is what the CA keeps of one certificate it issued.
type Record struct {
	Serial    string    `json:"serial"` // lower-case hex, as Serial formats it
	Kind      string    `json:"kind"`
	Subject   string    `json:"subject"` // the common name: a host name for servers, DEPT/SYSTEM for clients
	DNSNames  []string  `json:"dns_names,omitempty"`
	IPs       []string  `json:"ips,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
}

// Revoked reports whether the certificate was revoked.
func (r Record) Revoked() bool { return !r.RevokedAt.IsZero() }

type state struct {
	// NextCRLNumber is the number the next CRL carries: CRL numbers only grow, so a
	// relying party can tell the newer of two lists.
	NextCRLNumber int64    `json:"next_crl_number"`
	Certificates  []Record `json:"certificates"`
}

// CA is a certificate authority opened from its state directory. Its methods take the
// directory's lock, so two `govx pki` commands never issue from or revoke in the same
// state at once.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  crypto.Signer
	now  func() time.Time
}

// Option adjusts a CA.
type Option func(*CA)

// WithClock sets the clock used for validity periods and revocation times (tests).
func WithClock(now func() time.Time) Option { return func(c *CA) { c.now = now } }

// InitOptions name and date a new CA.
type InitOptions struct {
	Name         string        // the CA's common name, e.g. "浙江省政务数据共享 CA"
	Organization string        // optional
	Validity     time.Duration // default DefaultCAValidity
}

// Init creates a CA in dir (created if missing, mode 0700). It refuses a directory that
// already holds a CA: overwriting one would orphan every certificate it issued.
func Init(dir string, o InitOptions, opts ...Option) (*CA, error) {
	if strings.TrimSpace(o.Name) == "" {
		return nil, errors.New("pki init: name the CA (--name)")
	}
	if o.Validity == 0 {
		o.Validity = DefaultCAValidity
	}
	if o.Validity < 0 {
		return nil, errors.New("pki init: validity must be positive")
	}
	if err := os.MkdirAll(filepath.Join(dir, certsDir), 0o700); err != nil {
		return nil, err
	}
	unlock, err := lock(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, f := range []string{CertFile, KeyFile, StateFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("pki init: %s already holds a CA (%s); refusing to replace it", dir, f)
		}
	}
	c := &CA{dir: dir, now: time.Now}
	for _, opt := range opts {
		opt(c)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := c.now()
	subj := pkix.Name{CommonName: o.Name}
	if o.Organization != "" {
		subj.Organization = []string{o.Organization}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subj,
		NotBefore: now.Add(-defaultBackdate), NotAfter: now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true,
		// No intermediates: every certificate is issued by this CA directly, so a chain
		// is always leaf + CA and one CRL covers it.
		MaxPathLen: 0, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	// The key first: a directory with a certificate but no key is worse than none.
	if err := writeAtomic(filepath.Join(dir, KeyFile), pemBytes("PRIVATE KEY", keyDER), 0o600); err != nil {
		return nil, err
	}
	if err := writeAtomic(filepath.Join(dir, CertFile), pemBytes("CERTIFICATE", der), 0o644); err != nil {
		return nil, err
	}
	if err := c.saveState(&state{NextCRLNumber: 1}); err != nil {
		return nil, err
	}
	c.cert, _ = x509.ParseCertificate(der)
	c.key = key
	if _, err := c.writeCRLLocked(DefaultCRLValidity); err != nil {
		return nil, err
	}
	return c, nil
}

// Open opens the CA in dir.
func Open(dir string, opts ...Option) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoCA)
	}
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(certPEM)
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("%s: want exactly one CA certificate (%v)", filepath.Join(dir, CertFile), err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM PRIVATE KEY", filepath.Join(dir, KeyFile))
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, KeyFile), err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", filepath.Join(dir, KeyFile))
	}
	if !publicKeysEqual(signer.Public(), certs[0].PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", KeyFile, CertFile)
	}
	c := &CA{dir: dir, cert: certs[0], key: signer, now: time.Now}
	for _, opt := range opts {
		opt(c)
	}
	return c, nil
}

// Certificate returns the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Dir returns the CA's state directory.
func (c *CA) Dir() string { return c.dir }

// Issued is a certificate just issued, with its private key: the key is handed to the
// caller once and never kept by the CA.
type Issued struct {
	Record  Record
	CertPEM []byte // the certificate followed by the CA certificate (a full chain)
	KeyPEM  []byte // PKCS#8
}

// IssueServer issues a server certificate for an exchange: name is its common name,
// hosts its DNS names and IP addresses (at least one; clients verify one of them).
func (c *CA) IssueServer(name string, hosts []string, validity time.Duration) (*Issued, error) {
	if len(hosts) == 0 {
		return nil, errors.New("a server certificate needs at least one host name or IP address (--host)")
	}
	if name == "" {
		name = hosts[0]
	}
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: name}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if h == "" || strings.ContainsAny(h, " /:@") {
			return nil, fmt.Errorf("host %q: want a DNS name or an IP address", h)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(h))
	}
	return c.issue(KindServer, tmpl, validity)
}

// IssueClient issues the client certificate of one department system. subject is
// "DEPT/SYSTEM", parsed as exchange/auth parses it, and becomes the common name (what
// the exchange maps to the caller), with the department as organization and the system
// as organizational unit for people reading the certificate.
func (c *CA) IssueClient(subject string, validity time.Duration) (*Issued, error) {
	subj, err := auth.ParseSubject(subject)
	if err != nil {
		return nil, err
	}
	if subj.System == "" {
		return nil, fmt.Errorf("subject %q: a client certificate is for one department system: DEPT/SYSTEM, e.g. mz-3301/dibao-review", subject)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: subj.Department + "/" + subj.System, Organization: []string{subj.Department}, OrganizationalUnit: []string{subj.System}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return c.issue(KindClient, tmpl, validity)
}

func (c *CA) issue(kind string, tmpl *x509.Certificate, validity time.Duration) (*Issued, error) {
	if validity == 0 {
		validity = DefaultCertValidity
	}
	if validity < 0 {
		return nil, errors.New("validity must be positive")
	}
	unlock, err := lock(c.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := c.loadState()
	if err != nil {
		return nil, err
	}
	now := c.now()
	notAfter := now.Add(validity)
	if notAfter.After(c.cert.NotAfter) {
		return nil, fmt.Errorf("the certificate would outlive the CA (valid until %s): shorten --valid or rotate the CA", c.cert.NotAfter.Format(time.DateOnly))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-defaultBackdate), notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	rec := Record{Serial: Serial(tmpl.SerialNumber), Kind: kind, Subject: tmpl.Subject.CommonName, DNSNames: tmpl.DNSNames,
		NotBefore: tmpl.NotBefore.UTC(), NotAfter: tmpl.NotAfter.UTC()}
	for _, ip := range tmpl.IPAddresses {
		rec.IPs = append(rec.IPs, ip.String())
	}
	certPEM := pemBytes("CERTIFICATE", der)
	if err := writeAtomic(filepath.Join(c.dir, certsDir, rec.Serial+".pem"), certPEM, 0o644); err != nil {
		return nil, err
	}
	st.Certificates = append(st.Certificates, rec)
	if err := c.saveState(st); err != nil {
		return nil, err
	}
	chain := append(certPEM, pemBytes("CERTIFICATE", c.cert.Raw)...)
	return &Issued{Record: rec, CertPEM: chain, KeyPEM: pemBytes("PRIVATE KEY", keyDER)}, nil
}

// List returns every certificate the CA issued, oldest first.
func (c *CA) List() ([]Record, error) {
	st, err := c.loadState()
	if err != nil {
		return nil, err
	}
	return st.Certificates, nil
}

// Reasons are the CRL reason codes `govx pki revoke --reason` accepts (RFC 5280 5.3.1).
var Reasons = map[string]int{
	"unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3,
	"superseded": 4, "cessationOfOperation": 5, "certificateHold": 6, "privilegeWithdrawn": 9,
}

// Revoke revokes the certificate with serial (hex, colons and case ignored) and writes
// a new CRL, valid for crlValidity. Revoking a revoked certificate is an error, so a
// mistyped serial is never taken for success.
func (c *CA) Revoke(serial, reason string, crlValidity time.Duration) (Record, error) {
	want, err := normalizeSerial(serial)
	if err != nil {
		return Record{}, err
	}
	if reason == "" {
		reason = "unspecified"
	}
	if _, ok := Reasons[reason]; !ok {
		return Record{}, fmt.Errorf("reason %q: want one of %s", reason, strings.Join(slices.Sorted(maps.Keys(Reasons)), ", "))
	}
	unlock, err := lock(c.dir)
	if err != nil {
		return Record{}, err
	}
	defer unlock()
	st, err := c.loadState()
	if err != nil {
		return Record{}, err
	}
	i := slices.IndexFunc(st.Certificates, func(r Record) bool { return r.Serial == want })
	if i < 0 {
		return Record{}, fmt.Errorf("serial %s: this CA issued no such certificate (see `govx pki list`)", want)
	}
	if st.Certificates[i].Revoked() {
		return Record{}, fmt.Errorf("serial %s (%s) was already revoked at %s", want, st.Certificates[i].Subject,
			st.Certificates[i].RevokedAt.Format(time.RFC3339))
	}
	st.Certificates[i].RevokedAt, st.Certificates[i].Reason = c.now().UTC().Truncate(time.Second), reason
	if err := c.saveState(st); err != nil {
		return Record{}, err
	}
	if _, err := c.writeCRLLocked(crlValidity); err != nil {
		return Record{}, fmt.Errorf("revoked %s, but writing the CRL failed (run `govx pki crl` again): %w", want, err)
	}
	return st.Certificates[i], nil
}

// WriteCRL signs a new CRL of every revoked certificate, valid for validity (default
// DefaultCRLValidity), writes it to the state directory's crl.pem and returns it. An
// exchange refuses client certificates once its CRL is past its next update, so run it
// well within the validity (a timer; see docs/operations.md).
func (c *CA) WriteCRL(validity time.Duration) ([]byte, error) {
	unlock, err := lock(c.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return c.writeCRLLocked(validity)
}

func (c *CA) writeCRLLocked(validity time.Duration) ([]byte, error) {
	if validity == 0 {
		validity = DefaultCRLValidity
	}
	if validity < 0 {
		return nil, errors.New("CRL validity must be positive")
	}
	st, err := c.loadState()
	if err != nil {
		return nil, err
	}
	now := c.now()
	tmpl := &x509.RevocationList{Number: big.NewInt(st.NextCRLNumber), ThisUpdate: now.Add(-defaultBackdate), NextUpdate: now.Add(validity)}
	for _, r := range st.Certificates {
		if !r.Revoked() || r.NotAfter.Before(now) {
			// An expired certificate is refused anyway; listing it only grows the CRL.
			continue
		}
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("state: bad serial %q", r.Serial)
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: n, RevocationTime: r.RevokedAt, ReasonCode: Reasons[r.Reason]})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, c.cert, c.key)
	if err != nil {
		return nil, err
	}
	out := pemBytes("X509 CRL", der)
	if err := writeAtomic(filepath.Join(c.dir, CRLFile), out, 0o644); err != nil {
		return nil, err
	}
	st.NextCRLNumber++
	if err := c.saveState(st); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *CA) loadState() (*state, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, StateFile))
	if err != nil {
		return nil, fmt.Errorf("CA state: %w", err)
	}
	var st state
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("CA state %s: %w", filepath.Join(c.dir, StateFile), err)
	}
	if st.NextCRLNumber < 1 {
		return nil, fmt.Errorf("CA state %s: next_crl_number must be positive", filepath.Join(c.dir, StateFile))
	}
	return &st, nil
}

func (c *CA) saveState(st *state) error {
	if st.Certificates == nil {
		st.Certificates = []Record{}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(c.dir, StateFile), append(b, '\n'), 0o600)
}

// Serial formats a certificate serial number as the CA records it: lower-case hex.
func Serial(n *big.Int) string { return n.Text(16) }

func normalizeSerial(s string) (string, error) {
	t := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	t = strings.TrimPrefix(t, "0x")
	if t == "" {
		return "", errors.New("name the serial to revoke (see `govx pki list`)")
	}
	if _, err := hex.DecodeString(strings.Repeat("0", len(t)%2) + t); err != nil {
		return "", fmt.Errorf("serial %q: want hexadecimal, as `govx pki list` shows it", s)
	}
	n, _ := new(big.Int).SetString(t, 16)
	return Serial(n), nil
}

// newSerial returns a random positive serial of serialBits bits: unpredictable serials
// are what CA/Browser Forum rules ask for, and collisions are out of reach.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), serialBits))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

// ParseCertificates returns every CERTIFICATE block of a PEM bundle; anything else in
// it, or no certificate at all, is an error.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q; want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeAtomic replaces path with data: a reader (an exchange reloading its CRL) sees
// the old file or the new one, never half of either.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
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

// WriteFile writes a certificate or key the way the CA writes its own: atomically,
// keys 0600.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeAtomic(path, data, mode)
}

// lock takes the state directory's exclusive lock (flock), released by the returned
// function; the kernel drops it if the process dies.
func lock(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoCA)
	}
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
