// Command testcheck reads `go test -json` on stdin and prints what a person needs from
// it: every failed or skipped test with its full output, build failures, and one line
// per package, then a closing line "N passed, N failed, N skipped". It exits non-zero
// when anything failed or was skipped, when a package failed outside any test (build
// error, panic, timeout), or when no test ran at all: under `make test` a skip means a
// real service was not used, which must not pass quietly.
//
// Usage: go test -json ./... | go run ./deploy/local/testcheck [-summary FILE]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Time       time.Time
	Action     string
	Package    string
	ImportPath string // build-output and build-fail events name the package here
	Test       string
	Elapsed    float64
	Output     string
}

type pkgState struct {
	output  strings.Builder             // package-level output: panics, timeouts, setup errors
	tests   map[string]*strings.Builder // per test, until its result is known
	running map[string]bool
	passed  int
	failed  int
	skipped int
}

type checker struct {
	out      io.Writer
	pkgs     map[string]*pkgState
	builds   map[string]*strings.Builder // build output per import path
	passed   int
	failed   int
	skipped  int
	pkgFails []string // packages that failed without a failing test to show for it
}

func newChecker(out io.Writer) *checker {
	return &checker{out: out, pkgs: map[string]*pkgState{}, builds: map[string]*strings.Builder{}}
}

func (c *checker) pkg(name string) *pkgState {
	p := c.pkgs[name]
	if p == nil {
		p = &pkgState{tests: map[string]*strings.Builder{}, running: map[string]bool{}}
		c.pkgs[name] = p
	}
	return p
}

// line handles one input line. Lines that are not JSON (for example `go` itself
// failing before any package runs) are passed through, since they are the error.
func (c *checker) line(raw string) {
	var e event
	if !strings.HasPrefix(raw, "{") || json.Unmarshal([]byte(raw), &e) != nil {
		fmt.Fprintln(c.out, raw)
		return
	}
	switch e.Action {
	case "build-output":
		b := c.builds[e.ImportPath]
		if b == nil {
			b = &strings.Builder{}
			c.builds[e.ImportPath] = b
		}
		b.WriteString(e.Output)
		return
	case "build-fail":
		fmt.Fprintf(c.out, "BUILD FAILED %s\n", e.ImportPath)
		if b := c.builds[e.ImportPath]; b != nil {
			fmt.Fprint(c.out, indent(b.String()))
		}
		return
	}
	if e.Package == "" {
		return
	}
	p := c.pkg(e.Package)
	if e.Test == "" {
		c.pkgEvent(e, p)
		return
	}
	buf := p.tests[e.Test]
	if buf == nil {
		buf = &strings.Builder{}
		p.tests[e.Test] = buf
	}
	switch e.Action {
	case "run":
		p.running[e.Test] = true
	case "output":
		buf.WriteString(e.Output)
	case "pass":
		delete(p.running, e.Test)
		delete(p.tests, e.Test)
		p.passed++
		c.passed++
	case "fail":
		delete(p.running, e.Test)
		p.failed++
		c.failed++
		fmt.Fprintf(c.out, "--- FAIL: %s (%s, %.2fs)\n%s", e.Test, e.Package, e.Elapsed, indent(trimTest(buf.String(), e.Test)))
		delete(p.tests, e.Test)
	case "skip":
		delete(p.running, e.Test)
		p.skipped++
		c.skipped++
		fmt.Fprintf(c.out, "--- SKIP: %s (%s) — a skipped test counts as a failure here\n%s", e.Test, e.Package, indent(trimTest(buf.String(), e.Test)))
		delete(p.tests, e.Test)
	}
}

func (c *checker) pkgEvent(e event, p *pkgState) {
	switch e.Action {
	case "output":
		p.output.WriteString(e.Output)
	case "pass":
		fmt.Fprintf(c.out, "ok    %-50s %6.2fs  %s\n", e.Package, e.Elapsed, p.counts())
	case "skip":
		if p.passed+p.failed+p.skipped == 0 {
			return // no test files: nothing ran, nothing to say
		}
		fmt.Fprintf(c.out, "?     %-50s %s\n", e.Package, p.counts())
	case "fail":
		// Tests still running when the package failed were cut off by a panic or the
		// -timeout: they failed, and their output so far says where they stood.
		names := make([]string, 0, len(p.running))
		for name := range p.running {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			p.failed++
			c.failed++
			fmt.Fprintf(c.out, "--- FAIL: %s (%s, did not finish)\n%s", name, e.Package, indent(p.tests[name].String()))
		}
		p.running = map[string]bool{}
		if p.failed == 0 {
			c.pkgFails = append(c.pkgFails, e.Package)
		}
		fmt.Fprintf(c.out, "FAIL  %-50s %6.2fs  %s\n%s", e.Package, e.Elapsed, p.counts(), indent(keepUseful(p.output.String())))
	}
}

func (p *pkgState) counts() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", p.passed, p.failed, p.skipped)
}

// keepUseful drops the summary lines go test prints for a package (we print our own).
func keepUseful(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || t == "PASS" || t == "FAIL" || strings.HasPrefix(t, "ok ") || strings.HasPrefix(t, "FAIL\t") || strings.HasPrefix(t, "=== RUN") {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// trimTest drops the framing lines go test writes around a test's own output (=== RUN,
// --- FAIL: name), which only repeat the header we print.
func trimTest(s, name string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "=== ") && strings.HasSuffix(t, " "+name) ||
			strings.HasPrefix(t, "--- FAIL: "+name+" (") || strings.HasPrefix(t, "--- SKIP: "+name+" (") {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    ")
		b.WriteString(strings.TrimRight(l, "\n"))
		b.WriteString("\n")
	}
	return b.String()
}

// finish prints the closing line and reports whether the run is a success.
func (c *checker) finish() bool {
	ok := true
	for _, name := range c.pkgFails {
		fmt.Fprintf(c.out, "package %s failed outside any test (see above)\n", name)
		ok = false
	}
	if c.passed+c.failed+c.skipped == 0 {
		fmt.Fprintln(c.out, "no test ran: check the package pattern and the build output above")
		ok = false
	}
	if c.failed > 0 || c.skipped > 0 {
		ok = false
	}
	fmt.Fprintf(c.out, "%d passed, %d failed, %d skipped\n", c.passed, c.failed, c.skipped)
	return ok
}

func main() {
	summary := flag.String("summary", "", "also write the closing line to this `file`, for a caller that prints more output after the tests")
	flag.Parse()
	c := newChecker(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		c.line(sc.Text())
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "testcheck: reading go test -json output: %v\n", err)
		os.Exit(2)
	}
	ok := c.finish()
	if *summary != "" {
		line := fmt.Sprintf("%d passed, %d failed, %d skipped\n", c.passed, c.failed, c.skipped)
		if err := os.WriteFile(*summary, []byte(line), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "testcheck: %v\n", err)
		}
	}
	if !ok {
		os.Exit(1)
	}
}
