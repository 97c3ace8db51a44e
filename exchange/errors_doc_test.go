package exchange_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestErrorCodesAreDocumented keeps docs/errors.md complete: every error code the
// exchange's code can return must be listed there, since callers program against them.
func TestErrorCodesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/errors.md")
	if err != nil {
		t.Fatal(err)
	}
	patterns := regexp.MustCompile(`(?:E\(exchange\.[A-Za-z]+, |invalid\(|Code: +)"([a-z_]+)"`)
	found := map[string]string{}
	filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, _ := os.ReadFile(path)
		for _, m := range patterns.FindAllStringSubmatch(string(src), -1) {
			found[m[1]] = path
		}
		return nil
	})
	if len(found) < 15 {
		t.Fatalf("found only %d error codes in the sources; the pattern no longer matches the code", len(found))
	}
	// Policy reason codes are documented in docs/policies.md, not here.
	reasons, err := os.ReadFile("../docs/policies.md")
	if err != nil {
		t.Fatal(err)
	}
	for code, file := range found {
		if !strings.Contains(string(doc), "`"+code+"`") && !strings.Contains(string(reasons), "| `"+code+"` |") {
			t.Errorf("error code %q (used in exchange/%s) is not in docs/errors.md", code, file)
		}
	}
}
