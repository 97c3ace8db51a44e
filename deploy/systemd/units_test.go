package systemd

import (
	"bufio"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// unit is a parsed unit file: section -> key -> values in order (keys may repeat).
type unit map[string]map[string][]string

// known lists the directives these units may use, so that a misspelt one (which
// systemd only warns about, leaving the hardening off) fails here.
var known = map[string][]string{
	"Unit": {"Description", "Documentation", "After", "Wants"},
	"Service": {"Type", "User", "Group", "EnvironmentFile", "LoadCredential", "ExecStartPre", "ExecStart", "Restart",
		"RestartSec", "TimeoutStopSec", "LimitNOFILE", "StateDirectory", "StateDirectoryMode", "ReadWritePaths", "UMask",
		"NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem", "ProtectHome", "PrivateTmp",
		"PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
		"ProtectClock", "ProtectHostname", "ProtectProc", "RestrictAddressFamilies", "RestrictNamespaces",
		"RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC",
		"SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber"},
	"Install": {"WantedBy"},
}

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if _, ok := known[section]; !ok {
				t.Fatalf("%s:%d: unknown section %s", file, n, line)
			}
			u[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: want key=value in a section: %q", file, n, line)
			}
			if !slices.Contains(known[section], key) {
				t.Fatalf("%s:%d: unknown directive %s in [%s]", file, n, key, section)
			}
			u[section][key] = append(u[section][key], value)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unit) get(key string) string {
	v := u["Service"][key]
	if len(v) == 0 {
		return "<unset>"
	}
	return v[len(v)-1]
}

// hardened checks what both units must have: their own user, no capabilities, no new
// privileges, a read-only system, restarts on failure.
func hardened(t *testing.T, file string, u unit) {
	t.Helper()
	for key, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
		"ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
		"SystemCallArchitectures": "native", "SystemCallFilter": "@system-service", "Restart": "on-failure", "UMask": "0077",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes",
	} {
		if got := u.get(key); got != want {
			t.Errorf("%s: %s=%s, want %q", file, key, got, want)
		}
	}
	if user := u.get("User"); user == "<unset>" || user == "root" || u.get("Group") != user {
		t.Errorf("%s: User=%s Group=%s: want its own unprivileged user", file, user, u.get("Group"))
	}
	if !slices.Contains(u["Install"]["WantedBy"], "multi-user.target") {
		t.Errorf("%s: not wanted by multi-user.target", file)
	}
}

func sysusers(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("govx.sysusers.conf")
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "u" {
			users = append(users, f[1])
		}
	}
	return users
}

func TestDeploySystemdExchangeUnit(t *testing.T) {
	u := parseUnit(t, "govx-exchange.service")
	hardened(t, "govx-exchange.service", u)
	if !slices.Contains(sysusers(t), u.get("User")) {
		t.Errorf("user %s is not created by govx.sysusers.conf", u.get("User"))
	}
	const cfgPath = "/etc/govx/exchange.yaml"
	if u.get("ExecStart") != "/usr/local/bin/govx exchange serve -c "+cfgPath ||
		u["Service"]["ExecStartPre"][0] != "/usr/local/bin/govx exchange serve -c "+cfgPath+" --check" {
		t.Errorf("ExecStart %q, ExecStartPre %q: want the config checked, then served", u.get("ExecStart"), u["Service"]["ExecStartPre"])
	}

	// The config installed as /etc/govx/exchange.yaml agrees with the unit: what it
	// writes is writable, what it reads from the credentials directory is loaded there.
	var cfg struct {
		DataDir    string `yaml:"data_dir"`
		SecretFile string `yaml:"secret_file"`
		Ops        struct {
			Listen string `yaml:"listen"`
		} `yaml:"ops"`
		Audit struct {
			SpoolDir    string `yaml:"spool_dir"`
			Checkpoints string `yaml:"checkpoints"`
			SigningKey  string `yaml:"signing_key"`
			ClickHouse  struct {
				PasswordEnv string `yaml:"password_env"`
			} `yaml:"clickhouse"`
		} `yaml:"audit"`
		TLS struct {
			Key string `yaml:"key"`
			CRL string `yaml:"crl"`
		} `yaml:"tls"`
	}
	data, err := os.ReadFile("exchange.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	writable := append(u["Service"]["ReadWritePaths"], "/var/lib/"+u.get("StateDirectory"))
	for key, p := range map[string]string{"data_dir": cfg.DataDir, "audit.spool_dir": cfg.Audit.SpoolDir, "audit.checkpoints": cfg.Audit.Checkpoints} {
		if !slices.ContainsFunc(writable, func(w string) bool { return strings.HasPrefix(p, w+"/") }) {
			t.Errorf("%s %s is not under a writable path %v: ProtectSystem=strict would refuse it", key, p, writable)
		}
	}
	creds := map[string]bool{}
	for _, lc := range u["Service"]["LoadCredential"] {
		name, _, _ := strings.Cut(lc, ":")
		creds[name] = true
	}
	const credDir = "/run/credentials/govx-exchange.service/"
	for key, p := range map[string]string{"secret_file": cfg.SecretFile, "audit.signing_key": cfg.Audit.SigningKey, "tls.key": cfg.TLS.Key} {
		if !strings.HasPrefix(p, credDir) || !creds[path.Base(p)] {
			t.Errorf("%s %s: private material must come through LoadCredential (have %v)", key, p, creds)
		}
	}
	// The CRL is reloaded while running: read from its file, never a start-time copy.
	if strings.HasPrefix(cfg.TLS.CRL, "/run/credentials/") || cfg.TLS.CRL == "" {
		t.Errorf("tls.crl %q: want the file `govx pki crl --out` replaces", cfg.TLS.CRL)
	}
	if !strings.HasPrefix(cfg.Ops.Listen, "127.0.0.1:") {
		t.Errorf("ops.listen %q: keep the operations listener private", cfg.Ops.Listen)
	}
	env, err := os.ReadFile("exchange.env")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), cfg.Audit.ClickHouse.PasswordEnv+"=") || u.get("EnvironmentFile") != "/etc/govx/exchange.env" {
		t.Errorf("exchange.env does not set %s for the unit", cfg.Audit.ClickHouse.PasswordEnv)
	}
}

func TestDeploySystemdConnectorUnit(t *testing.T) {
	u := parseUnit(t, "govx-connector@.service")
	hardened(t, "govx-connector@.service", u)
	if !slices.Contains(sysusers(t), u.get("User")) || u.get("User") == "govx" {
		t.Errorf("connector user %s: want its own, created by govx.sysusers.conf", u.get("User"))
	}
	if u.get("ReadWritePaths") != "<unset>" || u.get("StateDirectory") != "<unset>" {
		t.Error("the connector keeps no local state: nothing should be writable")
	}
	if !strings.Contains(u.get("ExecStart"), "connector run -c /etc/govx/connectors/%i.yaml") ||
		!strings.Contains(u["Service"]["ExecStartPre"][0], "connector check -c /etc/govx/connectors/%i.yaml --offline") ||
		u.get("EnvironmentFile") != "/etc/govx/connectors/%i.env" {
		t.Errorf("connector unit does not run the instance's config and environment: %v", u["Service"])
	}
	// Every variable the unit and the sample config use is set by the sample env file.
	env, err := os.ReadFile("connector.env")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile("connectors/gab-population.person.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"GOVX_METRICS_ADDR", "GOVX_SOURCE_DSN", "GOVX_KAFKA_BROKERS"} {
		if !strings.Contains(u.get("ExecStart")+string(cfg), v) || !strings.Contains(string(env), "\n"+v+"=") {
			t.Errorf("%s: used by the unit or config but not in connector.env, or the other way round", v)
		}
	}
}
