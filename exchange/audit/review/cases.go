package review

import (
	"slices"
	"sort"
	"time"

	"govx/exchange/audit"
)

// CaseRow is one case (办件, by case_ref) of one department that reached into more than
// one register: what a one-window clerk's case drew on, for an auditor asking whether a
// case needed all it touched.
type CaseRow struct {
	Department string    `json:"department"`
	CaseRef    string    `json:"case_ref"`
	Registers  []string  `json:"registers"` // datasets read, looked up or verified, allowed
	Requests   int       `json:"requests"`
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
}

// caseRegisters lists, per department and case_ref, the registers its allowed requests
// touched, keeping the cases that touched more than one (a subject view's parts, or a
// clerk's lookups one by one), most registers first.
func caseRegisters(evs []*audit.Event) []CaseRow {
	type key struct{ dep, ref string }
	rows := map[key]*CaseRow{}
	for _, e := range evs {
		if e.Kind != audit.KindDecision || e.Decision != audit.Allow || e.CaseRef == "" || e.Action == "discover" {
			continue
		}
		k := key{e.Department, e.CaseRef}
		r := rows[k]
		if r == nil {
			r = &CaseRow{Department: e.Department, CaseRef: e.CaseRef, First: e.Time, Last: e.Time}
			rows[k] = r
		}
		if !slices.Contains(r.Registers, e.Dataset) {
			r.Registers = append(r.Registers, e.Dataset)
		}
		r.Requests++
		r.First, r.Last = minTime(r.First, e.Time), maxTime(r.Last, e.Time)
	}
	var out []CaseRow
	for _, r := range rows {
		if len(r.Registers) > 1 {
			sort.Strings(r.Registers)
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i].Registers) != len(out[j].Registers) {
			return len(out[i].Registers) > len(out[j].Registers)
		}
		if out[i].Department != out[j].Department {
			return out[i].Department < out[j].Department
		}
		return out[i].CaseRef < out[j].CaseRef
	})
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
