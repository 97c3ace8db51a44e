package service

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"govx/exchange"
	"govx/exchange/audit"
)

// TestCursorBoundToDepartment: a changes cursor says how far one department has read;
// another department presenting it is refused, and the refusal is audited.
func TestCursorBoundToDepartment(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g, err := f.svc.Open(ctx, hz, pullCmd())
	if err != nil {
		t.Fatal(err)
	}
	var cursor string
	if _, err := f.svc.Stream(ctx, g, &cursorSink{out: &cursor}); err != nil || cursor == "" {
		t.Fatalf("no cursor: %v", err)
	}
	cmd := pullCmd()
	cmd.Since = cursor
	// The same department from another of its systems may continue.
	sibling := Caller{Subject: exchange.Subject{Department: "mz-3301", System: "case-desk"}, ClientAddr: "127.0.0.1:2"}
	for _, c := range []Caller{hz, sibling} {
		_, err := f.svc.Open(ctx, c, cmd)
		if xe, ok := err.(*exchange.Error); ok && xe.Code == "foreign_cursor" {
			t.Fatalf("%v: its own department's cursor refused: %v", c.Subject, err)
		}
	}
	nj := Caller{Subject: exchange.Subject{Department: "mz-3201", System: "case-system"}, ClientAddr: "127.0.0.1:3"}
	_, err = f.svc.Open(ctx, nj, cmd)
	xe, ok := err.(*exchange.Error)
	if !ok || xe.Code != "foreign_cursor" || xe.Kind != exchange.PermissionDenied {
		t.Fatalf("mz-3201 with mz-3301's cursor: %v, want permission denied foreign_cursor", err)
	}
	evs := events(t, f.dir)
	last := evs[len(evs)-1]
	if last.Department != "mz-3201" || last.Decision != audit.Deny || last.Error != "foreign_cursor" || last.Action != string(exchange.ActionChanges) {
		t.Fatalf("the refusal's audit event %+v, want mz-3201's denied changes pull with foreign_cursor", last)
	}
}

// TestLookupKeyMustBeText: a key sent as a JSON number would be read as a float64 and
// lose digits; it is refused as bad_key, and so is any other non-string.
func TestLookupKeyMustBeText(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.ids["3301"][0]
	digits := strings.TrimSuffix(id, "X")
	for _, raw := range []string{digits, "null", "true", `{"id_number":"` + id + `"}`, `["` + id + `"]`} {
		if strings.HasSuffix(id, "X") && raw == digits {
			continue // a number cannot even spell this ID
		}
		_, err := lookup(f, ctx, hz, exchange.LookupCmd{Key: json.RawMessage(raw), Purpose: "minimum-living-allowance-review"})
		if xe, ok := err.(*exchange.Error); !ok || xe.Code != "bad_key" || xe.Kind != exchange.Invalid {
			t.Errorf("lookup with key %s: %v, want invalid bad_key", raw, err)
		}
	}
	evs := events(t, f.dir)
	for _, ev := range evs {
		if len(ev.Keys) > 0 {
			t.Errorf("a refused key was recorded as %v: a malformed key names no record", ev.Keys)
		}
	}
	key, _ := json.Marshal(id)
	if _, err := lookup(f, ctx, hz, exchange.LookupCmd{Key: key, Purpose: "minimum-living-allowance-review"}); err != nil {
		t.Fatalf("the same key as a string: %v", err)
	}
}

// TestDuplicateFieldsRefused: with a name given twice, which value counts depends on
// the decoder; the exchange answers with an error instead of a guess.
func TestDuplicateFieldsRefused(t *testing.T) {
	for _, body := range []string{
		`{"dataset":"population.person","purpose":"a","purpose":"minimum-living-allowance-review"}`,
		`{"dataset":"population.person","purpose":"a","PURPOSE":"b"}`,
		`{"dataset":"population.person","filter":[{"column":"household_region","op":"prefix","value":"3301","value":"32"}]}`,
	} {
		_, err := ParseCmd([]byte(body))
		if xe, ok := err.(*exchange.Error); !ok || xe.Code != "duplicate_field" || xe.Kind != exchange.Invalid {
			t.Errorf("ParseCmd(%s): %v, want invalid duplicate_field", body, err)
		}
	}
	if _, err := ParseVerify([]byte(`{"key":"x","claims":{"name":"张三","name":"李四"}}`)); err == nil || !strings.Contains(err.Error(), "duplicate_field") {
		t.Errorf("a verify claiming one name twice: %v, want duplicate_field", err)
	}
	if _, err := ParseLookup([]byte(`{"key":"a","key":"b","purpose":"p"}`)); err == nil || !strings.Contains(err.Error(), "duplicate_field") {
		t.Errorf("a lookup with two keys: %v, want duplicate_field", err)
	}
}
