package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// allowed maps a package prefix to the govx packages it may import (by prefix). A
// package takes the rule of the longest prefix that matches it; a package matching none
// may import nothing of govx.
var allowed = map[string][]string{
	"govx/schemas/ident":    {},
	"govx/schemas":          {"govx/schemas/"},
	"govx/connectors":       {"govx/schemas", "govx/connectors"},
	"govx/policies":         {"govx/schemas"},
	"govx/exchange":         {"govx/schemas", "govx/policies", "govx/exchange"},
	"govx/cmd/":             {"govx/"},
	"govx/bench/":           {"govx/"},
	"govx/deploy/":          {},
	"govx/internal/":        {},
	"govx/internal/testenv": {},
}

// testOnly packages may be imported by any test, and by nothing else.
var testOnly = []string{"govx/internal/testenv"}

func rule(pkg string) []string {
	best := ""
	for p := range allowed {
		if (pkg == p || strings.HasPrefix(pkg, strings.TrimSuffix(p, "/")+"/") || strings.HasPrefix(pkg, p)) && len(p) > len(best) {
			best = p
		}
	}
	return allowed[best]
}

func permitted(pkg, imp string) bool {
	if strings.HasPrefix(imp, pkg+"/") || imp == pkg {
		return true // a package's own sub-packages are its implementation
	}
	for _, a := range rule(pkg) {
		if imp == a || strings.HasPrefix(imp, strings.TrimSuffix(a, "/")+"/") {
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
			if !isTestOnly && !permitted(pkg, imp) {
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
	} {
		if got := permitted(tt.pkg, tt.imp); got != tt.ok {
			t.Errorf("permitted(%s, %s) = %v, want %v", tt.pkg, tt.imp, got, tt.ok)
		}
	}
}
