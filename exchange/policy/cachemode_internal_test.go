package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestCacheModeNondeterministicBuiltins: policies.Check refuses these built-ins, so no
// policy the exchange loads calls them; the analysis turns the cache off for them too,
// in case that list and OPA's part ways.
func TestCacheModeNondeterministicBuiltins(t *testing.T) {
	calls := map[string]string{
		"http.send":          `http.send({"method": "GET", "url": "http://127.0.0.1:1"}).status_code == 200`,
		"rand.intn":          `rand.intn("x", 10) == 0`,
		"uuid.rfc4122":       `uuid.rfc4122("x") != ""`,
		"opa.runtime":        `opa.runtime().env.X == "1"`,
		"time.now_ns":        `time.now_ns() > 0`,
		"net.lookup_ip_addr": `count(net.lookup_ip_addr("example.org")) > 0`,
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			src := "package govx.sharing\n\nallow if {\n\t" + call + "\n}\n"
			c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
			mod, err := ast.ParseModuleWithOpts("p.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			if c.Compile(map[string]*ast.Module{"p.rego": mod}); c.Failed() {
				t.Fatal(c.Errors)
			}
			m := analyzeCache(c, requestReads(c))
			want := fmt.Sprintf("p.rego:4 calls %s, whose result the input does not determine", name)
			if m.On || len(m.Why) == 0 || !strings.HasPrefix(m.Why[0], want) {
				t.Fatalf("cache mode %v, want off — %s", m, want)
			}
		})
	}
}
