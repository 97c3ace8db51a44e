package review

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"govx/exchange/audit"
)

// TestSubjectListsReadsWithOutcomes: the subject report lists lookups and verifies that
// named the key and the pulls whose scope included the record, each with its outcome;
// only what returned (or may have returned) the record counts as a read.
func TestSubjectListsReadsWithOutcomes(t *testing.T) {
	const key = "330106199001011234"
	at := time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	n := 0
	var evs []*audit.Event
	add := func(action, decision, errCode, filter string, keys []string, complete *audit.Event) string {
		n++
		id := "r" + string(rune('a'+n))
		evs = append(evs, &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at.Add(time.Duration(n) * time.Minute), RequestID: id,
			Department: "mz-3301", System: "dibao-review", Action: action, Dataset: "population.person", Keys: keys,
			Decision: decision, Error: errCode, Filter: filter})
		if complete != nil {
			complete.EventID, complete.Kind, complete.RequestID, complete.Time = audit.NewEventID(), audit.KindComplete, id, at.Add(time.Duration(n)*time.Minute+time.Second)
			evs = append(evs, complete)
		}
		return id
	}
	read := add("lookup", audit.Allow, "", "", []string{key}, &audit.Event{Rows: 1, Status: audit.StatusOK})
	gone := add("lookup", audit.Allow, "", "", []string{key}, &audit.Event{Status: audit.StatusAborted, Error: "client went away"})
	denied := add("lookup", audit.Deny, "lookup_budget_exhausted", "", []string{key}, nil)
	verified := add("verify", audit.Allow, "", "", []string{key}, nil)
	pulled := add("read", audit.Allow, "", "in", nil, &audit.Event{Rows: 500, Status: audit.StatusOK})
	add("read", audit.Allow, "", "out", nil, &audit.Event{Rows: 500, Status: audit.StatusOK})
	empty := add("changes", audit.Allow, "", "in", nil, &audit.Event{Rows: 0, Status: audit.StatusOK})
	unfinished := add("read", audit.Allow, "", "in", nil, nil)
	cut := add("read", audit.Allow, "", "cut", nil, &audit.Event{Rows: 3, Status: audit.StatusOK})
	add("read", audit.Deny, "", "in", nil, nil)                                                                       // a denied pull returned nothing of anyone
	add("lookup", audit.Allow, "", "", []string{"330106199001015678"}, &audit.Event{Rows: 1, Status: audit.StatusOK}) // another person
	// A correction flagged on the record names its key but returns none of its values.
	flagged := add("correction.flag", audit.Allow, "", "", []string{key}, nil)

	inScope := func(ev *audit.Event) (bool, error) {
		switch ev.Filter {
		case "cut":
			return false, errors.New("the recorded scope was cut")
		case "out":
			return false, nil
		}
		return true, nil
	}
	it, _ := audit.SliceStore(evs).Events(context.Background(), audit.Filter{})
	rep, err := BuildSubject(context.Background(), it, SubjectOptions{Key: key, Dataset: "population.person", InScope: inScope})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		how  string
		read bool
	}{
		read: {HowLookup, true}, gone: {HowLookup, false}, denied: {HowLookup, false}, verified: {HowVerify, false},
		pulled: {HowPull, true}, empty: {HowPull, false}, unfinished: {HowPull, true}, cut: {HowPull, true},
		flagged: {HowCorrection, false},
	}
	if len(rep.Accesses) != len(want) {
		t.Errorf("%d accesses listed, want %d", len(rep.Accesses), len(want))
	}
	for _, a := range rep.Accesses {
		w, ok := want[a.Decision.RequestID]
		if !ok {
			t.Errorf("listed %s %s (%s), which did not touch the record", a.Decision.RequestID, a.Decision.Action, a.Outcome)
			continue
		}
		if a.How != w.how || a.Read != w.read {
			t.Errorf("%s: how %q read %v (%s), want %q %v", a.Decision.RequestID, a.How, a.Read, a.Outcome, w.how, w.read)
		}
	}
	if rep.Reads != 4 || rep.Verifies != 1 || rep.Nothing != 3 || rep.Corrections != 1 {
		t.Errorf("reads %d, verifies %d, nothing %d, corrections %d; want 4, 1, 3, 1", rep.Reads, rep.Verifies, rep.Nothing, rep.Corrections)
	}
	var b bytes.Buffer
	if err := WriteSubject(&b, rep, "table", time.UTC); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"4 reads", HowPull, "returned nothing (aborted: client went away)", "denied: lookup_budget_exhausted", "scope not evaluated", "1 correction steps (not accesses)", "not an access"} {
		if !strings.Contains(out, s) {
			t.Errorf("the table does not say %q:\n%s", s, out)
		}
	}

	// Without the record's values, pulls are not matched and the report says so.
	it, _ = audit.SliceStore(evs).Events(context.Background(), audit.Filter{})
	rep, _ = BuildSubject(context.Background(), it, SubjectOptions{Key: key})
	if len(rep.Accesses) != 5 || len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "--record") {
		t.Errorf("without --record: %d accesses, notes %v; want the 5 keyed ones and a note", len(rep.Accesses), rep.Notes)
	}
}
