package review

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"govx/exchange/audit"
	"govx/schemas"
)

// Formats of WriteEvents.
var Formats = []string{"table", "csv", "jsonl"}

// WriteEvents writes the events of it to w as "table" (aligned columns for a
// terminal, times in loc), "csv" (every field, a header line) or "jsonl" (one JSON
// object a line, every field). It returns how many events it wrote.
func WriteEvents(w io.Writer, it audit.Iterator, format string, loc *time.Location) (int, error) {
	defer it.Close()
	if loc == nil {
		loc = schemas.ChinaTime
	}
	bw := bufio.NewWriter(w)
	n := 0
	switch format {
	case "jsonl":
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		for it.Next() {
			if err := enc.Encode(it.Event()); err != nil {
				return n, err
			}
			n++
		}
	case "csv":
		cw := csv.NewWriter(bw)
		cw.Write(csvHeader)
		for it.Next() {
			if err := cw.Write(csvRecord(it.Event())); err != nil {
				return n, err
			}
			n++
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return n, err
		}
	case "table", "":
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tKIND\tDEPARTMENT\tSYSTEM\tACTION\tDATASET\tDECISION\tROWS\tPURPOSE\tCASE\tKEYS\tREQUEST\tNOTE")
		for it.Next() {
			e := it.Event()
			dec, rows := e.Decision, ""
			if e.Kind == audit.KindComplete {
				dec = e.Status
				rows = strconv.FormatUint(e.Rows, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				e.Time.In(loc).Format("2006-01-02 15:04:05.000"), e.Kind, cell(e.Department), cell(e.System),
				cell(e.Action), cell(e.Dataset), cell(dec), rows, cell(e.Purpose), cell(e.CaseRef),
				cell(strings.Join(e.Keys, ",")), cell(e.RequestID), cell(tableNote(e)))
			n++
		}
		tw.Flush()
	default:
		return 0, fmt.Errorf("unknown format %q: use one of %s", format, strings.Join(Formats, ", "))
	}
	if err := it.Err(); err != nil {
		bw.Flush()
		return n, err
	}
	return n, bw.Flush()
}

// tableNote is what a table shows of an event beyond its decision: why a response
// did not end ok (the error's code, "client went away", "client stopped reading"), an
// aggregate's query text (on its decision) and suppressed cells (on its complete), so
// that an auditor reads what was asked, withheld or cut short without --format jsonl.
func tableNote(e *audit.Event) string {
	var notes []string
	if e.Kind == audit.KindComplete && e.Error != "" {
		notes = append(notes, e.Error)
	}
	for _, r := range e.Reasons {
		if strings.HasPrefix(r, "query: ") || strings.HasPrefix(r, "suppressed_cells: ") {
			notes = append(notes, r)
		}
	}
	return strings.Join(notes, "; ")
}

// cell is a value as a table shows it: "-" when empty, else [Printable].
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return Printable(s)
}

// Printable returns s safe to show on an auditor's terminal: every value in an event
// may come from a caller, and a terminal obeys what it is sent. Control characters (C0,
// DEL, C1 such as \x9b, the 8-bit CSI), every other rune that does not print (format
// characters, among them the bidirectional overrides U+202A–U+202E and U+2066–U+2069
// that reorder what follows, and zero-width characters) and bytes that are not UTF-8
// are written as Go escapes (\x1b, \r, \u202e, \xff); a backslash is doubled, so an
// escape seen on the screen always stands for an escaped rune, never for text that looks
// like one. Only text outputs escape; CSV and JSON lines keep every value exact.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == '\\' || r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+n])
		case r < 0x80:
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\n', '\t'
			b.WriteString(q[1 : len(q)-1])
		case r <= 0xffff:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			fmt.Fprintf(&b, "\\U%08x", r)
		}
		i += n
	}
	return b.String()
}

var csvHeader = []string{"event_id", "kind", "event_time", "instance", "seq", "request_id", "department",
	"system", "client_addr", "action", "dataset", "columns", "filter", "purpose", "case_ref", "keys",
	"decision", "reasons", "agreement", "policy_revision", "rows", "bytes", "duration_ms", "status",
	"error", "prev_hash", "hash"}

func csvRecord(e *audit.Event) []string {
	js := func(v []string) string {
		if v == nil {
			v = []string{}
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return []string{e.EventID, string(e.Kind), e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Instance,
		u(e.Seq), e.RequestID, e.Department, e.System, e.ClientAddr, e.Action, e.Dataset, js(e.Columns),
		e.Filter, e.Purpose, e.CaseRef, js(e.Keys), e.Decision, js(e.Reasons), e.Agreement, e.PolicyRevision,
		u(e.Rows), u(e.Bytes), u(e.DurationMS), e.Status, e.Error, e.PrevHash, e.Hash}
}

// WriteText writes the report for a terminal, times in loc.
func (r *Report) WriteText(w io.Writer, loc *time.Location) error {
	if loc == nil {
		loc = schemas.ChinaTime
	}
	bw := bufio.NewWriter(w)
	if r.Events == 0 {
		fmt.Fprintln(bw, "no audit events in the selected range")
	} else {
		fmt.Fprintf(bw, "%d events from %s to %s (%s)\n\n", r.Events,
			r.First.In(loc).Format("2006-01-02 15:04"), r.Last.In(loc).Format("2006-01-02 15:04"), loc)
	}
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DEPARTMENT\tDATASET\tREQUESTS\tDENIED\tFAILED\tUNFINISHED\tROWS\tBYTES\t")
	for _, x := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", cell(x.Department), cell(x.Dataset), x.Requests, x.Denied, x.Failed, x.Unfinished, x.Rows, x.Bytes)
	}
	tw.Flush()
	fmt.Fprintln(bw)
	if len(r.Findings) == 0 {
		fmt.Fprintln(bw, "findings: none")
	} else {
		fmt.Fprintf(bw, "findings (%d):\n", len(r.Findings))
		for _, f := range r.Findings {
			fmt.Fprintf(bw, "  [%s] %s\n", f.Kind, Printable(f.Message))
		}
	}
	if len(r.Cases) > 0 {
		fmt.Fprintf(bw, "cases that reached into more than one register (%d):\n", len(r.Cases))
		for _, c := range r.Cases {
			fmt.Fprintf(bw, "  %s case %s: %d registers (%s), %d requests\n", cell(c.Department), cell(c.CaseRef),
				len(c.Registers), Printable(strings.Join(c.Registers, ", ")), c.Requests)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(bw, "note: %s\n", Printable(n))
	}
	return bw.Flush()
}
