package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"govx/exchange/pki"
)

// TestPKICommands walks an operator's day: create the CA, issue the exchange's and a
// department system's certificates, list them, revoke one, publish the CRL.
func TestPKICommands(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	run := func(args ...string) string {
		t.Helper()
		out, err := runGovx(t, append(args, "--ca", ca)...)
		if err != nil {
			t.Fatalf("govx %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	run("pki", "init", "--name", "浙江省政务数据共享 CA", "--valid", "3650d")
	if out, err := runGovx(t, "pki", "init", "--name", "again", "--ca", ca); err == nil || !strings.Contains(err.Error(), "already holds a CA") {
		t.Fatalf("init twice: %v\n%s", err, out)
	}
	tlsDir := filepath.Join(dir, "tls")
	run("pki", "issue", "server", "exchange", "--host", "127.0.0.1,localhost", "--out", tlsDir)
	out := run("pki", "issue", "client", "mz-3301/dibao-review", "--out", filepath.Join(dir, "mz"), "--valid", "30d")
	serial := regexp.MustCompile(`serial ([0-9a-f]+)`).FindStringSubmatch(out)
	if serial == nil {
		t.Fatalf("issue printed no serial: %s", out)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "mz", "mz-3301_dibao-review.pem"), filepath.Join(dir, "mz", "mz-3301_dibao-review.key"))
	if err != nil {
		t.Fatalf("the issued pair does not load as crypto/tls loads it: %v", err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if leaf.Subject.CommonName != "mz-3301/dibao-review" || leaf.NotAfter.Sub(leaf.NotBefore) > 31*24*time.Hour {
		t.Errorf("client certificate %v until %v", leaf.Subject, leaf.NotAfter)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "mz", "mz-3301_dibao-review.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("key written with mode %v", fi.Mode())
	}
	srv, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "exchange.pem"), filepath.Join(tlsDir, "exchange.key"))
	if err != nil {
		t.Fatal(err)
	}
	if sl, _ := x509.ParseCertificate(srv.Certificate[0]); sl.VerifyHostname("localhost") != nil || sl.VerifyHostname("127.0.0.1") != nil {
		t.Errorf("server certificate hosts: %v %v", sl.DNSNames, sl.IPAddresses)
	}
	// A second issue into the same place would overwrite a key in use: refused.
	if out, err := runGovx(t, "pki", "issue", "client", "mz-3301/dibao-review", "--out", filepath.Join(dir, "mz"), "--ca", ca); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("issue over an existing key: %v\n%s", err, out)
	}

	crlOut := filepath.Join(tlsDir, "crl.pem")
	out = run("pki", "revoke", serial[1], "--reason", "keyCompromise", "--out", crlOut)
	if !strings.Contains(out, "revoked "+serial[1]) || !strings.Contains(out, "CRL copied to "+crlOut) {
		t.Errorf("revoke printed %s", out)
	}
	caCerts, err := pki.ParseCertificates(mustReadFile(t, filepath.Join(ca, pki.CertFile)))
	if err != nil {
		t.Fatal(err)
	}
	set, err := pki.ParseCRLs(mustReadFile(t, crlOut), caCerts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Check([][]*x509.Certificate{{leaf, caCerts[0]}}, time.Now()); err == nil {
		t.Error("the published CRL does not revoke the certificate")
	}
	if out := run("pki", "list"); !strings.Contains(out, "keyCompromise") || strings.Count(out, "\n") != 3 {
		t.Errorf("list:\n%s", out)
	}
	if _, err := runGovx(t, "pki", "revoke", serial[1], "--ca", ca); err == nil {
		t.Error("revoking twice succeeded")
	}
	if out := run("pki", "crl", "--valid", "2d", "--out", crlOut); !strings.Contains(out, "CRL copied") {
		t.Errorf("crl printed %s", out)
	}
	crl, err := x509.ParseRevocationList(pemBody(t, mustReadFile(t, crlOut)))
	if err != nil || time.Until(crl.NextUpdate) > 49*time.Hour || len(crl.RevokedCertificateEntries) != 1 {
		t.Errorf("fresh CRL: next update %v, %d entries, %v", crl.NextUpdate, len(crl.RevokedCertificateEntries), err)
	}
	if _, err := runGovx(t, "pki", "issue", "client", "mz-3301/x", "--valid", "0d", "--ca", ca); err == nil {
		t.Error("a zero validity accepted")
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemBody(t *testing.T, data []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}
