package main

import (
	"strings"
	"testing"
)

func run(lines ...string) (string, bool) {
	var out strings.Builder
	c := newChecker(&out)
	for _, l := range lines {
		c.line(l)
	}
	ok := c.finish()
	return out.String(), ok
}

func TestChecker(t *testing.T) {
	const pkg = `"Package":"govx/x"`
	tests := []struct {
		name   string
		lines  []string
		ok     bool
		last   string
		output []string // substrings the report must contain
		absent []string // and must not
	}{
		{
			name: "all pass",
			lines: []string{
				`{"Action":"run",` + pkg + `,"Test":"TestA"}`,
				`{"Action":"output",` + pkg + `,"Test":"TestA","Output":"=== RUN   TestA\n"}`,
				`{"Action":"pass",` + pkg + `,"Test":"TestA","Elapsed":0.1}`,
				`{"Action":"pass",` + pkg + `,"Elapsed":0.2}`,
			},
			ok:     true,
			last:   "1 passed, 0 failed, 0 skipped",
			output: []string{"ok    govx/x"},
		},
		{
			name: "failure printed in full",
			lines: []string{
				`{"Action":"run",` + pkg + `,"Test":"TestA"}`,
				`{"Action":"output",` + pkg + `,"Test":"TestA","Output":"=== RUN   TestA\n"}`,
				`{"Action":"output",` + pkg + `,"Test":"TestA","Output":"    a_test.go:9: want 2, got 3\n"}`,
				`{"Action":"output",` + pkg + `,"Test":"TestA","Output":"--- FAIL: TestA (0.10s)\n"}`,
				`{"Action":"fail",` + pkg + `,"Test":"TestA","Elapsed":0.1}`,
				`{"Action":"fail",` + pkg + `,"Elapsed":0.2}`,
			},
			last:   "0 passed, 1 failed, 0 skipped",
			output: []string{"--- FAIL: TestA (govx/x", "want 2, got 3", "FAIL  govx/x"},
			absent: []string{"=== RUN", "--- FAIL: TestA (0.10s)"},
		},
		{
			name: "a skip fails the run",
			lines: []string{
				`{"Action":"run",` + pkg + `,"Test":"TestIntegrationKafka"}`,
				`{"Action":"output",` + pkg + `,"Test":"TestIntegrationKafka","Output":"    no broker\n"}`,
				`{"Action":"skip",` + pkg + `,"Test":"TestIntegrationKafka"}`,
				`{"Action":"pass",` + pkg + `}`,
			},
			last:   "0 passed, 0 failed, 1 skipped",
			output: []string{"--- SKIP: TestIntegrationKafka", "no broker"},
		},
		{
			name:   "no test ran",
			lines:  []string{`{"Action":"skip",` + pkg + `}`},
			last:   "0 passed, 0 failed, 0 skipped",
			output: []string{"no test ran"},
		},
		{
			name: "build failure",
			lines: []string{
				`{"ImportPath":"govx/x [govx/x.test]","Action":"build-output","Output":"x.go:3:1: syntax error\n"}`,
				`{"ImportPath":"govx/x [govx/x.test]","Action":"build-fail"}`,
				`{"Action":"output",` + pkg + `,"Output":"FAIL\tgovx/x [build failed]\n"}`,
				`{"Action":"fail",` + pkg + `}`,
				`{"Action":"pass","Package":"govx/y","Test":"TestB"}`,
				`{"Action":"pass","Package":"govx/y"}`,
			},
			last:   "1 passed, 0 failed, 0 skipped",
			output: []string{"BUILD FAILED", "syntax error", "package govx/x failed outside any test"},
		},
		{
			name: "timeout cuts a test off",
			lines: []string{
				`{"Action":"run",` + pkg + `,"Test":"TestSlow"}`,
				`{"Action":"output",` + pkg + `,"Test":"TestSlow","Output":"waiting for broker\n"}`,
				`{"Action":"output",` + pkg + `,"Output":"panic: test timed out after 20m0s\n"}`,
				`{"Action":"fail",` + pkg + `,"Elapsed":1200}`,
			},
			last:   "0 passed, 1 failed, 0 skipped",
			output: []string{"TestSlow (govx/x, did not finish)", "waiting for broker", "test timed out"},
		},
		{
			name:   "go itself fails",
			lines:  []string{"go: cannot find main module"},
			last:   "0 passed, 0 failed, 0 skipped",
			output: []string{"go: cannot find main module"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := run(tt.lines...)
			if ok != tt.ok {
				t.Errorf("ok = %v, want %v; report:\n%s", ok, tt.ok, out)
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if got := lines[len(lines)-1]; got != tt.last {
				t.Errorf("closing line %q, want %q", got, tt.last)
			}
			for _, s := range tt.output {
				if !strings.Contains(out, s) {
					t.Errorf("report lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(out, s) {
					t.Errorf("report has %q, which is noise:\n%s", s, out)
				}
			}
		})
	}
}
