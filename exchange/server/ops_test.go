package server

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigOpsListenerSplitsEndpoints: with ops.listen the probes and metrics are
// served there and no longer on the API listener, unless ops.also_on_api says so.
func TestConfigOpsListenerSplitsEndpoints(t *testing.T) {
	for _, alsoOnAPI := range []bool{false, true} {
		x, _, mem := inProcess(t, func(c *Config) { c.Ops.Listen, c.Ops.AlsoOnAPI = "127.0.0.1:0", alsoOnAPI })
		if x.OpsAddr() == "" || x.OpsAddr() == x.HTTPAddr() {
			t.Fatalf("ops address %q (API %q)", x.OpsAddr(), x.HTTPAddr())
		}
		for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n", "/metrics": "govx_ingest_ready 1"} {
			if code, body := opsGet(t, x, path); code != 200 || !strings.Contains(body, want) {
				t.Errorf("ops %s: %d %q", path, code, body)
			}
			code, body := get(t, x, path)
			if alsoOnAPI && (code != 200 || !strings.Contains(body, want)) {
				t.Errorf("also_on_api: API %s: %d %q", path, code, body)
			}
			if !alsoOnAPI && (code != 404 || !strings.Contains(body, "no_route")) {
				t.Errorf("API %s with an operations listener: %d %q, want 404 no_route", path, code, body)
			}
		}
		// The operations listener serves nothing of the API.
		if code, body := opsGet(t, x, "/v1/catalog"); code != 404 || !strings.Contains(body, "no_route") {
			t.Errorf("ops /v1/catalog: %d %q", code, body)
		}
		// The API still answers on its own listener (unauthenticated, but routed).
		if code, _ := get(t, x, "/v1/catalog"); code != 401 {
			t.Errorf("API /v1/catalog: %d, want 401", code)
		}
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := http.Get("http://" + x.OpsAddr() + "/healthz"); err == nil {
			t.Error("the operations listener still answers after Close")
		}
		mem.AssertSize(t, 0)
	}
}

// TestConfigOpsListenerNotReadyNamesCheck: /readyz on the operations listener says what
// the API's said: 503 not_ready, naming the failing check.
func TestConfigOpsListenerNotReadyNamesCheck(t *testing.T) {
	x, _, mem := inProcess(t, func(c *Config) { c.Ops.Listen = "127.0.0.1:0" })
	defer func() { x.Close(); mem.AssertSize(t, 0) }()
	x.Readiness().Set("ingest/population.person", io.ErrUnexpectedEOF)
	if code, body := opsGet(t, x, "/readyz"); code != 503 || !strings.Contains(body, `"not_ready"`) || !strings.Contains(body, "ingest/population.person: unexpected EOF") {
		t.Errorf("ops /readyz not ready: %d %s", code, body)
	}
	if code, _ := opsGet(t, x, "/healthz"); code != 200 {
		t.Errorf("ops /healthz while not ready: %d; liveness must not follow readiness", code)
	}
}

func TestConfigOpsAndCRLChecks(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ yaml, want string }{
		{"kafka:\n  brokers: [k:9092]\nops:\n  listen: nonsense\n", `ops.listen "nonsense": want host:port`},
		{"kafka:\n  brokers: [k:9092]\nops:\n  also_on_api: true\n", "ops.also_on_api needs ops.listen"},
		{"kafka:\n  brokers: [k:9092]\nhttp_addr: 127.0.0.1:8080\nops:\n  listen: 127.0.0.1:8080\n", "an address of its own"},
		{"kafka:\n  brokers: [k:9092]\ntls:\n  cert: c.pem\n  key: k.pem\n  crl: crl.pem\n", "tls.crl needs tls.client_ca"},
		{"kafka:\n  brokers: [k:9092]\nops:\n  listn: x\n", `x.yaml:4: unknown key "listn"`},
	} {
		path := filepath.Join(dir, "x.yaml")
		os.WriteFile(path, []byte(tt.yaml), 0o600)
		_, err := LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config %q: error %v, want %q", tt.yaml, err, tt.want)
		}
	}
	path := filepath.Join(dir, "ok.yaml")
	os.WriteFile(path, []byte("kafka:\n  brokers: [k:9092]\nops:\n  listen: 0.0.0.0:9090\ntls:\n  cert: c.pem\n  key: k.pem\n  client_ca: ca.pem\n  crl: crl.pem\n"), 0o600)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS.CRL != filepath.Join(dir, "crl.pem") {
		t.Errorf("tls.crl resolved to %q, want it relative to the file", cfg.TLS.CRL)
	}
}
