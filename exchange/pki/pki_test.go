package pki

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"govx/exchange"
	"govx/exchange/auth"
)

func newCA(t *testing.T, name string, opts ...Option) *CA {
	t.Helper()
	ca, err := Init(filepath.Join(t.TempDir(), "ca"), InitOptions{Name: name}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// verify verifies an issued chain against the CA as crypto/tls would, for usage.
func verify(t *testing.T, ca *CA, is *Issued, usage x509.ExtKeyUsage) [][]*x509.Certificate {
	t.Helper()
	certs, err := ParseCertificates(is.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		t.Fatalf("%s does not verify against its CA: %v", is.Record.Subject, err)
	}
	return chains
}

func TestPKIIssueRecordsAndMapsSubjects(t *testing.T) {
	ca := newCA(t, "govx test CA")
	srv, err := ca.IssueServer("exchange", []string{"127.0.0.1", "Exchange.govx.svc", "::1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, ca, srv, x509.ExtKeyUsageServerAuth)
	if strings.Join(srv.Record.DNSNames, ",") != "exchange.govx.svc" || strings.Join(srv.Record.IPs, ",") != "127.0.0.1,::1" {
		t.Errorf("server SANs recorded as %v %v", srv.Record.DNSNames, srv.Record.IPs)
	}
	cl, err := ca.IssueClient("mz-3301/dibao-review", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	chains := verify(t, ca, cl, x509.ExtKeyUsageClientAuth)
	leaf := chains[0][0]
	// The exchange maps the certificate to the caller exactly as it maps a token.
	subj, err := auth.CertSubject(leaf)
	if err != nil || subj != (exchange.Subject{Department: "mz-3301", System: "dibao-review"}) {
		t.Fatalf("client certificate maps to %+v, %v", subj, err)
	}
	if leaf.Subject.Organization[0] != "mz-3301" || leaf.Subject.OrganizationalUnit[0] != "dibao-review" {
		t.Errorf("client subject %v: want the department as O and the system as OU", leaf.Subject)
	}
	if _, err := certsOf(t, cl)[0].Verify(x509.VerifyOptions{Roots: pool(ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verifies as a server certificate")
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 24*time.Hour || got > 25*time.Hour {
		t.Errorf("client validity %v, want a day (plus the backdating)", got)
	}

	// Both are recorded under their serials, the certificates copied beside the state.
	reopened, err := Open(ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := reopened.List()
	if err != nil || len(recs) != 2 || recs[0].Serial != Serial(certsOf(t, srv)[0].SerialNumber) || recs[1].Kind != KindClient || recs[1].Subject != "mz-3301/dibao-review" {
		t.Fatalf("recorded %+v, %v", recs, err)
	}
	if _, err := os.Stat(filepath.Join(ca.Dir(), "certs", recs[1].Serial+".pem")); err != nil {
		t.Errorf("issued certificate not kept: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(ca.Dir(), KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode: %v, %v", fi.Mode(), err)
	}
}

func TestPKIRefusesBadRequests(t *testing.T) {
	ca := newCA(t, "govx test CA")
	if _, err := Init(ca.Dir(), InitOptions{Name: "again"}); err == nil || !strings.Contains(err.Error(), "already holds a CA") {
		t.Errorf("init over a CA: %v", err)
	}
	if _, err := Open(t.TempDir()); !errors.Is(err, ErrNoCA) {
		t.Errorf("open an empty directory: %v", err)
	}
	for _, tt := range []struct{ subject, want string }{
		{"mz-3301", "a client certificate is for one department system"},
		{"MZ/x", "department \"MZ\""},
		{"mz-3301/", "a system name must follow"},
	} {
		if _, err := ca.IssueClient(tt.subject, 0); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("client %q: %v, want %q", tt.subject, err, tt.want)
		}
	}
	if _, err := ca.IssueServer("x", nil, 0); err == nil {
		t.Error("a server certificate without hosts was issued")
	}
	if _, err := ca.IssueServer("x", []string{"https://x"}, 0); err == nil {
		t.Error("a URL taken for a host name")
	}
	if _, err := ca.IssueClient("mz-3301/a", 20*365*24*time.Hour); err == nil || !strings.Contains(err.Error(), "outlive the CA") {
		t.Errorf("a certificate outliving the CA: %v", err)
	}
	if _, err := ca.Revoke("ab12", "", 0); err == nil || !strings.Contains(err.Error(), "no such certificate") {
		t.Errorf("revoke an unknown serial: %v", err)
	}
	if _, err := ca.Revoke("xyz", "", 0); err == nil || !strings.Contains(err.Error(), "hexadecimal") {
		t.Errorf("revoke a non-hex serial: %v", err)
	}
	if recs, _ := ca.List(); len(recs) != 0 {
		t.Errorf("refused requests recorded certificates: %+v", recs)
	}
}

func TestPKIRevokeWritesSignedCRL(t *testing.T) {
	ca := newCA(t, "govx test CA")
	a, _ := ca.IssueClient("mz-3301/dibao-review", 0)
	b, _ := ca.IssueClient("rs-3301/pension", 0)
	ca0 := mustRead(t, filepath.Join(ca.Dir(), CRLFile))
	set, err := ParseCRLs(ca0, []*x509.Certificate{ca.Certificate()}, time.Now())
	if err != nil {
		t.Fatalf("init's empty CRL: %v", err)
	}
	if err := set.Check(chainsOf(t, ca, a), time.Now()); err != nil {
		t.Fatalf("nothing revoked yet: %v", err)
	}
	// Serials are accepted as `openssl x509 -serial` prints them too: upper case, colons.
	colon := strings.ToUpper(a.Record.Serial)
	if len(colon) > 2 {
		colon = colon[:2] + ":" + colon[2:]
	}
	rec, err := ca.Revoke(colon, "keyCompromise", time.Hour)
	if err != nil || !rec.Revoked() || rec.Reason != "keyCompromise" {
		t.Fatalf("revoke: %+v, %v", rec, err)
	}
	crlPEM := mustRead(t, filepath.Join(ca.Dir(), CRLFile))
	set, err = ParseCRLs(crlPEM, []*x509.Certificate{ca.Certificate()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Check(chainsOf(t, ca, a), time.Now()); !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), a.Record.Serial) {
		t.Errorf("revoked certificate: %v", err)
	}
	if err := set.Check(chainsOf(t, ca, b), time.Now()); err != nil {
		t.Errorf("a certificate not revoked: %v", err)
	}
	if _, err := ca.Revoke(a.Record.Serial, "", 0); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Errorf("revoke twice: %v", err)
	}
	// The newer of two lists of one CA counts, whichever order they come in: a CRL
	// number only grows.
	both := append(append([]byte{}, crlPEM...), ca0...)
	set, err = ParseCRLs(both, []*x509.Certificate{ca.Certificate()}, time.Now())
	if err != nil || !errors.Is(set.Check(chainsOf(t, ca, a), time.Now()), ErrRevoked) {
		t.Errorf("newest CRL not the one used: %v", err)
	}
	// Past its next update the list refuses every certificate of the CA.
	if err := set.Check(chainsOf(t, ca, b), time.Now().Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired CRL: %v", err)
	}
}

func TestPKICRLMustComeFromTheClientCAs(t *testing.T) {
	ca, other := newCA(t, "govx test CA"), newCA(t, "another CA")
	otherCRL := mustRead(t, filepath.Join(other.Dir(), CRLFile))
	if _, err := ParseCRLs(otherCRL, []*x509.Certificate{ca.Certificate()}, time.Now()); err == nil || !strings.Contains(err.Error(), "not signed by any CA") {
		t.Errorf("a CRL of another CA: %v", err)
	}
	crl := mustRead(t, filepath.Join(ca.Dir(), CRLFile))
	cas := []*x509.Certificate{ca.Certificate(), other.Certificate()}
	if _, err := ParseCRLs(crl, cas, time.Now()); err == nil || !strings.Contains(err.Error(), `no CRL of CA "another CA"`) {
		t.Errorf("a client CA without its CRL: %v", err)
	}
	// While a CA is rotated both lists sit in one file.
	set, err := ParseCRLs(append(crl, otherCRL...), cas, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	o, _ := other.IssueClient("mz-3301/a", 0)
	if err := set.Check(chainsOf(t, other, o), time.Now()); err != nil {
		t.Errorf("certificate of the second CA: %v", err)
	}
	tampered := append([]byte{}, crl...)
	tampered[len(tampered)/2] ^= 1
	if _, err := ParseCRLs(tampered, []*x509.Certificate{ca.Certificate()}, time.Now()); err == nil {
		t.Error("a damaged CRL loaded")
	}
	if _, err := ParseCRLs(mustRead(t, filepath.Join(ca.Dir(), CertFile)), []*x509.Certificate{ca.Certificate()}, time.Now()); err == nil {
		t.Error("a certificate loaded as a CRL")
	}
}

func TestPKIRevocationsReloadAndFailClosed(t *testing.T) {
	var now time.Time
	clock := func() time.Time { return now }
	now = time.Now()
	ca := newCA(t, "govx test CA", WithClock(clock))
	a, _ := ca.IssueClient("mz-3301/dibao-review", 0)
	crlPath := filepath.Join(t.TempDir(), "crl.pem")
	copyFile(t, filepath.Join(ca.Dir(), CRLFile), crlPath)

	var reloads []error
	r := OpenRevocations(crlPath, []*x509.Certificate{ca.Certificate()}, WithReloadInterval(time.Second),
		WithRevocationsClock(clock), OnReload(func(err error) { reloads = append(reloads, err) }))
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(chainsOf(t, ca, a)); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Revoke(a.Record.Serial, "", 0); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(ca.Dir(), CRLFile), crlPath)
	// Within the interval the file is not looked at again; after it, it is.
	if err := r.Check(chainsOf(t, ca, a)); err != nil {
		t.Fatalf("file looked at before the interval: %v", err)
	}
	now = now.Add(time.Second)
	if err := r.Check(chainsOf(t, ca, a)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after the interval: %v, want revoked", err)
	}
	if err := r.Check(nil); err != nil {
		t.Errorf("a connection without a certificate: %v", err)
	}
	// A damaged file refuses every certificate, not just the revoked ones, until fixed.
	b, _ := ca.IssueClient("rs-3301/pension", 0)
	if err := os.WriteFile(crlPath, []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if err := r.Check(chainsOf(t, ca, b)); err == nil || !strings.Contains(err.Error(), "cannot be loaded") {
		t.Errorf("damaged CRL: %v, want every certificate refused", err)
	}
	if r.Err() == nil {
		t.Error("Err is nil while the CRL cannot be loaded")
	}
	os.Remove(crlPath)
	now = now.Add(time.Second)
	if err := r.Check(chainsOf(t, ca, b)); err == nil {
		t.Error("missing CRL: a certificate accepted")
	}
	copyFile(t, filepath.Join(ca.Dir(), CRLFile), crlPath)
	now = now.Add(time.Second)
	if err := r.Check(chainsOf(t, ca, b)); err != nil || r.Err() != nil {
		t.Errorf("CRL restored: %v, %v", err, r.Err())
	}
	// Past its next update: refused, and Err says to issue a fresh one.
	now = now.Add(DefaultCRLValidity + time.Minute)
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "govx pki crl") {
		t.Errorf("expired CRL: Err %v", err)
	}
	if err := r.Check(chainsOf(t, ca, b)); err == nil {
		t.Error("expired CRL: a certificate accepted")
	}
	// Loaded, reloaded with the revocation, damaged, missing, restored.
	if len(reloads) != 5 || reloads[1] != nil || reloads[2] == nil || reloads[3] == nil || reloads[4] != nil {
		t.Errorf("reloads reported: %v", reloads)
	}
	missing := OpenRevocations(filepath.Join(t.TempDir(), "none.pem"), []*x509.Certificate{ca.Certificate()})
	if missing.Err() == nil || missing.Check(chainsOf(t, ca, b)) == nil {
		t.Error("a missing CRL at start: a certificate accepted")
	}
}

// TestPKIRevocationsRefuseRollback: a CRL numbered lower than one loaded before (an old
// file copied back) does not un-revoke: the newer list stays in force and Err names both
// numbers; after a restart (the numbers file) the old list refuses every certificate.
func TestPKIRevocationsRefuseRollback(t *testing.T) {
	var now time.Time
	clock := func() time.Time { return now }
	now = time.Now()
	ca := newCA(t, "govx test CA", WithClock(clock))
	a, _ := ca.IssueClient("mz-3301/dibao-review", 0)
	b, _ := ca.IssueClient("rs-3301/pension", 0)
	dir := t.TempDir()
	oldCRL, crlPath, numbers := filepath.Join(dir, "old.pem"), filepath.Join(dir, "crl.pem"), filepath.Join(dir, "state", "crl-numbers.json")
	copyFile(t, filepath.Join(ca.Dir(), CRLFile), oldCRL)
	if _, err := ca.Revoke(a.Record.Serial, "keyCompromise", 0); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(ca.Dir(), CRLFile), crlPath)
	cas := []*x509.Certificate{ca.Certificate()}
	var reloads []error
	r := OpenRevocations(crlPath, cas, WithRevocationsClock(clock), WithNumbersFile(numbers, false),
		OnReload(func(err error) { reloads = append(reloads, err) }))
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, oldCRL, crlPath)
	now = now.Add(time.Second)
	if err := r.Check(chainsOf(t, ca, a)); !errors.Is(err, ErrRevoked) {
		t.Errorf("after a rollback to the older CRL the revoked certificate: %v, want still revoked", err)
	}
	if err := r.Check(chainsOf(t, ca, b)); err != nil {
		t.Errorf("after a rollback a certificate not revoked: %v", err)
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "number 1, older than number 2") {
		t.Errorf("Err after a rollback: %v, want both numbers named", err)
	}
	if len(reloads) != 2 || reloads[1] == nil {
		t.Errorf("rollback not reported to OnReload: %v", reloads)
	}
	// A restart onto the old list: nothing newer in force, so every certificate is refused.
	check := OpenRevocations(crlPath, cas, WithNumbersFile(numbers, true))
	if err := check.Err(); err == nil || !strings.Contains(err.Error(), "older than number 2") {
		t.Errorf("restart onto the older CRL: Err %v", err)
	}
	if err := check.Check(chainsOf(t, ca, b)); err == nil {
		t.Error("restart onto the older CRL: a certificate accepted")
	}
	// The current list back: accepted, in force, no error.
	copyFile(t, filepath.Join(ca.Dir(), CRLFile), crlPath)
	now = now.Add(time.Second)
	if err := r.Err(); err != nil {
		t.Errorf("current CRL restored: %v", err)
	}
	// A damaged numbers file refuses every certificate rather than forget the numbers.
	if err := os.WriteFile(numbers, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	damaged := OpenRevocations(crlPath, cas, WithNumbersFile(numbers, false))
	if err := damaged.Err(); err == nil || !strings.Contains(err.Error(), "CRL numbers file") {
		t.Errorf("damaged numbers file: %v", err)
	}
}

func certsOf(t *testing.T, is *Issued) []*x509.Certificate {
	t.Helper()
	certs, err := ParseCertificates(is.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func pool(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Certificate())
	return p
}

func chainsOf(t *testing.T, ca *CA, is *Issued) [][]*x509.Certificate {
	return verify(t, ca, is, x509.ExtKeyUsageClientAuth)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyFile replaces dst with src's bytes the way an operator's deployment does: a new
// file renamed over the old one.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := WriteFile(dst, mustRead(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
}
