package review

import (
	"bytes"
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
