package review

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"govx/exchange/audit"
	"govx/schemas"
)

// TestReportShowsRegistersPerCase: a case whose requests reached into several registers
// (a subject view's parts share its case_ref) is listed with the registers it touched;
// a case of one register, denied parts and discovery are not.
func TestReportShowsRegistersPerCase(t *testing.T) {
	at := time.Date(2026, 3, 3, 10, 0, 0, 0, schemas.ChinaTime)
	ev := func(ref, ds, dec string) *audit.Event {
		return &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at, RequestID: "req-" + ref,
			Department: "mz-3301", System: "dibao-review", Action: "lookup", Dataset: ds, CaseRef: ref, Decision: dec}
	}
	evs := []*audit.Event{
		ev("330106-2026-000123", "population.person", audit.Allow),
		ev("330106-2026-000123", "legal_entity.organization", audit.Allow),
		ev("330106-2026-000123", "resource.land_parcel", audit.Allow),
		ev("330106-2026-000123", "license.certificate", audit.Deny),
		ev("330106-2026-000999", "population.person", audit.Allow),
	}
	r := report(t, evs, ReportOptions{})
	if len(r.Cases) != 1 || r.Cases[0].CaseRef != "330106-2026-000123" || len(r.Cases[0].Registers) != 3 {
		t.Fatalf("cases %+v: want the one case that touched three registers (the denied part not counted)", r.Cases)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b, schemas.ChinaTime); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "case 330106-2026-000123: 3 registers (legal_entity.organization, population.person, resource.land_parcel)") {
		t.Fatalf("the report text does not show the case's registers:\n%s", b.String())
	}
}

// TestSubjectViewPartsCountedApart: a subject view records one decision per register
// under one request id; the report and the subject report count each part on its own —
// the part that returned the person is a read of population.person, the withheld parts
// are denials of their registers, and no part's rows land on another's dataset.
func TestSubjectViewPartsCountedApart(t *testing.T) {
	const key = "330102198003089954"
	at := time.Date(2026, 3, 3, 10, 0, 0, 0, schemas.ChinaTime)
	var evs []*audit.Event
	for i, ds := range []string{"population.person", "legal_entity.organization", "resource.land_parcel", "license.certificate"} {
		dec := audit.Deny
		if i == 0 {
			dec = audit.Allow
		}
		evs = append(evs, &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at, RequestID: "req-view",
			Department: "rs-33", System: "pension", Action: "lookup", Dataset: ds, Keys: []string{key}, Decision: dec})
	}
	evs = append(evs, &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindComplete, Time: at.Add(time.Millisecond), RequestID: "req-view",
		Department: "rs-33", System: "pension", Action: "lookup", Dataset: "population.person", Keys: []string{key}, Rows: 1, Bytes: 300, Status: audit.StatusOK})
	r := report(t, evs, ReportOptions{})
	for _, row := range r.Rows {
		switch {
		case row.Dataset == "population.person" && (row.Rows != 1 || row.Denied != 0 || row.Unfinished != 0):
			t.Errorf("the part that returned the person: %+v, want 1 row, not denied, finished", row)
		case row.Dataset != "population.person" && (row.Rows != 0 || row.Denied != 1):
			t.Errorf("a withheld part: %+v, want denied with no rows", row)
		}
	}
	it, _ := audit.SliceStore(evs).Events(context.Background(), audit.Filter{Key: key})
	sr, err := BuildSubject(context.Background(), it, SubjectOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if sr.Reads != 1 {
		t.Fatalf("the subject report counts %d reads of the person, want 1 (the view's person part)", sr.Reads)
	}
}
