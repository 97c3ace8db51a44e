package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig("../../deploy/exchange.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FlightAddr != "127.0.0.1:8815" || cfg.Audit.ClickHouse.Addr == "" || cfg.RateLimit.PerSecond != 200 || len(cfg.Datasets) != 4 {
		t.Fatalf("example config read as %+v", cfg)
	}
}

func TestConfigIsStrict(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ yaml, want string }{
		{"flight_addr: 127.0.0.1:8815\nkafka:\n  brokers: [k:9092]\nhttp_adr: x\n", `x.yaml:4: unknown key "http_adr"`},
		{"kafka:\n  brokers: [k:9092]\n---\nkafka:\n  brokers: [other:9092]\n", "x.yaml:3: a second YAML document"},
		{"kafka:\n  brokers: []\n", "kafka.brokers: name at least one broker"},
		{"kafka:\n  brokers: [k:9092]\nflight_addr: nonsense\n", `flight_addr "nonsense": want host:port`},
		{"kafka:\n  brokers: [k:9092]\ntls:\n  client_ca: ca.pem\n", "tls.client_ca needs tls.cert and tls.key"},
		{"kafka:\n  brokers: [k:9092]\nrate_limit:\n  per_second: many\n", "cannot unmarshal"},
		{"kafka:\n  brokers: [k:9092]\nconsole:\n  listen: 127.0.0.1:8080\n", "console.listen 127.0.0.1:8080: give the console an address of its own"},
		{"kafka:\n  brokers: [k:9092]\nconsole:\n  listen: 8090\n", `console.listen "8090": want host:port`},
		{"kafka:\n  brokers: [k:9092]\nrate_limit:\n  pull_stall_timeout: 9s\n", "rate_limit.pull_stall_timeout 9s: a client pausing"},
		{"kafka:\n  brokers: [k:9092]\nrate_limit:\n  pull_stall_timeout: 25h\n", "rate_limit.pull_stall_timeout 25h0m0s: a pull nobody read for a day"},
		{"kafka:\n  brokers: [k:9092]\nrate_limit:\n  pull_stall_timeout: -1s\n", "pull_stall_timeout must not be negative"},
	} {
		path := filepath.Join(dir, "x.yaml")
		os.WriteFile(path, []byte(tt.yaml), 0o600)
		_, err := LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "x.yaml") {
			t.Errorf("config %q: error %v, want one naming the file and %q", tt.yaml, err, tt.want)
		}
	}
}

// TestListenersCheckedAsServeBindsThem: a port out of range, and two listeners on one
// port under different names for the same host (localhost and 127.0.0.1, a wildcard
// and a loopback address), are refused by the config check, not at bind time; distinct
// hosts on one port are fine.
func TestListenersCheckedAsServeBindsThem(t *testing.T) {
	for _, tt := range []struct {
		yaml, want string
	}{
		{"flight_addr: 127.0.0.1:99999\n", `flight_addr "127.0.0.1:99999": want host:port with a port of 0–65535`},
		{"http_addr: 127.0.0.1:http-alt-x\n", `http_addr "127.0.0.1:http-alt-x": want host:port`},
		{"flight_addr: 0.0.0.0:8443\nhttp_addr: 127.0.0.1:8443\n", "flight_addr and http_addr are both 127.0.0.1:8443"},
		{"http_addr: 127.0.0.1:8443\nops:\n  listen: localhost:8443\n", "ops.listen localhost:8443: give the operations listener an address of its own (http_addr binds port 8443"},
		{"console:\n  listen: :8080\n", "console.listen :8080: give the console an address of its own"},
		{"flight_addr: 127.0.0.2:8443\nhttp_addr: 127.0.0.1:8443\n", ""},
	} {
		path := filepath.Join(t.TempDir(), "x.yaml")
		os.WriteFile(path, []byte("kafka:\n  brokers: [k:9092]\n"+tt.yaml), 0o600)
		_, err := LoadConfig(path)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v, want it accepted", tt.yaml, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: %v, want an error with %q", tt.yaml, err, tt.want)
		}
	}
}
