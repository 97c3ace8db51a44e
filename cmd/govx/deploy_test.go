package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"govx/exchange/pki"
	"govx/policies"
)

// TestDeployConfigsCheck runs every exchange and connector config under deploy/ through
// the commands an operator runs before a restart (`govx exchange serve --check`,
// `govx connector check --offline`). Every YAML file there must be one of those, a
// Kubernetes object or a Kustomization, so that a new config cannot escape the check.
func TestDeployConfigsCheck(t *testing.T) {
	// The sample connector's environment, as systemd would set it from connector.env.
	t.Setenv("GOVX_KAFKA_BROKERS", "kafka-1.govx.internal:9092")
	tlsFiles := deployTLS(t)
	checked := map[string]int{}
	err := filepath.WalkDir("../../deploy", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (!strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml")) {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var top map[string]any
		if err := yaml.Unmarshal([]byte(strings.SplitN(string(data), "\n---\n", 2)[0]), &top); err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		var args []string
		kind := ""
		switch {
		case top["apiVersion"] != nil:
			return nil // Kubernetes and Kustomize: deploy/kubernetes decodes them strictly
		case top["dataset"] != nil:
			kind, args = "connector", []string{"connector", "check", "-c", p, "--offline"}
		case top["kafka"] != nil || top["flight_addr"] != nil:
			// --check loads the TLS files as serve does: the host's, from a test PKI.
			kind, args = "exchange", []string{"exchange", "serve", "-c", withTLSFiles(t, p, data, tlsFiles), "--check"}
		default:
			t.Errorf("%s: neither an exchange nor a connector config nor a Kubernetes manifest", p)
			return nil
		}
		out, err := runGovx(t, args...)
		if err != nil {
			t.Errorf("govx %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		checked[kind]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// deploy/exchange.example.yaml, systemd's, the Kubernetes base's and overlay's; the
	// systemd sample connector.
	if checked["exchange"] < 4 || checked["connector"] < 1 {
		t.Errorf("checked %v: configs went missing", checked)
	}
}

// deployTLS makes the TLS files a deploy config names (server.pem, server.key, ca.pem,
// crl.pem) with exchange/pki, as `govx pki` makes them on the CA host.
func deployTLS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Init(filepath.Join(dir, "ca"), pki.InitOptions{Name: "govx deploy test CA"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer("exchange", []string{"exchange.govx.internal"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"server.pem": srv.CertPEM, "server.key": srv.KeyPEM,
		"ca.pem": mustReadFile(t, filepath.Join(ca.Dir(), pki.CertFile)), "crl.pem": mustReadFile(t, filepath.Join(ca.Dir(), pki.CRLFile))} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// withTLSFiles returns a copy of the exchange config at path whose tls section names
// the files in dir instead of the host's.
func withTLSFiles(t *testing.T, path string, data []byte, dir string) string {
	t.Helper()
	s := string(data)
	for _, name := range []string{"server.pem", "server.key", "ca.pem", "crl.pem"} {
		s = regexp.MustCompile(`(?m)^(  [a-z_]+: )/\S*/`+regexp.QuoteMeta(name)+`\b`).ReplaceAllString(s, "${1}"+filepath.Join(dir, name))
	}
	// The policy directory the host would have (--check requires it to exist): the
	// shipped policy, copied as an operator installs it.
	if re := regexp.MustCompile(`(?m)^policies_dir: .*$`); re.MatchString(s) {
		pol := filepath.Join(t.TempDir(), "policies")
		if err := policies.CopyEmbedded(pol); err != nil {
			t.Fatal(err)
		}
		s = re.ReplaceAllString(s, "policies_dir: "+pol)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(out, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}
