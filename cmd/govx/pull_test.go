package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange/audit"
	"govx/exchange/audit/review"
	xflight "govx/exchange/flight"
	"govx/exchange/httpapi"
	"govx/exchange/service"
	"govx/exchange/service/servicetest"
)

// consumerExchange runs the Flight and HTTP edges over an in-memory service of 60
// persons (servicetest), in this process, and returns the connection flags of a
// consumer command for subject ("DEPT/SYSTEM").
func consumerExchange(t *testing.T, f *servicetest.Fixture, subject string) []string {
	t.Helper()
	fln := servicetest.Listen(t, "127.0.0.1:0")
	hln := servicetest.Listen(t, "127.0.0.1:0")
	fs := xflight.New(f.Svc, f.Tokens, nil, f.Mem)
	hs := &http.Server{Handler: httpapi.New(f.Svc, f.Tokens, func() error { return nil }, prometheus.NewRegistry(), nil)}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); fs.Serve(fln) }()
	go func() { defer wg.Done(); hs.Serve(hln) }()
	t.Cleanup(func() {
		fs.Shutdown()
		hs.Close()
		wg.Wait()
	})
	return []string{"--flight", fln.Addr().String(), "--http", "http://" + hln.Addr().String(), "--token", f.Token(t, subject)}
}

// TestPullWithWhereDeniesNothingElse: a department pulling its rows with --where, as a
// department system does all day, leaves only allowed decisions in the audit log, so
// `govx audit report` finds no burst of denials. Nanjing's civil affairs bureau
// (mz-3201) may read population.person but not discover it: a pull that looked the
// dataset up in the catalog wrote a denied discover every time. A refused pull is
// refused once, not once for the lookup and again for the pull.
func TestPullWithWhereDeniesNothingElse(t *testing.T) {
	// Inside AGR-2026-0002's validity, whatever day the test runs.
	at := time.Date(2026, 6, 1, 2, 0, 0, 0, time.UTC)
	f := servicetest.New(t, servicetest.Config{AllDatasets: true, Options: []service.Option{service.WithClock(func() time.Time { return at })}})
	conn := consumerExchange(t, f, "mz-3201")
	const pulls = 21 // one more than `govx audit report`'s default --deny-burst
	for i := range pulls {
		out, err := runGovx(t, append([]string{"pull", "population.person", "--purpose", "minimum-living-allowance-review",
			"--where", "household_region prefix 3201", "--format", "csv"}, conn...)...)
		if err != nil {
			t.Fatalf("pull %d: %v\n%s", i+1, err, out)
		}
		want := len(f.IDs["3201"])
		if n := strings.Count(out, ",320102,"); n != want || !strings.Contains(out, fmt.Sprintf("%d rows of population.person", want)) {
			t.Fatalf("pull %d: %d Nanjing rows, want %d:\n%s", i+1, n, want, out)
		}
	}
	denials := func() (n int, reasons []string) {
		for _, ev := range f.Events(t) {
			if ev.Kind == audit.KindDecision && ev.Decision == audit.Deny {
				n++
				reasons = append(reasons, string(ev.Action)+" "+ev.Dataset)
			}
		}
		return n, reasons
	}
	if n, what := denials(); n != 0 {
		t.Fatalf("%d ordinary pulls wrote %d denials: %v", pulls, n, what)
	}
	out, err := runGovx(t, "audit", "report", "--spool", f.SpoolDir, "--format", "json")
	if err != nil {
		t.Fatalf("audit report: %v\n%s", err, out)
	}
	var rep review.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("audit report --format json: %v\n%s", err, out)
	}
	for _, fd := range rep.Findings {
		if fd.Kind == review.FindingDenyBurst {
			t.Errorf("audit report flags ordinary pulls as probing: %+v", fd)
		}
	}

	// phone is outside the agreement: refused, naming the column, and audited once.
	out, err = runGovx(t, append([]string{"pull", "population.person", "--purpose", "minimum-living-allowance-review",
		"--columns", "name,phone", "--where", "household_region prefix 3201"}, conn...)...)
	if err == nil || !strings.Contains(err.Error(), "permission_denied") || !strings.Contains(err.Error(), "phone") {
		t.Fatalf("pull of phone: err %v, want a denial naming phone\n%s", err, out)
	}
	if n, what := denials(); n != 1 {
		t.Errorf("one refused pull wrote %d denials, want 1: %v", n, what)
	}
}
