package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"govx/exchange"
	"govx/exchange/auth"
	"govx/exchange/client"
	"govx/exchange/pki"
	"govx/exchange/server/servertest"
	"govx/internal/testenv"
)

// departmentPKI is a CA made by exchange/pki as `govx pki` makes it, the exchange's
// server certificate and key, and the CRL file the exchange reads (tls.crl), kept apart
// from the CA's own copy as on a real exchange host.
type departmentPKI struct {
	t       *testing.T
	ca      *pki.CA
	dir     string
	crlPath string
	roots   *x509.CertPool
}

func newDepartmentPKI(t *testing.T, name string) *departmentPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Init(filepath.Join(dir, "ca"), pki.InitOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	p := &departmentPKI{t: t, ca: ca, dir: dir, crlPath: filepath.Join(dir, "tls", "crl.pem"), roots: x509.NewCertPool()}
	p.roots.AddCert(ca.Certificate())
	srv, err := ca.IssueServer("exchange", []string{"127.0.0.1", "localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.write("tls/server.pem", srv.CertPEM)
	p.write("tls/server.key", srv.KeyPEM)
	p.publishCRL()
	return p
}

func (p *departmentPKI) write(rel string, data []byte) {
	p.t.Helper()
	if err := pki.WriteFile(filepath.Join(p.dir, rel), data, 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// publishCRL copies the CA's current CRL to the exchange's tls.crl, atomically.
func (p *departmentPKI) publishCRL() {
	p.t.Helper()
	data, err := os.ReadFile(filepath.Join(p.ca.Dir(), pki.CRLFile))
	if err != nil {
		p.t.Fatal(err)
	}
	if err := pki.WriteFile(p.crlPath, data, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// configure points the exchange's TLS at this PKI.
func (p *departmentPKI) configure(cfg *Config) {
	cfg.TLS.Cert, cfg.TLS.Key = filepath.Join(p.dir, "tls/server.pem"), filepath.Join(p.dir, "tls/server.key")
	cfg.TLS.ClientCA, cfg.TLS.CRL = filepath.Join(p.ca.Dir(), pki.CertFile), p.crlPath
}

// client issues a client certificate for subject and returns it with a TLS config that
// trusts this PKI's CA for the server (roots may name another CA's pool).
func (p *departmentPKI) client(subject string) (*pki.Issued, *tls.Config) {
	p.t.Helper()
	is, err := p.ca.IssueClient(subject, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return is, &tls.Config{Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// httpsGet is a plain Go HTTPS client: a new connection each time, no keep-alive.
func httpsGet(x *Exchange, tc *tls.Config, path string) (int, string, error) {
	tr := &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + x.HTTPAddr() + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

func withRoots(tc *tls.Config, roots *x509.CertPool) *tls.Config {
	c := tc.Clone()
	c.RootCAs = roots
	return c
}

// TestPKIMutualTLSRevocation: certificates from `govx pki` authenticate department
// systems over Flight and HTTPS; a revoked one is refused within seconds, on new
// connections and on the connection it already held, without restarting the exchange;
// one from another CA never completes a handshake; an unusable CRL refuses every
// certificate and says so on /readyz.
func TestPKIMutualTLSRevocation(t *testing.T) {
	p := newDepartmentPKI(t, "govx test CA")
	x, _, mem := inProcess(t, p.configure, func(c *Config) { c.Ops.Listen = "127.0.0.1:0" })
	defer func() {
		if err := x.Close(); err != nil {
			t.Error(err)
		}
		mem.AssertSize(t, 0)
	}()
	dibao, dibaoTLS := p.client("mz-3301/dibao-review")
	_, otherTLS := p.client("mz-3201/case-system")
	dibaoTLS, otherTLS = withRoots(dibaoTLS, p.roots), withRoots(otherTLS, p.roots)

	held, err := client.New(client.Config{Flight: x.FlightAddr(), HTTP: "https://" + x.HTTPAddr(), TLS: dibaoTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	pull := exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao}
	rows, _, _, err := servertest.Pull(t, held, pull)
	if err != nil || len(rows) == 0 {
		t.Fatalf("Flight pull with a certificate from govx pki: %d rows, %v", len(rows), err)
	}
	for _, r := range rows {
		if !strings.HasPrefix(r["household_region"], "3301") {
			t.Fatalf("certificate subject not scoped as mz-3301: %v", r)
		}
	}
	if code, body, err := httpsGet(x, dibaoTLS, "/v1/catalog"); err != nil || code != 200 || !strings.Contains(body, "population.person") {
		t.Fatalf("HTTPS catalog with the certificate: %d %q %v", code, body, err)
	}

	// Revoke, publish the CRL where the exchange reads it, and time until refusal.
	if _, err := p.ca.Revoke(dibao.Record.Serial, "keyCompromise", 0); err != nil {
		t.Fatal(err)
	}
	p.publishCRL()
	revoked := time.Now()
	testenv.WaitFor(t, 10*time.Second, "a new connection with the revoked certificate refused", func() bool {
		_, _, err := httpsGet(x, dibaoTLS, "/v1/catalog")
		return err != nil
	})
	if took := time.Since(revoked); took > 3*time.Second {
		t.Errorf("revocation took %v to take effect; the exchange looks at its CRL every second", took)
	}
	_, _, err = httpsGet(x, dibaoTLS, "/v1/catalog")
	if err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("HTTPS with a revoked certificate: %v, want the handshake refused", err)
	}
	fresh, err := client.New(client.Config{Flight: x.FlightAddr(), HTTP: "https://" + x.HTTPAddr(), TLS: dibaoTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if rows, _, _, err := servertest.Pull(t, fresh, pull); err == nil {
		t.Errorf("Flight on a new connection with a revoked certificate: %d rows", len(rows))
	}
	// The connection opened before the revocation is still up: its next call is refused.
	if rows, _, _, err := servertest.Pull(t, held, pull); codeOf(err) != "unauthenticated" || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("Flight call on the connection held since before the revocation: %d rows, %v", len(rows), err)
	}
	// Another system of the same CA is unaffected.
	if code, _, err := httpsGet(x, otherTLS, "/v1/catalog"); err != nil || code != 200 {
		t.Errorf("a certificate not revoked: %d %v", code, err)
	}

	// A certificate from another CA, for the same subject: no handshake.
	foreign := newDepartmentPKI(t, "govx test CA")
	_, foreignTLS := foreign.client("mz-3301/dibao-review")
	if _, _, err := httpsGet(x, withRoots(foreignTLS, p.roots), "/v1/catalog"); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("HTTPS with another CA's certificate: %v, want the handshake refused", err)
	}
	fc, err := client.New(client.Config{Flight: x.FlightAddr(), HTTP: "https://" + x.HTTPAddr(), TLS: withRoots(foreignTLS, p.roots)})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if rows, _, _, err := servertest.Pull(t, fc, pull); err == nil {
		t.Errorf("Flight with another CA's certificate: %d rows", len(rows))
	}

	// A damaged CRL: every certificate refused, /readyz names tls.crl; fixed: served again.
	if err := pki.WriteFile(p.crlPath, []byte("not a CRL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "every certificate refused while the CRL is damaged", func() bool {
		_, _, err := httpsGet(x, otherTLS, "/v1/catalog")
		return err != nil
	})
	if code, body := opsGet(t, x, "/readyz"); code != 503 || !strings.Contains(body, "tls.crl") {
		t.Errorf("/readyz with a damaged CRL: %d %s", code, body)
	}
	if _, body := opsGet(t, x, "/metrics"); !strings.Contains(body, "govx_tls_crl_usable 0") {
		t.Error("/metrics: govx_tls_crl_usable is not 0 with a damaged CRL")
	}
	p.publishCRL()
	testenv.WaitFor(t, 10*time.Second, "certificates accepted again once the CRL is fixed", func() bool {
		code, _, err := httpsGet(x, otherTLS, "/v1/catalog")
		return err == nil && code == 200
	})
	if code, _ := opsGet(t, x, "/readyz"); code != 200 {
		t.Errorf("/readyz after the CRL was fixed: %d", code)
	}
	if _, _, err := httpsGet(x, dibaoTLS, "/v1/catalog"); err == nil {
		t.Error("the revoked certificate accepted after the CRL was restored")
	}
}

// opsGet returns the status and body of GET path on the operations listener.
func opsGet(t *testing.T, x *Exchange, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + x.OpsAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestPKIBadCRLAtStart: a CRL the exchange cannot use at start (missing, another CA's,
// not a CRL) fails `serve --check` naming tls.crl, while serve starts and refuses client
// certificates only: tokens work, /readyz names tls.crl — as when the CRL breaks later.
func TestPKIBadCRLAtStart(t *testing.T) {
	p := newDepartmentPKI(t, "govx test CA")
	other := newDepartmentPKI(t, "another CA")
	bad := map[string]string{
		"missing":        filepath.Join(t.TempDir(), "none.pem"),
		"another CA's":   other.crlPath,
		"not a CRL file": filepath.Join(p.dir, "tls/server.pem"),
	}
	for name, crl := range bad {
		cfg := Defaults(t.TempDir())
		cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
		p.configure(cfg)
		cfg.TLS.CRL = crl
		if err := Validate(cfg); err == nil || !strings.Contains(err.Error(), "tls.crl") {
			t.Errorf("--check with a %s CRL: %v", name, err)
		}
	}
	x, _, mem := inProcess(t, p.configure, func(c *Config) { c.TLS.CRL = bad["another CA's"]; c.Ops.Listen = "127.0.0.1:0" })
	defer func() {
		x.Close()
		mem.AssertSize(t, 0)
	}()
	if code, body := opsGet(t, x, "/readyz"); code != 503 || !strings.Contains(body, "tls.crl") {
		t.Errorf("/readyz started with another CA's CRL: %d %s", code, body)
	}
	_, dibaoTLS := p.client("mz-3301/dibao-review")
	if _, _, err := httpsGet(x, withRoots(dibaoTLS, p.roots), "/v1/catalog"); err == nil {
		t.Error("a client certificate accepted while the CRL is unusable")
	}
	tok, _, err := auth.OpenTokens(x.cfg.TokensFile).Issue(exchange.Subject{Department: "mz-3301", System: "dibao-review"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Flight: x.FlightAddr(), HTTP: "https://" + x.HTTPAddr(),
		TLS: &tls.Config{RootCAs: p.roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if rows, _, _, err := servertest.Pull(t, c, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao}); err != nil || len(rows) == 0 {
		t.Errorf("a token while the CRL is unusable: %d rows, %v", len(rows), err)
	}
}

// TestPKICRLRollbackRefused: replacing the CRL with an older one (lower number) does
// not un-revoke: the newer list stays in force, /readyz names tls.crl with both numbers;
// a restart onto the older CRL refuses every certificate.
func TestPKICRLRollbackRefused(t *testing.T) {
	p := newDepartmentPKI(t, "govx test CA")
	old, err := os.ReadFile(p.crlPath)
	if err != nil {
		t.Fatal(err)
	}
	dibao, dibaoTLS := p.client("mz-3301/dibao-review")
	_, otherTLS := p.client("mz-3201/case-system")
	dibaoTLS, otherTLS = withRoots(dibaoTLS, p.roots), withRoots(otherTLS, p.roots)
	if _, err := p.ca.Revoke(dibao.Record.Serial, "keyCompromise", 0); err != nil {
		t.Fatal(err)
	}
	p.publishCRL()
	var dataDir string
	x, _, mem := inProcess(t, p.configure, func(c *Config) { c.Ops.Listen = "127.0.0.1:0"; dataDir = c.DataDir })
	if _, _, err := httpsGet(x, dibaoTLS, "/v1/catalog"); err == nil {
		t.Fatal("the revoked certificate accepted")
	}
	p.write("tls/crl.pem", old)
	testenv.WaitFor(t, 10*time.Second, "/readyz to name the CRL rollback", func() bool {
		code, body := opsGet(t, x, "/readyz")
		return code == 503 && strings.Contains(body, "tls.crl") && strings.Contains(body, "number 1, older than number 2")
	})
	if _, _, err := httpsGet(x, dibaoTLS, "/v1/catalog"); err == nil {
		t.Error("the revoked certificate accepted after the CRL was rolled back")
	}
	if code, _, err := httpsGet(x, otherTLS, "/v1/catalog"); err != nil || code != 200 {
		t.Errorf("a certificate not revoked, after the rollback: %d %v", code, err)
	}
	x.Close()
	mem.AssertSize(t, 0)

	cfg := Defaults(t.TempDir())
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	cfg.DataDir = dataDir
	p.configure(cfg)
	if err := Validate(cfg); err == nil || !strings.Contains(err.Error(), "older than number 2") {
		t.Errorf("--check onto the older CRL after a restart: %v", err)
	}
	y, _, mem := inProcess(t, p.configure, func(c *Config) { c.Ops.Listen = "127.0.0.1:0"; c.DataDir = dataDir })
	defer func() {
		y.Close()
		mem.AssertSize(t, 0)
	}()
	if code, body := opsGet(t, y, "/readyz"); code != 503 || !strings.Contains(body, "older than number 2") {
		t.Errorf("/readyz restarted onto the older CRL: %d %s", code, body)
	}
	if _, _, err := httpsGet(y, otherTLS, "/v1/catalog"); err == nil {
		t.Error("restarted onto the older CRL: a certificate accepted")
	}
}

// pyarrowMTLS pulls over Flight with a client certificate, as a department's Python
// system would: pyarrow's gRPC (C++) TLS stack, not Go's.
const pyarrowMTLS = `
import json, sys, pyarrow.flight as flight
addr, ca, cert, key = sys.argv[1:5]
client = flight.FlightClient("grpc+tls://" + addr, tls_root_certs=open(ca, "rb").read(),
                             cert_chain=open(cert, "rb").read(), private_key=open(key, "rb").read())
cmd = {"dataset": "population.person", "purpose": "minimum-living-allowance-review"}
try:
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(cmd)))
    table = client.do_get(info.endpoints[0].ticket).read_all()
    print(json.dumps({"rows": table.num_rows}))
except flight.FlightError as e:
    print(json.dumps({"error": type(e).__name__ + ": " + str(e)}))
`

// TestIntegrationPKIPyarrowFlight: pyarrow.flight accepts govx pki's ECDSA certificates
// both ways, and its next connection after a revocation is refused.
func TestIntegrationPKIPyarrowFlight(t *testing.T) {
	python := testenv.Require(t, testenv.Python)
	p := newDepartmentPKI(t, "govx test CA")
	x, _, mem := inProcess(t, p.configure)
	defer func() {
		x.Close()
		mem.AssertSize(t, 0)
	}()
	is, _ := p.client("mz-3301/dibao-review")
	p.write("mz/cert.pem", is.CertPEM)
	p.write("mz/key.pem", is.KeyPEM)
	run := func() (rows int, errText string) {
		t.Helper()
		cmd := exec.Command(python, "-c", pyarrowMTLS, x.FlightAddr(), filepath.Join(p.ca.Dir(), pki.CertFile),
			filepath.Join(p.dir, "mz/cert.pem"), filepath.Join(p.dir, "mz/key.pem"))
		var stderr strings.Builder
		cmd.Stderr = &stderr // gRPC's C++ core logs handshake failures there
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pyarrow: %v\n%s%s", err, out, stderr.String())
		}
		var got struct {
			Rows  int
			Error string
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("pyarrow printed %q: %v", out, err)
		}
		return got.Rows, got.Error
	}
	if rows, errText := run(); rows == 0 || errText != "" {
		t.Fatalf("pyarrow over mutual TLS: %d rows, %s", rows, errText)
	}
	if _, err := p.ca.Revoke(is.Record.Serial, "", 0); err != nil {
		t.Fatal(err)
	}
	p.publishCRL()
	// Each run is a new process, so a new connection: it must fail at the handshake.
	var errText string
	testenv.WaitFor(t, 15*time.Second, "pyarrow refused with the revoked certificate", func() bool {
		var rows int
		rows, errText = run()
		return rows == 0 && errText != ""
	})
	if !strings.Contains(errText, "FlightUnavailableError") && !strings.Contains(errText, "FlightUnauthenticatedError") {
		t.Errorf("pyarrow with a revoked certificate: %s", errText)
	}
}
