package audit

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSubjectListsReadsWithOutcomes: the subject report lists lookups and verifies that
// named the key and the pulls whose scope included the record, each with its outcome;
// only what returned (or may have returned) the record counts as a read.
func TestSubjectListsReadsWithOutcomes(t *testing.T) {
	const key = "330106199001011234"
	at := time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	n := 0
	var evs []*Event
	add := func(action, decision, errCode, filter string, keys []string, complete *Event) string {
		n++
		id := "r" + string(rune('a'+n))
		evs = append(evs, &Event{EventID: NewEventID(), Kind: KindDecision, Time: at.Add(time.Duration(n) * time.Minute), RequestID: id,
			Department: "mz-3301", System: "dibao-review", Action: action, Dataset: "population.person", Keys: keys,
			Decision: decision, Error: errCode, Filter: filter})
		if complete != nil {
			complete.EventID, complete.Kind, complete.RequestID, complete.Time = NewEventID(), KindComplete, id, at.Add(time.Duration(n)*time.Minute+time.Second)
			evs = append(evs, complete)
		}
		return id
	}
	read := add("lookup", Allow, "", "", []string{key}, &Event{Rows: 1, Status: StatusOK})
	gone := add("lookup", Allow, "", "", []string{key}, &Event{Status: StatusAborted, Error: "client went away"})
	denied := add("lookup", Deny, "lookup_budget_exhausted", "", []string{key}, nil)
	verified := add("verify", Allow, "", "", []string{key}, nil)
	pulled := add("read", Allow, "", "in", nil, &Event{Rows: 500, Status: StatusOK})
	add("read", Allow, "", "out", nil, &Event{Rows: 500, Status: StatusOK})
	empty := add("changes", Allow, "", "in", nil, &Event{Rows: 0, Status: StatusOK})
	unfinished := add("read", Allow, "", "in", nil, nil)
	cut := add("read", Allow, "", "cut", nil, &Event{Rows: 3, Status: StatusOK})
	add("read", Deny, "", "in", nil, nil)                                                           // a denied pull returned nothing of anyone
	add("lookup", Allow, "", "", []string{"330106199001015678"}, &Event{Rows: 1, Status: StatusOK}) // another person

	inScope := func(ev *Event) (bool, error) {
		switch ev.Filter {
		case "cut":
			return false, errors.New("the recorded scope was cut")
		case "out":
			return false, nil
		}
		return true, nil
	}
	it, _ := SliceStore(evs).Events(context.Background(), Filter{})
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
	if rep.Reads != 4 || rep.Verifies != 1 || rep.Nothing != 3 {
		t.Errorf("reads %d, verifies %d, nothing %d; want 4, 1, 3", rep.Reads, rep.Verifies, rep.Nothing)
	}
	var b bytes.Buffer
	if err := WriteSubject(&b, rep, "table", time.UTC); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"4 reads", HowPull, "returned nothing (aborted: client went away)", "denied: lookup_budget_exhausted", "scope not evaluated"} {
		if !strings.Contains(out, s) {
			t.Errorf("the table does not say %q:\n%s", s, out)
		}
	}

	// Without the record's values, pulls are not matched and the report says so.
	it, _ = SliceStore(evs).Events(context.Background(), Filter{})
	rep, _ = BuildSubject(context.Background(), it, SubjectOptions{Key: key})
	if len(rep.Accesses) != 4 || len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "--record") {
		t.Errorf("without --record: %d accesses, notes %v; want the 4 keyed ones and a note", len(rep.Accesses), rep.Notes)
	}
}
