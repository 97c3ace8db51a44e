package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"govx/exchange/audit"
	"govx/exchange/pki"
	"govx/schemas"
)

// crlNumbersFile keeps, in data_dir, the highest CRL number loaded of each client CA,
// so a restart onto an older CRL (a rollback) is refused like one at runtime.
const crlNumbersFile = "crl-numbers.json"

// prepared is what the exchange loads from its config before it touches Kafka, the
// store or the network: prepare does it for Start and for Validate alike, so `govx
// exchange serve --check` accepts exactly the configs serve starts with.
type prepared struct {
	cat  *schemas.Catalog
	tls  *tls.Config      // nil without tls.cert
	revs *pki.Revocations // nil without tls.crl
}

// prepare checks the config and loads the catalog, the datasets it names and the TLS
// material (the certificate and its key, the client CAs, the CRL against them). An
// unusable CRL is not an error here: it refuses client certificates only (revs.Err
// says why), as it does when it turns bad at runtime. checking is a config check: it
// writes nothing.
func prepare(cfg *Config, log *slog.Logger, checking bool) (*prepared, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cat, err := schemas.Load()
	if err != nil {
		return nil, err
	}
	for _, id := range cfg.Datasets {
		if _, ok := cat.Dataset(id); !ok {
			return nil, fmt.Errorf("datasets: unknown dataset %q (`govx schemas list` names them)", id)
		}
	}
	if cfg.PoliciesDir != "" {
		if st, err := os.Stat(cfg.PoliciesDir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("policies_dir %s: not a directory (give the directory of the Rego policies and their data, see docs/policies.md, or leave it unset for the policy built into govx)", cfg.PoliciesDir)
		}
	}
	if _, err := clickHouseOf(cfg); err != nil {
		return nil, fmt.Errorf("audit.clickhouse: %w", err)
	}
	tc, revs, err := loadTLS(cfg, log, checking)
	if err != nil {
		return nil, err
	}
	return &prepared{cat: cat, tls: tc, revs: revs}, nil
}

// Validate loads and checks everything the exchange loads at start without starting it
// (`govx exchange serve --check`); unlike Start it refuses a CRL that cannot be used,
// since serving on it would refuse every client certificate.
func Validate(cfg *Config) error {
	p, err := prepare(cfg, slog.New(slog.DiscardHandler), true)
	if err != nil {
		return err
	}
	if p.revs != nil {
		return p.revs.Err()
	}
	return nil
}

// loadTLS builds the TLS configuration of both API listeners, and with tls.crl the
// revocation list every client certificate is checked against at the handshake.
func loadTLS(cfg *Config, log *slog.Logger, checking bool) (*tls.Config, *pki.Revocations, error) {
	if cfg.TLS.Cert == "" {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.cert/tls.key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if cfg.TLS.ClientCA == "" {
		return tc, nil, nil
	}
	data, err := os.ReadFile(cfg.TLS.ClientCA)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.client_ca: %w", err)
	}
	cas, err := pki.ParseCertificates(data)
	if err != nil {
		return nil, nil, fmt.Errorf("tls.client_ca %s: %w (want the CA's certificate, ca.pem)", cfg.TLS.ClientCA, err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	tc.ClientCAs = pool
	// Tokens stay usable over TLS; a presented certificate must verify.
	tc.ClientAuth = tls.VerifyClientCertIfGiven
	if cfg.TLS.CRL == "" {
		return tc, nil, nil
	}
	revs := pki.OpenRevocations(cfg.TLS.CRL, cas, pki.WithNumbersFile(filepath.Join(cfg.DataDir, crlNumbersFile), checking),
		pki.OnReload(func(err error) {
			if err != nil {
				log.Error("client certificate revocation list not in force as published; client certificates are refused, or checked against the newer list loaded before, until it is fixed",
					"crl", cfg.TLS.CRL, "err", err)
				return
			}
			log.Info("client certificate revocation list loaded", "crl", cfg.TLS.CRL)
		}))
	// Runs after crypto/tls verified the chain against the client CAs: a revoked
	// certificate never completes a handshake.
	tc.VerifyConnection = func(cs tls.ConnectionState) error { return revs.Check(cs.VerifiedChains) }
	return tc, revs, nil
}

// clickHouseOf is the audit log's ClickHouse of cfg (checked, not connected), or nil
// when none is configured: the one place its settings are read, for the shipper, the
// console and --check alike.
func clickHouseOf(cfg *Config) (*audit.ClickHouse, error) {
	ch := cfg.Audit.ClickHouse
	if ch.Addr == "" {
		return nil, nil
	}
	return audit.NewClickHouse(audit.ClickHouseConfig{Addr: ch.Addr, Database: ch.Database, Table: ch.Table,
		Username: ch.Username, Password: os.Getenv(ch.PasswordEnv)})
}
