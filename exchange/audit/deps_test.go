package audit

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestImportsStayOneWay: the exchange imports audit, never the reverse; audit may use
// only govx/schemas of ours and internal/backoff, a leaf that imports nothing of govx
// (tests may also use internal/testenv).
func TestImportsStayOneWay(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if (p == "govx" || strings.HasPrefix(p, "govx/")) && p != "govx/schemas" && p != "govx/internal/backoff" {
				t.Errorf("%s imports %s: package audit must not depend on the rest of govx", name, p)
			}
		}
	}
}
