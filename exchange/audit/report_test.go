package audit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sysID struct{ dep, sys, ds string }

var bgSystems = []sysID{
	{"mz-3301", "dibao-review", "population.person"},
	{"rs-33", "pension", "population.person"},
	{"sw-33", "tax-check", "legal_entity.organization"},
	{"zj-3205", "housing", "resource.land_parcel"},
	{"wj-3302", "health", "population.person"},
}

type gen struct {
	rng *rand.Rand
	evs []*Event
	n   int
}

func (g *gen) access(s sysID, at time.Time, action string, keys []string, decision string, rows uint64) {
	g.n++
	id := fmt.Sprintf("req-%d", g.n)
	d := &Event{EventID: NewEventID(), Kind: KindDecision, Time: at, RequestID: id, Department: s.dep,
		System: s.sys, Action: action, Dataset: s.ds, Keys: keys, Decision: decision, Agreement: "agr-" + s.dep}
	g.evs = append(g.evs, d)
	if decision == Allow && dataBearing(action) {
		g.evs = append(g.evs, &Event{EventID: NewEventID(), Kind: KindComplete, Time: at.Add(200 * time.Millisecond),
			RequestID: id, Department: s.dep, System: s.sys, Action: action, Dataset: s.ds, Rows: rows, Status: StatusOK})
	}
}

// background makes ten days of ordinary use: working-hours traffic on weekdays, a few
// stray evening requests, rare denials.
func background(seed uint64) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(seed, 42))}
	loc := shanghai()
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, loc) // a Monday
	for day := 0; day < 10; day++ {
		d := start.AddDate(0, 0, day)
		weekday := d.Weekday() != time.Saturday && d.Weekday() != time.Sunday
		for _, s := range bgSystems {
			if weekday {
				n := 40 + g.rng.IntN(40)
				for i := 0; i < n; i++ {
					at := d.Add(9*time.Hour + time.Duration(g.rng.Int64N(int64(8*time.Hour+20*time.Minute))))
					dec := Allow
					if g.rng.IntN(50) == 0 {
						dec = Deny
					}
					switch g.rng.IntN(3) {
					case 0:
						g.access(s, at, "read", nil, dec, uint64(100+g.rng.IntN(5000)))
					case 1:
						g.access(s, at, "lookup", []string{fmt.Sprintf("k%09d", g.rng.IntN(1e9))}, dec, 1)
					default:
						g.access(s, at, "verify", []string{fmt.Sprintf("k%09d", g.rng.IntN(1e9))}, dec, 0)
					}
				}
			}
			if g.rng.IntN(10) < 3 { // someone working late, now and then
				for i := 0; i < 1+g.rng.IntN(3); i++ {
					at := d.Add(19*time.Hour + time.Duration(g.rng.Int64N(int64(3*time.Hour))))
					g.access(s, at, "read", nil, Allow, uint64(10+g.rng.IntN(100)))
				}
			}
		}
	}
	return g
}

func report(t *testing.T, evs []*Event, opt ReportOptions) *Report {
	t.Helper()
	it, _ := SliceStore(evs).Events(context.Background(), Filter{})
	r, err := BuildReport(context.Background(), it, opt)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestReportFindsPlantedAnomalies: over several seeds, the ordinary background alone
// raises no finding; with an off-hours burst and an enumeration planted into it, the
// report names exactly those.
func TestReportFindsPlantedAnomalies(t *testing.T) {
	loc := shanghai()
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			g := background(seed)
			clean := report(t, g.evs, ReportOptions{})
			if len(clean.Findings) != 0 {
				var b strings.Builder
				clean.WriteText(&b, loc)
				t.Fatalf("the ordinary background raised findings:\n%s", b.String())
			}
			// Saturday 02:00–03:00: the pension system reads personal data all night.
			night := time.Date(2026, 3, 7, 2, 0, 0, 0, loc)
			for i := 0; i < 60; i++ {
				g.access(bgSystems[1], night.Add(time.Duration(i)*time.Minute), "read", nil, Allow, 1000)
			}
			// Wednesday 10:00–11:00: the tax system verifies 600 sequential ID numbers.
			wed := time.Date(2026, 3, 4, 10, 0, 0, 0, loc)
			for i := 0; i < 600; i++ {
				g.access(bgSystems[2], wed.Add(time.Duration(i)*5*time.Second), "verify",
					[]string{fmt.Sprintf("3301061990%08d", i)}, Allow, 0)
			}
			r := report(t, g.evs, ReportOptions{})
			var off, enum bool
			for _, f := range r.Findings {
				switch {
				case f.Kind == FindingOffHours && f.System == "pension" && f.Count >= 60 && f.Count < 70:
					off = true
				case f.Kind == FindingEnumeration && f.System == "tax-check" && f.Count == 600 && f.Start.Equal(wed):
					enum = true
				case f.System == "pension" || f.System == "tax-check" || f.Department == "rs-33":
					// another view of the planted traffic (e.g. volume) is fair
				default:
					t.Errorf("unexpected finding: %s", f.Message)
				}
			}
			if !off || !enum {
				var b strings.Builder
				r.WriteText(&b, loc)
				t.Fatalf("off-hours found %v, enumeration found %v:\n%s", off, enum, b.String())
			}
		})
	}
}

func TestReportDenyBurstUnfinishedAndExpiry(t *testing.T) {
	loc := shanghai()
	g := background(7)
	at := time.Date(2026, 3, 3, 14, 0, 0, 0, loc)
	for i := 0; i < 25; i++ {
		g.access(bgSystems[3], at.Add(time.Duration(i)*10*time.Second), "read", nil, Deny, 0)
	}
	// A stream that never completed: a decision without its complete.
	g.evs = append(g.evs, &Event{EventID: NewEventID(), Kind: KindDecision, Time: at, RequestID: "crashed",
		Department: "wj-3302", System: "health", Action: "read", Dataset: "population.person", Decision: Allow, Agreement: "agr-wj-3302"})
	dir := t.TempDir()
	agr := filepath.Join(dir, "agreements.yaml")
	os.WriteFile(agr, []byte(`agreements:
  - {id: agr-mz-3301, valid_until: "2027-01-01", consumer: mz-3301}
  - {id: agr-rs-33, valid_until: "2026-03-20"}
  - {id: agr-sw-33, valid_until: "2026-03-05"}
  - {id: agr-zj-3205, valid_until: "2030-01-01"}
  - {id: agr-wj-3302, valid_from: "2025-01-01", valid_until: "2030-01-01"}
`), 0o600)
	agreements, err := LoadAgreements(agr)
	if err != nil {
		t.Fatal(err)
	}
	r := report(t, g.evs, ReportOptions{Agreements: agreements})
	kinds := map[string]string{}
	for _, f := range r.Findings {
		kinds[f.Kind+"/"+f.Department] = f.Message
	}
	for _, want := range []string{FindingDenyBurst + "/zj-3205", FindingNearExpiry + "/rs-33", FindingExpiredUse + "/sw-33", FindingNearExpiry + "/sw-33"} {
		if kinds[want] == "" {
			t.Errorf("missing finding %s; got %v", want, kinds)
		}
	}
	if len(kinds) != 4 {
		t.Errorf("want exactly 4 findings, got %v", kinds)
	}
	unfinished := 0
	for _, row := range r.Rows {
		unfinished += row.Unfinished
		if row.Department == "wj-3302" && row.Unfinished != 1 {
			t.Errorf("wj-3302: %d unfinished, want 1", row.Unfinished)
		}
	}
	if unfinished != 1 {
		t.Errorf("%d unfinished streams, want 1", unfinished)
	}
	r = report(t, g.evs, ReportOptions{})
	if len(r.Notes) == 0 || !strings.Contains(r.Notes[0], "--agreements") {
		t.Errorf("without agreements the report must say expiry was not checked; notes %v", r.Notes)
	}
}

func TestParseWorkHours(t *testing.T) {
	for _, tc := range []struct {
		in         string
		start, end time.Duration
		ok         bool
	}{
		{"08:30-18:00", 8*time.Hour + 30*time.Minute, 18 * time.Hour, true},
		{"9:00-17:00", 9 * time.Hour, 17 * time.Hour, true},
		{"18:00-08:00", 0, 0, false},
		{"0830-1800", 0, 0, false},
	} {
		s, e, err := ParseWorkHours(tc.in)
		if (err == nil) != tc.ok || s != tc.start || e != tc.end {
			t.Errorf("%q: %v %v %v", tc.in, s, e, err)
		}
	}
}
