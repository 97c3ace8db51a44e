package review

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"govx/exchange/audit"
	"govx/schemas"
)

// hostile are values an anonymous caller can put in an event: ESC sequences that clear
// the screen or retitle the terminal, a carriage return that overwrites the line, the
// 8-bit CSI (as a raw byte and as the rune U+009B), and a right-to-left override that
// makes "gpj.exe" read as "exe.jpg".
var hostile = []string{"\x1b[2J\x1b]0;owned\x07", "ok\rforged", "a\x9b31mred", "b\u009b31mred", "x\u202egpj.exe", "tab\there\nline"}

// checkTerminalSafe fails if out holds anything a terminal would act on rather than
// print: a control character other than the newlines ending lines, a C1 control, a
// bidirectional control or a byte that is not UTF-8.
func checkTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s: output is not valid UTF-8 (a raw 8-bit control passed): %q", what, out)
	}
	for _, r := range out {
		if (r < 0x20 && r != '\n') || r == 0x7f || (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Errorf("%s: output holds %U:\n%q", what, r, out)
			return
		}
	}
}

func hostileEvents() []*audit.Event {
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var evs []*audit.Event
	for i, h := range hostile {
		evs = append(evs, &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at.Add(time.Duration(i) * time.Second),
			RequestID: fmt.Sprintf("req-%d", i), Department: "mz-3301", System: "dibao-review", Action: "lookup",
			Dataset: h, CaseRef: h, Keys: []string{h}, Decision: audit.Deny, Reasons: []string{"unauthenticated"}})
	}
	return evs
}

// TestFormatTableEscapesControls: `audit query` as a table shows every hostile value
// escaped, one event per line; CSV and JSON lines keep each value byte for byte.
func TestFormatTableEscapesControls(t *testing.T) {
	evs := hostileEvents()
	write := func(format string) string {
		it, _ := audit.SliceStore(evs).Events(context.Background(), audit.Filter{})
		var b bytes.Buffer
		if _, err := WriteEvents(&b, it, format, time.UTC); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	table := write("table")
	checkTerminalSafe(t, "table", table)
	if n := strings.Count(table, "\n"); n != len(evs)+1 {
		t.Errorf("table has %d lines for %d events and a header: a value broke a line\n%s", n, len(evs), table)
	}
	for _, esc := range []string{`\x1b[2J\x1b]0;owned\a`, `ok\rforged`, `a\x9b31mred`, `b\u009b31mred`, `x\u202egpj.exe`, `tab\there\nline`} {
		if !strings.Contains(table, esc) {
			t.Errorf("table does not show %s:\n%s", esc, table)
		}
	}

	rows, err := csv.NewReader(strings.NewReader(write("csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hostile {
		if rows[i+1][10] != h || rows[i+1][14] != h {
			t.Errorf("csv row %d: dataset %q, case_ref %q; want %q exactly", i, rows[i+1][10], rows[i+1][14], h)
		}
	}
	for i, line := range strings.Split(strings.TrimSpace(write("jsonl")), "\n") {
		var ev audit.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		// encoding/json turns invalid UTF-8 into U+FFFD; that is JSON's limit, not ours.
		if want := strings.ToValidUTF8(hostile[i], "\uFFFD"); ev.Dataset != want || ev.Keys[0] != want {
			t.Errorf("jsonl event %d: dataset %q; want %q", i, ev.Dataset, want)
		}
	}
}

// TestFormatReportEscapesControls: the text report escapes values in its table and in
// its findings' messages.
func TestFormatReportEscapesControls(t *testing.T) {
	at := time.Date(2026, 3, 4, 10, 0, 0, 0, schemas.ChinaTime)
	var evs []*audit.Event
	for i := 0; i < 30; i++ {
		evs = append(evs, &audit.Event{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at.Add(time.Duration(i) * time.Second),
			RequestID: fmt.Sprint("r", i), Department: "mz-3301\x1b[2J", System: "sys\u202etxt.exe", Action: "read",
			Dataset: "population.person\r", Decision: audit.Deny})
	}
	rep := report(t, evs, ReportOptions{})
	if len(rep.Findings) == 0 {
		t.Fatal("no deny-burst finding to show")
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b, time.UTC); err != nil {
		t.Fatal(err)
	}
	checkTerminalSafe(t, "report", b.String())
	if !strings.Contains(b.String(), `mz-3301\x1b[2J/sys\u202etxt.exe was denied 30 times`) || !strings.Contains(b.String(), `population.person\r`) {
		t.Errorf("report does not show the escaped values:\n%s", b.String())
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"population.person": "population.person",
		"张三 北京":             "张三 北京",
		`C:\dir`:            `C:\\dir`,
		`\x1b`:              `\\x1b`, // text that looks like an escape is not one
		"\x1b":              `\x1b`,
		"\x7f":              `\x7f`,
		"\u200b":            `\u200b`,
		"\U000e0041":        `\U000e0041`,
		"\xff":              `\xff`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFormatTableShowsAggregateQuery: the table shows an aggregate's query text on its
// decision and its suppressed cells on its complete, escaped like every value, and why
// a response did not end ok.
func TestFormatTableShowsAggregateQuery(t *testing.T) {
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	sql := "SELECT gender, COUNT(*) FROM population.person\nGROUP BY gender"
	evs := []*audit.Event{
		{EventID: audit.NewEventID(), Kind: audit.KindDecision, Time: at, RequestID: "r1", Department: "tj-33", Action: "aggregate",
			Dataset: "population.person", Decision: audit.Allow, Reasons: []string{"query: " + sql, "plan: group_by [gender]"}},
		{EventID: audit.NewEventID(), Kind: audit.KindComplete, Time: at.Add(time.Second), RequestID: "r1", Department: "tj-33", Action: "aggregate",
			Dataset: "population.person", Status: audit.StatusOK, Rows: 2, Reasons: []string{"suppressed_cells: 3"}},
		{EventID: audit.NewEventID(), Kind: audit.KindComplete, Time: at.Add(2 * time.Second), RequestID: "r2", Department: "rs-33", Action: "read",
			Dataset: "population.person", Status: audit.StatusAborted, Rows: 37000, Error: "client stopped reading"},
	}
	it, _ := audit.SliceStore(evs).Events(context.Background(), audit.Filter{})
	var b bytes.Buffer
	if _, err := WriteEvents(&b, it, "table", time.UTC); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], "NOTE") ||
		!strings.HasSuffix(lines[1], `query: SELECT gender, COUNT(*) FROM population.person\nGROUP BY gender`) ||
		!strings.HasSuffix(lines[2], "suppressed_cells: 3") || !strings.HasSuffix(lines[3], "client stopped reading") {
		t.Errorf("table:\n%s", b.String())
	}
}
