package review

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"govx/exchange/audit"
	"govx/schemas"
)

// How an access touched the record, in a subject report.
const (
	HowLookup = "lookup"                                     // named the key, asked for the record
	HowVerify = "verify"                                     // named the key, checked claims against it
	HowPull   = "bulk pull whose scope included this record" // a read or changes pull that could have returned it
	// HowCorrection is a step of the correction process (校核纠错: flag, answer, close)
	// naming the record: the department says the record is wrong, the exchange returns
	// none of its values. Listed as a correction, never as a read.
	HowCorrection = "correction"
)

// correctionPrefix begins the actions of the correction process (exchange/apply).
const correctionPrefix = "correction."

// SubjectOptions says which record a subject report is about.
type SubjectOptions struct {
	// Key is the record's key (e.g. a citizen ID number): lookups and verifies that named
	// it are listed.
	Key string
	// Dataset is the record's dataset. With InScope, its allowed pulls are matched.
	Dataset string
	// InScope reports whether the scope an allowed pull's decision event recorded (its
	// filter field: the decision's row filter and the caller's filter) includes the
	// record. An error means the scope cannot be evaluated (it was cut, or is not JSON):
	// the pull is then listed as one that could have included it, with the reason. Nil:
	// pulls are not matched, and the report says so.
	InScope func(ev *audit.Event) (bool, error)
}

// SubjectAccess is one request that touched the record.
type SubjectAccess struct {
	How      string       `json:"how"`
	Decision *audit.Event `json:"decision"`
	Complete *audit.Event `json:"complete,omitempty"` // nil when the request has none
	// Outcome says what came of it, for people.
	Outcome string `json:"outcome"`
	// Read reports whether the request returned the record's values, or may have: a
	// lookup that sent it, a pull whose scope included it and that returned rows, or an
	// allowed one whose complete event is missing (it may have been cut short after
	// sending). Denied requests and requests that returned nothing are not reads.
	Read bool `json:"read"`
	// Note is why a pull's scope could not be evaluated, if it could not.
	Note string `json:"note,omitempty"`
}

// SubjectReport lists every access to one record the audit log can attribute to it.
type SubjectReport struct {
	Key      string          `json:"key"`
	Dataset  string          `json:"dataset,omitempty"`
	Accesses []SubjectAccess `json:"accesses"`
	Reads    int             `json:"reads"`    // accesses with Read
	Verifies int             `json:"verifies"` // allowed verifies: the record was checked, not read
	Nothing  int             `json:"nothing"`  // accesses that returned nothing: denied, not found, failed
	// Corrections are the correction steps naming the record (HowCorrection): not
	// accesses, counted apart.
	Corrections int      `json:"corrections"`
	Notes       []string `json:"notes"`
}

// BuildSubject reads the events of it (any order) and lists the accesses to the record:
// every decision whose keys name opt.Key (lookups and verifies, allowed or not), and,
// with opt.InScope, every allowed read or changes pull of opt.Dataset whose recorded
// scope includes the record — each with its outcome from its complete event.
func BuildSubject(ctx context.Context, it audit.Iterator, opt SubjectOptions) (*SubjectReport, error) {
	defer it.Close()
	decisions := map[string]*audit.Event{}
	completes := map[string]*audit.Event{}
	var order []string
	for it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := *it.Event()
		switch e.Kind {
		case audit.KindDecision:
			if _, dup := decisions[partKey(&e)]; !dup {
				order = append(order, partKey(&e))
			}
			decisions[partKey(&e)] = &e
		case audit.KindComplete:
			completes[partKey(&e)] = &e
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	rep := &SubjectReport{Key: opt.Key, Dataset: opt.Dataset, Accesses: []SubjectAccess{}}
	for _, id := range order {
		d := decisions[id]
		a := SubjectAccess{Decision: d, Complete: completeOf(completes, d)}
		switch {
		case slices.Contains(d.Keys, opt.Key) && (opt.Dataset == "" || d.Dataset == opt.Dataset):
			a.How = HowLookup
			switch {
			case d.Action == "verify":
				a.How = HowVerify
			case strings.HasPrefix(d.Action, correctionPrefix):
				a.How = HowCorrection
			}
		case opt.InScope != nil && d.Decision == audit.Allow && d.Dataset == opt.Dataset && (d.Action == "read" || d.Action == "changes"):
			in, err := opt.InScope(d)
			if err != nil {
				a.Note = "scope not evaluated (" + err.Error() + "); listed as could have included it"
			} else if !in {
				continue
			}
			a.How = HowPull
		default:
			continue
		}
		a.Outcome, a.Read = outcome(a)
		switch {
		case a.How == HowCorrection:
			rep.Corrections++
		case a.Read:
			rep.Reads++
		case a.How == HowVerify && d.Decision == audit.Allow:
			rep.Verifies++
		default:
			rep.Nothing++
		}
		rep.Accesses = append(rep.Accesses, a)
	}
	slices.SortStableFunc(rep.Accesses, func(a, b SubjectAccess) int { return a.Decision.Time.Compare(b.Decision.Time) })
	if opt.InScope == nil {
		rep.Notes = append(rep.Notes, "bulk pulls not matched: give the record's values (--record FILE) to list the pulls whose scope included it")
	}
	return rep, nil
}

// outcome says what came of an access, and whether it returned (or may have returned)
// the record.
func outcome(a SubjectAccess) (string, bool) {
	d, c := a.Decision, a.Complete
	if d.Decision != audit.Allow {
		why := d.Error
		if why == "" {
			why = strings.Join(d.Reasons, ",")
		}
		return "denied: " + why, false
	}
	if a.How == HowVerify {
		return "answered whether the claims match (no values returned)", false
	}
	if a.How == HowCorrection {
		return "a correction of the record (" + strings.TrimPrefix(d.Action, correctionPrefix) + "), not an access: no values returned", false
	}
	switch {
	case c == nil:
		return "allowed, no complete event: may have been cut short after sending (exchange stopped, or a Flight ticket never redeemed)", true
	case c.Rows == 0 && c.Status == audit.StatusOK:
		return "returned nothing (no rows)", false
	case c.Rows == 0:
		return "returned nothing (" + c.Status + ": " + c.Error + ")", false
	case a.How == HowPull && c.Status != audit.StatusOK:
		return fmt.Sprintf("%s after %d rows; the record may have been among them", c.Status, c.Rows), true
	case a.How == HowPull:
		return fmt.Sprintf("returned %d rows; the record could have been among them", c.Rows), true
	}
	return "returned the record", true
}

// WriteSubject writes a subject report as "table" (for a terminal, every value escaped,
// times in loc), "jsonl" (one access a line, exact) or "csv" (one access a line, exact).
func WriteSubject(w io.Writer, rep *SubjectReport, format string, loc *time.Location) error {
	if loc == nil {
		loc = schemas.ChinaTime
	}
	bw := bufio.NewWriter(w)
	switch format {
	case "jsonl":
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		for _, a := range rep.Accesses {
			if err := enc.Encode(a); err != nil {
				return err
			}
		}
	case "csv":
		cw := csv.NewWriter(bw)
		cw.Write(append([]string{"how", "read", "outcome", "note"}, csvHeader...))
		for _, a := range rep.Accesses {
			cw.Write(append([]string{a.How, strconv.FormatBool(a.Read), a.Outcome, a.Note}, csvRecord(a.Decision)...))
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
	case "table", "":
		fmt.Fprintf(bw, "record %s", Printable(rep.Key))
		if rep.Dataset != "" {
			fmt.Fprintf(bw, " of %s", Printable(rep.Dataset))
		}
		fmt.Fprintf(bw, ": %d reads (returned, or may have returned, its values), %d verifies (checked, not read), %d that returned nothing, %d correction steps (not accesses)\n\n",
			rep.Reads, rep.Verifies, rep.Nothing, rep.Corrections)
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tDEPARTMENT\tSYSTEM\tHOW\tREAD\tOUTCOME\tPURPOSE\tCASE\tAGREEMENT\tREQUEST")
		for _, a := range rep.Accesses {
			d := a.Decision
			read := "no"
			if a.Read {
				read = "yes"
			}
			out := a.Outcome
			if a.Note != "" {
				out += "; " + a.Note
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Time.In(loc).Format("2006-01-02 15:04:05"),
				cell(d.Department), cell(d.System), a.How, read, cell(out), cell(d.Purpose), cell(d.CaseRef), cell(d.Agreement), cell(d.RequestID))
		}
		tw.Flush()
		for _, n := range rep.Notes {
			fmt.Fprintf(bw, "note: %s\n", Printable(n))
		}
	default:
		return fmt.Errorf("unknown format %q: use one of %s", format, strings.Join(Formats, ", "))
	}
	return bw.Flush()
}
