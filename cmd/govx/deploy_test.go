package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDeployConfigsCheck runs every exchange and connector config under deploy/ through
// the commands an operator runs before a restart (`govx exchange serve --check`,
// `govx connector check --offline`). Every YAML file there must be one of those, a
// Kubernetes object or a Kustomization, so that a new config cannot escape the check.
func TestDeployConfigsCheck(t *testing.T) {
	// The sample connector's environment, as systemd would set it from connector.env.
	t.Setenv("GOVX_KAFKA_BROKERS", "kafka-1.govx.internal:9092")
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
			kind, args = "exchange", []string{"exchange", "serve", "-c", p, "--check"}
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
