package console_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"govx/exchange/audit"
	"govx/exchange/pki"
	"govx/exchange/server"
	"govx/internal/testenv"
)

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f.]+)"`)

// formSignIn posts the sign-in form with the fields given and the form's CSRF token, as
// a browser would, and returns the answer (redirects not followed).
func formSignIn(t *testing.T, c *http.Client, base string, form url.Values) *http.Response {
	t.Helper()
	resp, err := c.Get(base + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field on the sign-in page:\n%s", body)
	}
	form.Set("csrf", string(m[1]))
	resp, err = c.PostForm(base+"/login", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// page returns the status and body of GET path.
func page(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// Over TLS with client certificates, an auditor signs in with the certificate alone;
// the session cookie is Secure, HttpOnly and SameSite=Strict; without a certificate the
// certificate sign-in is refused and audited. Once the certificate is revoked (`govx pki
// revoke`, which writes the CRL), the session it opened ends at its next page, audited.
func TestIntegrationConsoleClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Init(filepath.Join(dir, "ca"), pki.InitOptions{Name: "govx console test CA"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer("", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueClient("zwfw/audit", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := pki.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile := write("server.pem", srv.CertPEM), write("server.key", srv.KeyPEM)
	caFile := filepath.Join(ca.Dir(), pki.CertFile)
	if _, err := ca.WriteCRL(time.Hour); err != nil {
		t.Fatal(err)
	}
	var skew atomic.Int64
	x, cfg, _, _ := consoleExchange(t, &skew, func(c *server.Config) {
		c.TLS.Cert, c.TLS.Key, c.TLS.ClientCA, c.TLS.CRL = certFile, keyFile, caFile, filepath.Join(ca.Dir(), pki.CRLFile)
	})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	base := "https://" + x.ConsoleAddr()

	client := func(withCert bool) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if withCert {
			pair, err := tls.X509KeyPair(cli.CertPEM, cli.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: tc},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	signIn := func(c *http.Client) *http.Response {
		return formSignIn(t, c, base, url.Values{"method": {"certificate"}})
	}

	c := client(true)
	resp := signIn(c)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("certificate sign-in: %d", resp.StatusCode)
	}
	var session string
	for _, h := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(h, "govx_console=") {
			session = h
		}
	}
	for _, attr := range []string{"Secure", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(session, attr) {
			t.Errorf("session cookie %q lacks %s", session, attr)
		}
	}
	if resp.Header.Get("Strict-Transport-Security") == "" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("headers: %v", resp.Header)
	}
	if code, body := page(t, c, base+"/audit/verify"); code != http.StatusOK || !strings.Contains(body, "zwfw/audit") {
		t.Fatalf("the auditor's verification page over TLS: %d\n%s", code, body)
	}

	if resp := signIn(client(false)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("certificate sign-in without a certificate: %d, want 401", resp.StatusCode)
	}
	if n := len(events(t, cfg, audit.Filter{Action: "console.signin", Decision: audit.Deny})); n != 1 {
		t.Errorf("%d audited refused sign-ins, want 1", n)
	}
	if n := len(events(t, cfg, audit.Filter{Department: "zwfw", System: "audit", Action: "console.signin", Decision: audit.Allow, Purpose: "certificate"})); n != 1 {
		t.Errorf("%d audited certificate sign-ins, want 1", n)
	}

	// The certificate is revoked: the session it opened (its keep-alive connection still
	// open, as the browser's would be) ends at its next page.
	if _, err := ca.Revoke(cli.Record.Serial, "keyCompromise", time.Hour); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the revoked certificate's session to end", func() bool {
		resp, err := c.Get(base + "/audit/verify")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // read to the end: the keep-alive connection is reused
		resp.Body.Close()
		return resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/login"
	})
	if n := len(events(t, cfg, audit.Filter{Department: "zwfw", System: "audit", Action: "console.session", Decision: audit.Deny})); n != 1 {
		t.Errorf("%d audited ends of the revoked certificate's session, want 1", n)
	}
}
