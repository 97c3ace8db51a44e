package testenv

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test when timeout passes first with
// "timed out after <timeout> waiting for <what>". It polls quickly at first, then every
// 100 ms, so that a condition met at once costs nothing and an expensive one (a query
// to a service) is not hammered.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitForState(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// WaitForState is WaitFor for a condition that also describes the state it saw; the
// last description is in the failure ("(last: …)").
func WaitForState(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state != "" {
				t.Fatalf("timed out after %v waiting for %s (last: %s)", timeout, what, state)
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}
