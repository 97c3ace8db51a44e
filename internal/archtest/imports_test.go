package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// allowed maps a package to the govx packages it may import. A key without a trailing
// slash names a package and its sub-packages; one with a trailing slash only the
// sub-packages. A package takes the rule of the longest key that matches it; a package
// matching none may import nothing of govx. An allowed import names a package and its
// sub-packages (an entry with a trailing slash: the sub-packages only). Prefixes are
// matched at a slash: govx/schemas never matches govx/schemasx.
var allowed = map[string][]string{
	"govx/schemas/ident": {},
	"govx/schemas":       {"govx/schemas/", "govx/internal/strictyaml"},
	// Licence signatures are defined over the dataset's canonical values.
	"govx/schemas/license": {"govx/schemas", "govx/schemas/ident"},
	"govx/connectors":      {"govx/schemas", "govx/connectors", "govx/internal/strictyaml", "govx/internal/backoff"},
	"govx/policies":        {"govx/schemas", "govx/internal/strictyaml"},
	// The core vocabulary (Subject, Request, Decision, errors) imports nothing of ours.
	"govx/exchange":  {},
	"govx/exchange/": {"govx/schemas", "govx/policies", "govx/exchange", "govx/internal/strictyaml", "govx/internal/backoff"},
	// Masks are pure functions over values and Arrow arrays.
	"govx/exchange/mask":    {"govx/schemas/ident"},
	"govx/cmd/":             {"govx/"},
	"govx/bench/":           {"govx/"},
	"govx/deploy/":          {},
	"govx/internal/":        {},
	"govx/internal/testenv": {},
}

// importers limits who may import a package: the service is reached only through the
// edges (Flight, HTTP) and the server that wires them, so nothing else can bypass the
// one place that decides and audits.
var importers = map[string][]string{
	// The console is an edge too: it writes its audit events through the service.
	"govx/exchange/service": {"govx/exchange/flight", "govx/exchange/httpapi", "govx/exchange/console", "govx/exchange/server", "govx/exchange/service/"},
	// Aggregate queries are planned against a decision the service asked and audited;
	// run from anywhere else they would skip both.
	"govx/exchange/aggregate": {"govx/exchange/service"},
}

// testOnly packages may be imported by any test, and by nothing else.
var testOnly = []string{"govx/internal/testenv", "govx/internal/kafkatest"}

// matches reports whether pkg is named by key (see allowed).
func matches(pkg, key string) bool {
	if strings.HasSuffix(key, "/") {
		return strings.HasPrefix(pkg, key)
	}
	return pkg == key || strings.HasPrefix(pkg, key+"/")
}

func rule(pkg string) []string {
	best, found := "", false
	for p := range allowed {
		if matches(pkg, p) && len(p) > len(best) {
			best, found = p, true
		}
	}
	if !found {
		return nil
	}
	return allowed[best]
}

func permittedInTest(pkg, imp string) bool {
	for _, a := range rule(pkg) {
		if matches(imp, a) {
			return true
		}
	}
	return false
}

func permitted(pkg, imp string) bool {
	if who, ok := importers[imp]; ok {
		mayImport := false
		for _, w := range who {
			mayImport = mayImport || matches(pkg, w)
		}
		if !mayImport {
			return false
		}
	}
	for _, a := range rule(pkg) {
		if matches(imp, a) {
			return true
		}
	}
	return false
}

func TestImportsFlowOneWay(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports " "}}|{{join .TestImports " "}} {{join .XTestImports " "}}`, "govx/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	checked := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		pkg := parts[0]
		checked++
		for _, imp := range strings.Fields(parts[1]) {
			if !strings.HasPrefix(imp, "govx/") {
				continue
			}
			for _, to := range testOnly {
				if imp == to {
					t.Errorf("%s imports %s, which only tests may import", pkg, imp)
				}
			}
			if !permitted(pkg, imp) {
				t.Errorf("%s imports %s: against the one-way imports of ARCHITECTURE.md", pkg, imp)
			}
		}
		for _, imp := range strings.Fields(parts[2]) {
			if !strings.HasPrefix(imp, "govx/") || imp == pkg {
				continue
			}
			isTestOnly := false
			for _, to := range testOnly {
				isTestOnly = isTestOnly || imp == to
			}
			// Tests may wire what they test the way the server does: the importers rule
			// guards the serving path, not test harnesses.
			if !isTestOnly && !permittedInTest(pkg, imp) {
				t.Errorf("tests of %s import %s: against the one-way imports of ARCHITECTURE.md", pkg, imp)
			}
		}
	}
	if checked < 3 {
		t.Fatalf("go list found only %d packages", checked)
	}
}

func TestRulesCatchAViolation(t *testing.T) {
	for _, tt := range []struct {
		pkg, imp string
		ok       bool
	}{
		{"govx/schemas", "govx/schemas/ident", true},
		{"govx/schemas/ident", "govx/schemas", false},
		{"govx/schemas", "govx/exchange", false},
		{"govx/connectors/sqlsrc", "govx/schemas", true},
		{"govx/connectors", "govx/exchange", false},
		{"govx/exchange/store", "govx/policies", true},
		{"govx/exchange/flight", "govx/connectors", false},
		{"govx/policies", "govx/exchange", false},
		{"govx/cmd/govx", "govx/exchange/flight", true},
		{"govx/exchange", "govx/exchange/store", false},
		{"govx/exchange", "govx/schemas", false},
		{"govx/exchange/mask", "govx/schemas/ident", true},
		{"govx/exchange/mask", "govx/schemas", false},
		{"govx/exchange/store", "govx/exchange/service", false},
		{"govx/exchange/httpapi", "govx/exchange/service", true},
		{"govx/exchange/service/servicetest", "govx/exchange/service", true},
		{"govx/cmd/govx", "govx/exchange/service", false},
		{"govx/schemasx", "govx/schemas/ident", false},
		{"govx/exchangex/y", "govx/exchange", false},
		{"govx/schemas", "govx/internal/strictyaml", true},
		{"govx/connectors", "govx/internal/strictyaml", true},
		{"govx/policies", "govx/internal/strictyaml", true},
		{"govx/exchange/server", "govx/internal/strictyaml", true},
		{"govx/exchange/client", "govx/internal/strictyaml", true},
		{"govx/exchange/mask", "govx/internal/strictyaml", false},
		{"govx/schemas/ident", "govx/internal/strictyaml", false},
		{"govx/internal/strictyaml", "govx/schemas", false},
		{"govx/connectors", "govx/internal/testenv", false},
		{"govx/connectors", "govx/internal/backoff", true},
		{"govx/exchange/audit", "govx/internal/backoff", true},
		{"govx/exchange/ingest", "govx/internal/backoff", true},
		{"govx/exchange/mask", "govx/internal/backoff", false},
		{"govx/schemas", "govx/internal/backoff", false},
	} {
		if got := permitted(tt.pkg, tt.imp); got != tt.ok {
			t.Errorf("permitted(%s, %s) = %v, want %v", tt.pkg, tt.imp, got, tt.ok)
		}
	}
}
