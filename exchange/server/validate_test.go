package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"govx/exchange/pki"
)

// TestValidateRefusesWhatServeWouldRefuse: `govx exchange serve --check` loads what
// serve loads at start, so a config it passes is one serve starts with: a missing
// certificate, a key of another certificate, a private key given as the client CA, an
// unknown dataset, one address for both listeners and a negative ticket_ttl are all
// refused, each naming the setting.
func TestValidateRefusesWhatServeWouldRefuse(t *testing.T) {
	p := newDepartmentPKI(t, "govx test CA")
	other := newDepartmentPKI(t, "another CA")
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"missing tls.cert", func(c *Config) { c.TLS.Cert = filepath.Join(p.dir, "tls/none.pem") }, "tls.cert"},
		{"key of another certificate", func(c *Config) { c.TLS.Key = filepath.Join(other.dir, "tls/server.key") }, "private key does not match public key"},
		{"client_ca a private key", func(c *Config) { c.TLS.ClientCA = filepath.Join(p.ca.Dir(), pki.KeyFile) }, "tls.client_ca"},
		{"unknown dataset", func(c *Config) { c.Datasets = []string{"population.persons"} }, `unknown dataset "population.persons"`},
		{"one address for both", func(c *Config) { c.FlightAddr, c.HTTPAddr = "127.0.0.1:8443", "127.0.0.1:8443" }, "flight_addr and http_addr are both"},
		{"negative ticket_ttl", func(c *Config) { c.TicketTTL = -5 * time.Minute }, "ticket_ttl -5m0s: want a positive duration"},
		{"ClickHouse database not a name", func(c *Config) {
			c.Audit.ClickHouse.Addr, c.Audit.ClickHouse.Database = "127.0.0.1:9000", "audit`x"
		}, "audit.clickhouse: audit: ClickHouse database and table names must be letters, digits and underscores"},
		{"policies_dir missing", func(c *Config) { c.PoliciesDir = filepath.Join(t.TempDir(), "none") }, "policies_dir "},
		{"applications.database of another kind", func(c *Config) { c.Applications.Database = "mysql://u@h/apps" },
			"applications.database: mysql:// is not a database the exchange keeps applications in"},
		{"ClickHouse table with a space", func(c *Config) {
			c.Audit.ClickHouse.Addr, c.Audit.ClickHouse.Table = "127.0.0.1:9000", "access log"
		}, "letters, digits and underscores"},
	} {
		cfg := Defaults(t.TempDir())
		p.configure(cfg)
		tt.mod(cfg)
		if err := Validate(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate says %v, want an error naming %q", tt.name, err, tt.want)
		}
	}
	cfg := Defaults(t.TempDir())
	p.configure(cfg)
	if err := Validate(cfg); err != nil {
		t.Errorf("a good config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, crlNumbersFile)); err == nil {
		t.Error("Validate wrote the CRL numbers file; a config check writes nothing")
	}
}
