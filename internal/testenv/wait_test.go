package testenv

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

func wait(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) (failed string) {
	r := &recorder{TB: t}
	defer func() {
		if p := recover(); p != nil && p != any(r) {
			panic(p)
		}
		failed = r.failed
	}()
	WaitForState(r, timeout, what, cond)
	return ""
}

func TestWaitFor(t *testing.T) {
	n := 0
	if f := wait(t, time.Second, "the third call", func() (bool, string) { n++; return n == 3, "" }); f != "" || n != 3 {
		t.Fatalf("a condition met on the third call: failed %q after %d calls", f, n)
	}
	start := time.Now()
	f := wait(t, 50*time.Millisecond, "nothing", func() (bool, string) { return false, "still 0 rows" })
	if f != "timed out after 50ms waiting for nothing (last: still 0 rows)" {
		t.Fatalf("failure %q", f)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
		t.Fatalf("gave up after %v, want about 50ms", d)
	}
	r := &recorder{TB: t}
	func() {
		defer func() { recover() }()
		WaitFor(r, 10*time.Millisecond, "never", func() bool { return false })
	}()
	if r.failed != "timed out after 10ms waiting for never" || strings.Contains(r.failed, "last") {
		t.Fatalf("failure %q", r.failed)
	}
}
