package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"govx/exchange"
	"govx/exchange/client"
	"govx/exchange/server/servertest"
	"govx/internal/testenv"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and client certificates whose
// common names are department subjects.
type testPKI struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "govx test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{caCert: cert, caKey: key, pool: pool}
}

func (p *testPKI) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestIntegrationMutualTLS: a client certificate whose common name is DEPT/SYSTEM is the
// same subject as that system's token, over Flight and HTTP; without either, nothing.
func TestIntegrationMutualTLS(t *testing.T) {
	brokers := testenv.Require(t, testenv.Kafka)
	chDB, _ := clickhouseDB(t)
	prefix := "govxtest" + randomSuffix() + "."
	persons := makePersons(t, 40, 3)
	recs := map[string]any{}
	for _, p := range persons {
		recs[p["id_number"].(string)] = map[string]any(p)
	}
	produce(t, brokers, prefix+"population.person", recs)

	dir := t.TempDir()
	pki := newPKI(t)
	srvCert, srvKey := pki.issue(t, "exchange", true)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.caCert.Raw})
	for name, data := range map[string][]byte{"server.pem": srvCert, "server.key": srvKey, "ca.pem": caPEM} {
		os.WriteFile(filepath.Join(dir, name), data, 0o600)
	}
	te := &testExchange{t: t, tokens: map[string]string{}}
	cfg := Defaults(dir)
	cfg.FlightAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kafka.Brokers, cfg.Kafka.TopicPrefix = []string{brokers}, prefix
	cfg.Datasets = []string{"population.person"}
	cfg.Audit.ClickHouse.Addr, cfg.Audit.ClickHouse.Database = testenv.Require(t, testenv.ClickHouse), chDB
	cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.ClientCA = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.pem")
	te.cfg = cfg
	te.start()
	defer te.stop()

	tlsFor := func(cn string) *tls.Config {
		tc := &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"}
		if cn != "" {
			c, k := pki.issue(t, cn, false)
			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		return tc
	}
	ctx := context.Background()
	c, err := client.New(client.Config{Flight: te.x.FlightAddr(), HTTP: "https://" + te.x.HTTPAddr(), TLS: tlsFor("mz-3301/dibao-review")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := c.Catalog(ctx)
	if err != nil || len(list) == 0 {
		t.Fatalf("catalog with a client certificate: %v, %v", list, err)
	}
	rows, _, _, err := servertest.Pull(t, c, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao})
	if err != nil {
		t.Fatalf("Flight pull with a client certificate: %v", err)
	}
	for _, r := range rows {
		if !strings.HasPrefix(r["household_region"], "3301") {
			t.Fatalf("certificate subject not scoped as mz-3301: %v", r)
		}
	}
	if len(rows) == 0 {
		t.Fatal("no rows for mz-3301 over mutual TLS")
	}
	// TLS without a client certificate and without a token authenticates nobody.
	anon, err := client.New(client.Config{Flight: te.x.FlightAddr(), HTTP: "https://" + te.x.HTTPAddr(), TLS: tlsFor("")})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Catalog(ctx); codeOf(err) != "unauthenticated" {
		t.Fatalf("TLS without a certificate or token: %v", err)
	}
	if _, _, _, err := servertest.Pull(t, anon, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao}); codeOf(err) != "unauthenticated" {
		t.Fatalf("Flight over TLS without a certificate or token: %v", err)
	}
}
