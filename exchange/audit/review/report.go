package review

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"govx/exchange/audit"
	"govx/policies"
	"govx/schemas"
)

// Finding kinds of a report.
const (
	FindingOffHours      = "off-hours"           // a burst of requests outside working hours
	FindingVolume        = "volume"              // a day's rows far above the department's own baseline
	FindingDenyBurst     = "deny-burst"          // many denials in a short window: probing the policy
	FindingEnumeration   = "enumeration"         // many lookups/verifies from one system in an hour
	FindingNearExpiry    = "agreement-expiry"    // use of an agreement close to its end
	FindingExpiredUse    = "expired-agreement"   // use of an agreement after its end
	FindingUnknownAgreem = "unknown-agreement"   // an agreement the validity file does not know
	FindingKeyGuessing   = "key-guessing"        // many verifies of one key: guessing its values
	FindingKeySweep      = "key-sweep"           // many distinct keys from one department, whatever its baseline
	FindingBudget        = "budget-exhausted"    // lookups or verifies refused by the department's key budget
	FindingAppOverdue    = "application-overdue" // a sharing application's time limit ran out
	FindingFixOverdue    = "correction-overdue"  // a flagged record's answer time limit ran out
)

// duePrefix starts the reason of an application's or a correction's step event naming
// the time limit the step started ("due:<clock>:<RFC 3339 instant>", exchange/apply's
// DuePrefix), second after the transition ("state:from->to").
const duePrefix = "due:"

// Codes of the refusals by a key budget (see policies.KeyBudget).
var budgetCodes = []string{"verify_budget_exhausted", "lookup_budget_exhausted"}

// ReportOptions tunes the report. Zero fields take the defaults of DefaultReportOptions.
type ReportOptions struct {
	Location    *time.Location // working hours are local to it (default China Standard Time)
	WorkStart   time.Duration  // since midnight (default 08:30)
	WorkEnd     time.Duration  // since midnight (default 18:00); weekends are off hours
	OffHoursMin int            // requests by one system in one off-hours stretch (default 20)

	VolumeFactor  float64 // a day above this × the department's median day (default 5)
	VolumeMinRows uint64  // … and at least this many rows (default 10000)

	DenyBurst  int           // denials of one system … (default 20)
	DenyWindow time.Duration // … within this window (default 10 min)

	EnumMin    int     // distinct keys looked up or verified by one system in an hour (default 200)
	EnumFactor float64 // … and this × that system's median over its other hours (default 5)

	SweepMin int // distinct keys by one department in an hour, whatever its baseline (default 1000)

	GuessMin    int           // verifies of one key by one department … (default 10)
	GuessWindow time.Duration // … within this window (default 24 h)

	// Agreements gives validity periods; nil means expiry is not checked (a note says so).
	Agreements []AgreementValidity
	ExpiryWarn time.Duration // use within this of the end is flagged (default 30 days)

	// Now is when the applications and corrections still open are judged overdue
	// (default the time of the report; the CLI gives --until when set).
	Now time.Time
}

// AgreementValidity is the validity period of one sharing agreement.
type AgreementValidity struct {
	ID         string
	ValidFrom  time.Time
	ValidUntil time.Time
}

func (o ReportOptions) withDefaults() ReportOptions {
	if o.Location == nil {
		o.Location = schemas.ChinaTime
	}
	if o.WorkStart == 0 && o.WorkEnd == 0 {
		o.WorkStart, o.WorkEnd = 8*time.Hour+30*time.Minute, 18*time.Hour
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.OffHoursMin, 20)
	def(&o.DenyBurst, 20)
	def(&o.EnumMin, 200)
	def(&o.SweepMin, 1000)
	def(&o.GuessMin, 10)
	if o.GuessWindow == 0 {
		o.GuessWindow = 24 * time.Hour
	}
	if o.VolumeFactor == 0 {
		o.VolumeFactor = 5
	}
	if o.VolumeMinRows == 0 {
		o.VolumeMinRows = 10000
	}
	if o.DenyWindow == 0 {
		o.DenyWindow = 10 * time.Minute
	}
	if o.EnumFactor == 0 {
		o.EnumFactor = 5
	}
	if o.ExpiryWarn == 0 {
		o.ExpiryWarn = 30 * 24 * time.Hour
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	return o
}

// ParseWorkHours parses "08:30-18:00".
func ParseWorkHours(s string) (start, end time.Duration, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("working hours %q: want HH:MM-HH:MM, e.g. 08:30-18:00", s)
	}
	p := func(x string) (time.Duration, error) {
		t, err := time.Parse("15:04", strings.TrimSpace(x))
		if err != nil {
			return 0, fmt.Errorf("working hours %q: %q is not HH:MM", s, x)
		}
		return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
	}
	if start, err = p(a); err != nil {
		return
	}
	if end, err = p(b); err != nil {
		return
	}
	if end <= start {
		return 0, 0, fmt.Errorf("working hours %q: the end must be after the start", s)
	}
	return start, end, nil
}

// AgreementsOf returns the validity of every agreement of a policy bundle exactly as
// the policy reads it (policies parses the dates: a valid_until date covers its whole
// day in China Standard Time), so the report and the decisions never disagree on when
// an agreement ended.
func AgreementsOf(b *policies.Bundle) []AgreementValidity {
	out := make([]AgreementValidity, 0, len(b.Agreements))
	for _, a := range b.Agreements {
		out = append(out, AgreementValidity{ID: a.ID, ValidFrom: a.From, ValidUntil: a.Until})
	}
	return out
}

// ReportRow sums one department's use of one dataset.
type ReportRow struct {
	Department string `json:"department"`
	Dataset    string `json:"dataset"`
	Requests   int    `json:"requests"`
	Denied     int    `json:"denied"`
	Failed     int    `json:"failed"`     // allowed data-bearing requests that ended aborted or in error
	Unfinished int    `json:"unfinished"` // allowed data-bearing requests without a complete
	Rows       uint64 `json:"rows"`
	Bytes      uint64 `json:"bytes"`
}

// Finding is one anomaly worth an auditor's look.
type Finding struct {
	Kind       string    `json:"kind"`
	Department string    `json:"department"`
	System     string    `json:"system,omitempty"`
	Dataset    string    `json:"dataset,omitempty"`
	Agreement  string    `json:"agreement,omitempty"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Count      int       `json:"count"`
	Message    string    `json:"message"`
}

// Report is the outcome of BuildReport.
type Report struct {
	Events   int         `json:"events"`
	First    time.Time   `json:"first"`
	Last     time.Time   `json:"last"`
	Rows     []ReportRow `json:"rows"`
	Findings []Finding   `json:"findings"`
	// Cases are the cases (case_ref) that reached into more than one register.
	Cases []CaseRow `json:"cases"`
	Notes []string  `json:"notes"`
}

// partKey identifies one decided part of a request: a request decides one dataset,
// except a subject view (one decision per register, under the view's one request id)
// and a catalog listing (one per dataset). A complete event names its part's dataset.
func partKey(e *audit.Event) string { return e.RequestID + "\x00" + e.Dataset }

// completeOf returns the complete event of decision d's part (one written without a
// dataset completes its request as a whole).
func completeOf(completes map[string]*audit.Event, d *audit.Event) *audit.Event {
	if c := completes[partKey(d)]; c != nil {
		return c
	}
	return completes[d.RequestID+"\x00"]
}

type reqInfo struct {
	ev *audit.Event
}

// BuildReport reads the events of it (any order) and sums them per department and
// dataset, then looks for the anomalies described by ReportOptions.
func BuildReport(ctx context.Context, it audit.Iterator, opt ReportOptions) (*Report, error) {
	defer it.Close()
	o := opt.withDefaults()
	rep := &Report{}
	decisions := map[string]*reqInfo{}
	completes := map[string]*audit.Event{}
	var evs []*audit.Event
	for it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := it.Event()
		rep.Events++
		if rep.First.IsZero() || e.Time.Before(rep.First) {
			rep.First = e.Time
		}
		if e.Time.After(rep.Last) {
			rep.Last = e.Time
		}
		switch e.Kind {
		case audit.KindDecision:
			decisions[partKey(e)] = &reqInfo{ev: e}
			evs = append(evs, e)
		case audit.KindComplete:
			completes[partKey(e)] = e
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(evs, func(a, b *audit.Event) int { return a.Time.Compare(b.Time) })

	// Per department × dataset.
	type dk struct{ dep, ds string }
	rows := map[dk]*ReportRow{}
	row := func(dep, ds string) *ReportRow {
		k := dk{dep, ds}
		if rows[k] == nil {
			rows[k] = &ReportRow{Department: dep, Dataset: ds}
		}
		return rows[k]
	}
	for _, e := range evs {
		r := row(e.Department, e.Dataset)
		r.Requests++
		if e.Decision != audit.Allow {
			r.Denied++
		} else if audit.DataBearing(e.Action) {
			switch c := completeOf(completes, e); {
			case c == nil:
				r.Unfinished++
			case c.Status != audit.StatusOK:
				r.Failed++
			}
		}
	}
	daily := map[string]map[string]uint64{} // department -> local date -> rows
	for id, c := range completes {
		dep, ds := c.Department, c.Dataset
		if d := decisions[id]; d != nil {
			dep, ds = d.ev.Department, d.ev.Dataset
		}
		r := row(dep, ds)
		r.Rows += c.Rows
		r.Bytes += c.Bytes
		if daily[dep] == nil {
			daily[dep] = map[string]uint64{}
		}
		daily[dep][c.Time.In(o.Location).Format("2006-01-02")] += c.Rows
	}
	for _, r := range rows {
		rep.Rows = append(rep.Rows, *r)
	}
	sort.Slice(rep.Rows, func(i, j int) bool {
		a, b := rep.Rows[i], rep.Rows[j]
		if a.Department != b.Department {
			return a.Department < b.Department
		}
		return a.Dataset < b.Dataset
	})

	rep.Findings = append(rep.Findings, offHours(evs, o)...)
	rep.Findings = append(rep.Findings, volume(daily, o)...)
	rep.Findings = append(rep.Findings, denyBursts(evs, o)...)
	rep.Cases = caseRegisters(evs)
	rep.Findings = append(rep.Findings, enumeration(evs, o)...)
	rep.Findings = append(rep.Findings, keySweeps(evs, o)...)
	rep.Findings = append(rep.Findings, keyGuessing(evs, o)...)
	rep.Findings = append(rep.Findings, budgetRefusals(evs, o)...)
	rep.Findings = append(rep.Findings, overdue(evs, o)...)
	if o.Agreements == nil {
		rep.Notes = append(rep.Notes, "agreement expiry not checked: give the policy directory with --policies DIR (its agreements' validity, as the policy reads it)")
	} else {
		rep.Findings = append(rep.Findings, expiry(evs, o)...)
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if !a.Start.Equal(b.Start) {
			return a.Start.Before(b.Start)
		}
		return a.Kind < b.Kind
	})
	return rep, nil
}

type sysKey struct{ dep, sys string }

func offHours(evs []*audit.Event, o ReportOptions) []Finding {
	type wk struct {
		sysKey
		window string
	}
	groups := map[wk][]*audit.Event{}
	var order []wk
	for _, e := range evs {
		lt := e.Time.In(o.Location)
		tod := time.Duration(lt.Hour())*time.Hour + time.Duration(lt.Minute())*time.Minute + time.Duration(lt.Second())*time.Second
		weekend := lt.Weekday() == time.Saturday || lt.Weekday() == time.Sunday
		if !weekend && tod >= o.WorkStart && tod < o.WorkEnd {
			continue
		}
		// One night is one stretch: shift so that stretches start at the end of work.
		k := wk{sysKey{e.Department, e.System}, lt.Add(-o.WorkEnd).Format("2006-01-02")}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	var out []Finding
	for _, k := range order {
		g := groups[k]
		if len(g) < o.OffHoursMin {
			continue
		}
		sets := map[string]bool{}
		for _, e := range g {
			sets[e.Dataset] = true
		}
		out = append(out, Finding{Kind: FindingOffHours, Department: k.dep, System: k.sys,
			Dataset: joinKeys(sets), Start: g[0].Time, End: g[len(g)-1].Time, Count: len(g),
			Message: fmt.Sprintf("%s/%s made %d requests outside working hours (%s–%s %s)", k.dep, k.sys, len(g),
				g[0].Time.In(o.Location).Format("Mon 01-02 15:04"), g[len(g)-1].Time.In(o.Location).Format("Mon 01-02 15:04"), o.Location)})
	}
	return out
}

func volume(daily map[string]map[string]uint64, o ReportOptions) []Finding {
	var out []Finding
	deps := make([]string, 0, len(daily))
	for d := range daily {
		deps = append(deps, d)
	}
	sort.Strings(deps)
	for _, dep := range deps {
		days := daily[dep]
		dates := make([]string, 0, len(days))
		for d := range days {
			dates = append(dates, d)
		}
		sort.Strings(dates)
		for _, day := range dates {
			var others []uint64
			for _, d := range dates {
				if d != day {
					others = append(others, days[d])
				}
			}
			if len(others) < 3 {
				continue
			}
			med := medianU(others)
			v := days[day]
			if v >= o.VolumeMinRows && float64(v) > o.VolumeFactor*float64(med) {
				start, _ := time.ParseInLocation("2006-01-02", day, o.Location)
				out = append(out, Finding{Kind: FindingVolume, Department: dep, Start: start, End: start.AddDate(0, 0, 1),
					Count: int(v), Message: fmt.Sprintf("%s read %d rows on %s, %.1f× its median day (%d rows)", dep, v, day, float64(v)/float64(max(med, 1)), med)})
			}
		}
	}
	return out
}

// denyBursts counts denied requests, not deny events: a catalog listing records one
// decision per dataset under one request id, and a listing that showed anything was not
// denied; one that showed nothing counts once.
func denyBursts(evs []*audit.Event, o ReportOptions) []Finding {
	allowed := map[string]bool{}
	for _, e := range evs {
		if e.Decision == audit.Allow && e.RequestID != "" {
			allowed[e.RequestID] = true
		}
	}
	counted := map[string]bool{}
	denies := map[sysKey][]*audit.Event{}
	var order []sysKey
	for _, e := range evs {
		if e.Decision != audit.Deny || allowed[e.RequestID] || (e.RequestID != "" && counted[e.RequestID]) {
			continue
		}
		counted[e.RequestID] = true
		k := sysKey{e.Department, e.System}
		if denies[k] == nil {
			order = append(order, k)
		}
		denies[k] = append(denies[k], e)
	}
	var out []Finding
	for _, k := range order {
		for _, run := range bursts(denies[k], o.DenyBurst, o.DenyWindow) {
			first, last := run[0].Time, run[len(run)-1].Time
			out = append(out, Finding{Kind: FindingDenyBurst, Department: k.dep, System: k.sys,
				Start: first, End: last, Count: len(run),
				Message: fmt.Sprintf("%s/%s was denied %d times between %s and %s: probing the policy?", k.dep, k.sys, len(run),
					first.In(o.Location).Format("01-02 15:04"), last.In(o.Location).Format("01-02 15:04"))})
		}
	}
	return out
}

func enumeration(evs []*audit.Event, o ReportOptions) []Finding {
	type hk struct {
		sysKey
		hour time.Time
	}
	keys := map[hk]map[string]bool{}
	actions := map[hk]map[string]bool{}
	perSys := map[sysKey][]hk{}
	var order []sysKey
	for _, e := range evs {
		if e.Action != "lookup" && e.Action != "verify" {
			continue
		}
		k := hk{sysKey{e.Department, e.System}, e.Time.Truncate(time.Hour)}
		if keys[k] == nil {
			keys[k], actions[k] = map[string]bool{}, map[string]bool{}
			if perSys[k.sysKey] == nil {
				order = append(order, k.sysKey)
			}
			perSys[k.sysKey] = append(perSys[k.sysKey], k)
		}
		actions[k][e.Action] = true
		if len(e.Keys) == 0 {
			keys[k][e.RequestID] = true // count the request when no key was recorded
		}
		for _, key := range e.Keys {
			keys[k][key] = true
		}
	}
	var out []Finding
	for _, s := range order {
		hours := perSys[s]
		counts := make([]uint64, len(hours))
		for i, h := range hours {
			counts[i] = uint64(len(keys[h]))
		}
		for i, h := range hours {
			n := counts[i]
			// The baseline is the system's other hours: an hour never sets its own bar
			// (a system whose only hour is a sweep has a baseline of nothing).
			others := append(slices.Clone(counts[:i]), counts[i+1:]...)
			med := medianU(others)
			if n >= uint64(o.EnumMin) && float64(n) >= o.EnumFactor*float64(med) {
				out = append(out, Finding{Kind: FindingEnumeration, Department: s.dep, System: s.sys,
					Start: h.hour, End: h.hour.Add(time.Hour), Count: int(n),
					Message: fmt.Sprintf("%s/%s looked up or verified %d distinct keys (%s) in the hour from %s, %.0f× its median hour (%d)",
						s.dep, s.sys, n, joinKeys(actions[h]), h.hour.In(o.Location).Format("01-02 15:04"), float64(n)/float64(max(med, 1)), med)})
			}
		}
	}
	return out
}

// keySweeps flags a department that looked up or verified at least SweepMin distinct
// keys of a dataset in one hour: the absolute rule beside enumeration's relative one, so
// that a department whose every hour is a sweep is flagged too.
func keySweeps(evs []*audit.Event, o ReportOptions) []Finding {
	type hk struct {
		dep, ds string
		hour    time.Time
	}
	keys := map[hk]map[string]bool{}
	var order []hk
	for _, e := range evs {
		if (e.Action != "lookup" && e.Action != "verify") || len(e.Keys) == 0 {
			continue
		}
		k := hk{e.Department, e.Dataset, e.Time.Truncate(time.Hour)}
		if keys[k] == nil {
			keys[k] = map[string]bool{}
			order = append(order, k)
		}
		for _, key := range e.Keys {
			keys[k][key] = true
		}
	}
	var out []Finding
	for _, k := range order {
		if n := len(keys[k]); n >= o.SweepMin {
			out = append(out, Finding{Kind: FindingKeySweep, Department: k.dep, Dataset: k.ds, Start: k.hour, End: k.hour.Add(time.Hour), Count: n,
				Message: fmt.Sprintf("%s looked up or verified %d distinct keys of %s in the hour from %s (at least %d is flagged whatever its usual hours)",
					k.dep, n, k.ds, k.hour.In(o.Location).Format("01-02 15:04"), o.SweepMin)})
		}
	}
	return out
}

// keyGuessing flags GuessMin or more verifies of one key by one department within
// GuessWindow, allowed or refused: a verify answers only true or false, so many claims
// against one key are guesses at its values.
func keyGuessing(evs []*audit.Event, o ReportOptions) []Finding {
	type kk struct{ dep, ds, key string }
	byKey := map[kk][]*audit.Event{}
	var order []kk
	for _, e := range evs {
		if e.Action != "verify" {
			continue
		}
		for _, key := range e.Keys {
			k := kk{e.Department, e.Dataset, key}
			if byKey[k] == nil {
				order = append(order, k)
			}
			byKey[k] = append(byKey[k], e)
		}
	}
	var out []Finding
	for _, k := range order {
		for _, run := range bursts(byKey[k], o.GuessMin, o.GuessWindow) {
			allowed := 0
			for _, e := range run {
				if e.Decision == audit.Allow {
					allowed++
				}
			}
			first, last := run[0].Time, run[len(run)-1].Time
			out = append(out, Finding{Kind: FindingKeyGuessing, Department: k.dep, System: joinSystems(run), Dataset: k.ds, Start: first, End: last, Count: len(run),
				Message: fmt.Sprintf("%s verified claims against one key of %s %d times (%d answered) between %s and %s: guessing its values? key %s",
					k.dep, k.ds, len(run), allowed, first.In(o.Location).Format("01-02 15:04"), last.In(o.Location).Format("01-02 15:04"), k.key)})
		}
	}
	return out
}

// budgetRefusals flags every department refused by its key budget: one finding per
// dataset, action and run of refusals (each within an hour of the one before).
func budgetRefusals(evs []*audit.Event, o ReportOptions) []Finding {
	type bk struct{ dep, ds, action string }
	groups := map[bk][]*audit.Event{}
	var order []bk
	for _, e := range evs {
		if e.Decision != audit.Deny || !slices.Contains(budgetCodes, e.Error) {
			continue
		}
		k := bk{e.Department, e.Dataset, e.Action}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	var out []Finding
	for _, k := range order {
		for _, run := range bursts(groups[k], 1, time.Hour) {
			first, last := run[0].Time, run[len(run)-1].Time
			out = append(out, Finding{Kind: FindingBudget, Department: k.dep, System: joinSystems(run), Dataset: k.ds, Start: first, End: last, Count: len(run),
				Message: fmt.Sprintf("%s was refused %d %s requests of %s by its key budget between %s and %s",
					k.dep, len(run), k.action, k.ds, first.In(o.Location).Format("01-02 15:04"), last.In(o.Location).Format("01-02 15:04"))})
		}
	}
	return out
}

// overdue flags the applications and corrections whose time limit ran out, from their
// step events alone: a step that starts a clock names its deadline (a "due:" reason), and
// the matter was overdue when its next step came at or after that instant (answered
// late), or when none came before Now (still open). A matter whose clock-starting step
// is outside the events read (before --since), or was written before steps named their
// deadlines, is not judged.
func overdue(evs []*audit.Event, o ReportOptions) []Finding {
	type matter struct {
		id, kind, applicant, system, dataset string
		clock                                string
		due                                  time.Time
	}
	matters := map[string]*matter{}
	var order []string
	var out []Finding
	label := func(m *matter) string {
		if m.kind == FindingFixOverdue {
			return "correction " + m.id + " of " + m.dataset + " (flagged by " + m.applicant + ")"
		}
		return "application " + m.id + " of " + m.applicant + " for " + m.dataset
	}
	for _, e := range evs {
		if e.Decision != audit.Allow || e.CaseRef == "" || len(e.Reasons) == 0 || !strings.HasPrefix(e.Reasons[0], "state:") {
			continue
		}
		kind := ""
		switch {
		case strings.HasPrefix(e.Action, "application."):
			kind = FindingAppOverdue
		case strings.HasPrefix(e.Action, "correction."):
			kind = FindingFixOverdue
		default:
			continue
		}
		m := matters[e.CaseRef]
		if m == nil {
			m = &matter{id: e.CaseRef, kind: kind, applicant: e.Department, system: e.System, dataset: e.Dataset}
			matters[e.CaseRef] = m
			order = append(order, e.CaseRef)
		}
		if !m.due.IsZero() && !e.Time.Before(m.due) {
			out = append(out, Finding{Kind: m.kind, Department: m.applicant, System: m.system, Dataset: m.dataset, Start: m.due, End: e.Time, Count: 1,
				Message: fmt.Sprintf("%s: the %s time limit ended %s; the next step (%s by %s/%s, %s) came %s late",
					label(m), m.clock, m.due.In(o.Location).Format("2006-01-02 15:04"), e.Action, e.Department, e.System,
					strings.TrimPrefix(e.Reasons[0], "state:"), lateBy(e.Time.Sub(m.due)))})
		}
		m.clock, m.due = "", time.Time{}
		if len(e.Reasons) > 1 {
			if rest, ok := strings.CutPrefix(e.Reasons[1], duePrefix); ok {
				if clock, at, ok := strings.Cut(rest, ":"); ok {
					if due, err := time.Parse(time.RFC3339, at); err == nil {
						m.clock, m.due = clock, due
					}
				}
			}
		}
	}
	for _, id := range order {
		m := matters[id]
		if m.due.IsZero() || o.Now.Before(m.due) {
			continue
		}
		out = append(out, Finding{Kind: m.kind, Department: m.applicant, System: m.system, Dataset: m.dataset, Start: m.due, End: o.Now, Count: 1,
			Message: fmt.Sprintf("%s: the %s time limit ended %s and the matter is still open (%s overdue at %s)",
				label(m), m.clock, m.due.In(o.Location).Format("2006-01-02 15:04"), lateBy(o.Now.Sub(m.due)), o.Now.In(o.Location).Format("2006-01-02 15:04"))})
	}
	return out
}

// lateBy says how late, in days and hours.
func lateBy(d time.Duration) string {
	if d < time.Hour {
		return d.Round(time.Minute).String()
	}
	d = d.Round(time.Hour)
	if days := int(d / (24 * time.Hour)); days > 0 {
		return fmt.Sprintf("%dd%dh", days, int(d%(24*time.Hour)/time.Hour))
	}
	return fmt.Sprintf("%dh", int(d/time.Hour))
}

// bursts returns the runs of evs (in time order) that start with at least min events
// within window, extended over every later event within window of the one before it.
func bursts(evs []*audit.Event, min int, window time.Duration) [][]*audit.Event {
	var out [][]*audit.Event
	for i := 0; i < len(evs); {
		j := i
		for j < len(evs) && evs[j].Time.Sub(evs[i].Time) < window {
			j++
		}
		if j-i < min {
			i++
			continue
		}
		for j < len(evs) && evs[j].Time.Sub(evs[j-1].Time) < window {
			j++
		}
		out = append(out, evs[i:j])
		i = j
	}
	return out
}

func joinSystems(evs []*audit.Event) string {
	m := map[string]bool{}
	for _, e := range evs {
		m[e.System] = true
	}
	return joinKeys(m)
}

func expiry(evs []*audit.Event, o ReportOptions) []Finding {
	valid := map[string]AgreementValidity{}
	for _, a := range o.Agreements {
		valid[a.ID] = a
	}
	type ak struct {
		kind, dep, agr string
	}
	groups := map[ak][]*audit.Event{}
	var order []ak
	for _, e := range evs {
		if e.Decision != audit.Allow || e.Agreement == "" {
			continue
		}
		a, ok := valid[e.Agreement]
		var kind string
		switch {
		case !ok:
			kind = FindingUnknownAgreem
		case !e.Time.Before(a.ValidUntil):
			kind = FindingExpiredUse
		case a.ValidUntil.Sub(e.Time) <= o.ExpiryWarn:
			kind = FindingNearExpiry
		default:
			continue
		}
		k := ak{kind, e.Department, e.Agreement}
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	var out []Finding
	for _, k := range order {
		g := groups[k]
		var msg string
		switch k.kind {
		case FindingUnknownAgreem:
			msg = fmt.Sprintf("%s used agreement %s %d times, which the agreements file does not list", k.dep, k.agr, len(g))
		case FindingExpiredUse:
			msg = fmt.Sprintf("%s used agreement %s %d times after it ended on %s: check the policy data", k.dep, k.agr, len(g), valid[k.agr].ValidUntil.In(o.Location).Format("2006-01-02"))
		default:
			msg = fmt.Sprintf("%s used agreement %s %d times within %d days of its end (%s): renew or wind down", k.dep, k.agr, len(g), int(o.ExpiryWarn.Hours()/24), valid[k.agr].ValidUntil.In(o.Location).Format("2006-01-02"))
		}
		out = append(out, Finding{Kind: k.kind, Department: k.dep, Agreement: k.agr, Start: g[0].Time, End: g[len(g)-1].Time, Count: len(g), Message: msg})
	}
	return out
}

func medianU(v []uint64) uint64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func joinKeys(m map[string]bool) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}
