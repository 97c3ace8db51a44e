package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange"
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

// TestPullToFiles: `govx pull --format arrow` and `--format parquet` write files that
// Arrow reads back as the same rows, with the pull's schema and cursor; a pull matching
// no row writes a Parquet file holding the schema and no rows.
func TestPullToFiles(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{SegmentRows: 8})
	conn := consumerExchange(t, f, "mz-3301/dibao-review")
	dir := t.TempDir()
	pull := func(format, file string, args ...string) string {
		t.Helper()
		args = append([]string{"pull", "population.person", "--purpose", "minimum-living-allowance-review", "--format", format,
			"-o", filepath.Join(dir, file)}, append(args, conn...)...)
		out, err := runGovx(t, args...)
		if err != nil {
			t.Fatalf("pull --format %s: %v\n%s", format, err, out)
		}
		return out
	}
	out := pull("arrow", "p.arrows")
	pull("parquet", "p.parquet")

	fa, err := os.Open(filepath.Join(dir, "p.arrows"))
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	rdr, err := ipc.NewReader(fa)
	if err != nil {
		t.Fatalf("the arrow file does not open as an IPC stream: %v", err)
	}
	defer rdr.Release()
	var recs []arrow.Record
	for rdr.Next() {
		rdr.Record().Retain()
		recs = append(recs, rdr.Record())
	}
	if rdr.Err() != nil {
		t.Fatal(rdr.Err())
	}
	fromIPC := array.NewTableFromRecords(rdr.Schema(), recs)
	defer fromIPC.Release()
	md := rdr.Schema().Metadata()
	cursor := md.Values()[md.FindKey(exchange.MetaCursor)]
	if want := fmt.Sprintf("%d rows of population.person\ncursor: %s\n", fromIPC.NumRows(), cursor); fromIPC.NumRows() < 9 || !strings.Contains(out, want) {
		t.Errorf("pull said %q; the file holds %d rows and cursor %s (want more than one batch of 8)", out, fromIPC.NumRows(), cursor)
	}

	pf, err := os.Open(filepath.Join(dir, "p.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	fromParquet, err := pqarrow.ReadTable(context.Background(), pf, nil, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatalf("the parquet file does not read: %v", err)
	}
	defer fromParquet.Release()
	sameFields := func(a, b *arrow.Schema) bool {
		if a.NumFields() != b.NumFields() {
			return false
		}
		for i := range a.NumFields() {
			fa, fb := a.Field(i), b.Field(i)
			if fa.Name != fb.Name || !arrow.TypeEqual(fa.Type, fb.Type) || fa.Metadata.Values()[fa.Metadata.FindKey("govx.mask")] != fb.Metadata.Values()[fb.Metadata.FindKey("govx.mask")] {
				return false
			}
		}
		return true
	}
	if !sameFields(fromParquet.Schema(), fromIPC.Schema()) || fromParquet.NumRows() != fromIPC.NumRows() {
		t.Fatalf("parquet file: schema %v, %d rows; arrow file: %v, %d rows", fromParquet.Schema(), fromParquet.NumRows(), fromIPC.Schema(), fromIPC.NumRows())
	}
	for i := range int(fromIPC.NumCols()) {
		if !array.ChunkedEqual(fromIPC.Column(i).Data(), fromParquet.Column(i).Data()) {
			t.Errorf("column %s differs between the parquet and the arrow file", fromIPC.Schema().Field(i).Name)
		}
	}

	// A refused pull leaves the file it would have replaced as it was, and no partial
	// file beside it; so does a pull to a directory's name.
	before, err := os.ReadFile(filepath.Join(dir, "p.arrows"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"--columns", "phone", "-o", filepath.Join(dir, "p.arrows")}, {"-o", dir}} {
		args := append([]string{"pull", "population.person", "--purpose", "minimum-living-allowance-review", "--format", "arrow"}, append(bad, conn...)...)
		if out, err := runGovx(t, args...); err == nil {
			t.Errorf("pull %v: no error\n%s", bad, out)
		}
	}
	if after, err := os.ReadFile(filepath.Join(dir, "p.arrows")); err != nil || string(after) != string(before) {
		t.Errorf("a refused pull changed the earlier export: %d bytes before, %d after (%v)", len(before), len(after), err)
	}
	if partial, _ := filepath.Glob(filepath.Join(dir, ".*partial")); len(partial) > 0 {
		t.Errorf("partial files left behind: %v", partial)
	}

	pull("parquet", "none.parquet", "--where", "household_region = 999999")
	nf, err := os.Open(filepath.Join(dir, "none.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer nf.Close()
	none, err := pqarrow.ReadTable(context.Background(), nf, nil, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatalf("an empty pull's parquet file does not read: %v", err)
	}
	defer none.Release()
	if none.NumRows() != 0 || none.NumCols() != fromIPC.NumCols() {
		t.Errorf("empty pull: %d rows, %d columns; want 0 rows and the pull's %d columns", none.NumRows(), none.NumCols(), fromIPC.NumCols())
	}
}
