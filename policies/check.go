package policies

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"govx/schemas"
	"govx/schemas/ident"
)

// Problem is one thing wrong with a bundle, located by file, line and entry.
type Problem struct {
	File    string
	Line    int    // 0 when unknown
	Entry   string // e.g. "agreement AGR-2026-0001"; empty for file-level problems
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Entry != "" {
		b.WriteString(p.Entry)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is a list of problems; as an error it lists them one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// AsProblems returns the problems in err: those of a Problems error, or err itself as a
// single problem without location.
func AsProblems(err error) []Problem {
	var ps Problems
	if errors.As(err, &ps) {
		return ps
	}
	return []Problem{{Message: err.Error()}}
}

// The share types.
const (
	ShareUnconditional = "unconditional"
	ShareConditional   = "conditional"
	ShareNone          = "none"
)

// The department levels.
var levels = []string{"national", "province", "city", "county"}

// The actions an agreement may grant; the same list as exchange.Actions, repeated
// because exchange depends on policies, not the other way.
var actions = []string{"read", "changes", "lookup", "verify", "discover", "aggregate"}

// The masks the exchange applies; the same list the schemas accept as defaults.
var masks = []string{"id_card", "name", "phone", "address", "year", "hash", "null"}

var (
	codePattern    = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	purposePattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
)

// Check compiles the bundle strictly (tests included) and checks its data against the
// dataset schemas in cat and against itself: every agreement must name a registered
// department, a catalogued dataset, that dataset's columns, known actions and masks, and
// a validity that ends after it starts; every issuer a code, a name and a region (keys
// that do not parse, and issuers listed twice, fail the load already). It returns every
// problem found; none means the bundle may be used.
func Check(b *Bundle, cat *schemas.Catalog) []Problem {
	var probs []Problem
	if _, _, err := b.Compile(true); err != nil {
		probs = append(probs, compileProblems(err)...)
	}
	add := func(file string, line int, entry, format string, args ...any) {
		probs = append(probs, Problem{File: file, Line: line, Entry: entry, Message: fmt.Sprintf(format, args...)})
	}

	catalog := map[string]*CatalogEntry{}
	for i := range b.Datasets {
		e := &b.Datasets[i]
		entry := "dataset " + e.Dataset
		if e.Dataset == "" {
			add(e.File, e.Line, "dataset", "the dataset id is missing")
			continue
		}
		if prev, dup := catalog[e.Dataset]; dup {
			add(e.File, e.Line, entry, "listed twice (first at %s:%d)", prev.File, prev.Line)
			continue
		}
		catalog[e.Dataset] = e
		if !slices.Contains([]string{ShareUnconditional, ShareConditional, ShareNone}, e.Share) {
			add(e.File, e.Line, entry, "share %q must be unconditional, conditional or none", e.Share)
		}
		if e.MaxRows < 0 {
			add(e.File, e.Line, entry, "max_rows %d must not be negative", e.MaxRows)
		}
		if e.MinGroupSize < 0 || e.MinGroupSize == 1 {
			add(e.File, e.Line, entry, "min_group_size %d must be at least 2 (or left out for %d)", e.MinGroupSize, DefaultMinGroupSize)
		}
		ds, ok := cat.Dataset(e.Dataset)
		if e.Share == ShareNone {
			// Nothing of a none dataset is ever returned, so it needs no schema; it
			// does need the legal basis every denial cites.
			if strings.TrimSpace(e.LegalBasis) == "" {
				add(e.File, e.Line, entry, "share none needs a legal_basis: the law or measure that forbids sharing it")
			}
			continue
		}
		if !ok {
			add(e.File, e.Line, entry, "no such dataset in the schemas (known: %s)", strings.Join(datasetIDs(cat), ", "))
			continue
		}
		if e.RegionColumn == "" {
			add(e.File, e.Line, entry, "region_column is missing: the GB/T 2260 column departments' region scopes filter on")
		} else if _, ok := ds.Field(e.RegionColumn); !ok {
			add(e.File, e.Line, entry, "region_column %q is not a column of %s", e.RegionColumn, e.Dataset)
		}
	}

	depts := map[string]*Department{}
	for i := range b.Departments {
		d := &b.Departments[i]
		entry := "department " + d.Code
		if !codePattern.MatchString(d.Code) {
			add(d.File, d.Line, entry, "code %q must be lower-case letters and digits in dash-separated parts, like mz-3301", d.Code)
			continue
		}
		if prev, dup := depts[d.Code]; dup {
			add(d.File, d.Line, entry, "listed twice (first at %s:%d)", prev.File, prev.Line)
			continue
		}
		depts[d.Code] = d
		if strings.TrimSpace(d.Name) == "" {
			add(d.File, d.Line, entry, "name is missing")
		}
		if msg := checkLevelRegion(d.Level, d.Region); msg != "" {
			add(d.File, d.Line, entry, "%s", msg)
		}
	}

	for i := range b.Issuers {
		is := &b.Issuers[i]
		entry := "issuer " + is.Code
		if !codePattern.MatchString(is.Code) {
			add(is.File, is.Line, entry, "code %q must be lower-case letters and digits in dash-separated parts, like mz-3301 (the issuer field of its licences)", is.Code)
		}
		if strings.TrimSpace(is.Name) == "" {
			add(is.File, is.Line, entry, "name is missing")
		}
		if is.Region != "" {
			if err := ident.CheckRegion(is.Region); err != nil {
				add(is.File, is.Line, entry, "region: %v", err)
			}
		}
		if strings.TrimSpace(is.PublicKey) == "" {
			add(is.File, is.Line, entry, "public_key is missing: the issuer's Ed25519 key, ed25519:<base64>")
		}
	}

	ids := map[string]*Agreement{}
	for i := range b.Agreements {
		a := &b.Agreements[i]
		entry := "agreement " + a.ID
		if strings.TrimSpace(a.ID) == "" {
			add(a.File, a.Line, "agreement", "id is missing")
			continue
		}
		if prev, dup := ids[a.ID]; dup {
			add(a.File, a.Line, entry, "id used twice (first at %s:%d)", prev.File, prev.Line)
			continue
		}
		ids[a.ID] = a
		if _, ok := depts[a.Consumer]; !ok {
			add(a.File, a.Line, entry, "consumer %q is not a department in the departments data", a.Consumer)
		}
		if a.System != "" && !codePattern.MatchString(a.System) {
			add(a.File, a.Line, entry, "system %q must be lower-case letters and digits in dash-separated parts", a.System)
		}
		e, inCatalog := catalog[a.Dataset]
		ds, inSchemas := cat.Dataset(a.Dataset)
		switch {
		case !inCatalog:
			add(a.File, a.Line, entry, "dataset %q is not in the sharing catalog", a.Dataset)
		case e.Share == ShareNone:
			add(a.File, a.Line, entry, "dataset %s is not shared (share: none); an agreement cannot grant it", a.Dataset)
		case !inSchemas:
			add(a.File, a.Line, entry, "dataset %q has no schema", a.Dataset)
		}
		if len(a.Purposes) == 0 {
			add(a.File, a.Line, entry, "purposes is empty: name what the data may be used for")
		}
		for _, p := range a.Purposes {
			if !purposePattern.MatchString(p) {
				add(a.File, a.Line, entry, "purpose %q must be lower-case words joined by dashes, like minimum-living-allowance-review", p)
			}
		}
		if len(a.Columns) == 0 {
			add(a.File, a.Line, entry, "columns is empty")
		}
		if ds != nil {
			if bad := unknownColumns(ds, a.Columns); len(bad) > 0 {
				add(a.File, a.Line, entry, "unknown column %s: not a column of %s (columns: %s)", strings.Join(bad, ", "), a.Dataset, strings.Join(ds.FieldNames(), ", "))
			}
		}
		for _, c := range a.Unmasked {
			if !slices.Contains(a.Columns, c) {
				add(a.File, a.Line, entry, "unmasked column %s is not among the agreement's columns", c)
			}
		}
		for _, c := range sortedKeys(a.Masks) {
			m := a.Masks[c]
			if !slices.Contains(a.Columns, c) {
				add(a.File, a.Line, entry, "masks names column %s, which is not among the agreement's columns", c)
			}
			if slices.Contains(a.Unmasked, c) {
				add(a.File, a.Line, entry, "column %s is both unmasked and masked", c)
			}
			if !slices.Contains(masks, m) {
				add(a.File, a.Line, entry, "mask %q for column %s is not one of %s", m, c, strings.Join(masks, ", "))
			}
		}
		if len(a.Actions) == 0 {
			add(a.File, a.Line, entry, "actions is empty")
		}
		for _, act := range a.Actions {
			if !slices.Contains(actions, act) {
				add(a.File, a.Line, entry, "unknown action %q (actions: %s)", act, strings.Join(actions, ", "))
			}
		}
		if inCatalog {
			for _, m := range checkAggregate(a, ds, e) {
				add(a.File, a.Line, entry, "%s", m)
			}
		}
		if a.Region != "" && a.Region != "000000" {
			if err := ident.CheckRegion(a.Region); err != nil {
				add(a.File, a.Line, entry, "region: %v", err)
			}
		}
		if a.MaxRows < 0 {
			add(a.File, a.Line, entry, "max_rows %d must not be negative", a.MaxRows)
		}
		if !a.From.IsZero() && !a.Until.IsZero() && !a.From.Before(a.Until) {
			add(a.File, a.Line, entry, "valid_until %s is before valid_from %s", a.ValidUntil, a.ValidFrom)
		}
		if strings.TrimSpace(a.Approval) == "" {
			add(a.File, a.Line, entry, "approval is missing: cite the approval (审批文号) that created the agreement")
		}
	}
	for _, m := range checkPartitions(b.Agreements) {
		add(m.File, m.Line, m.Entry, "%s", m.Message)
	}
	return probs
}

// checkAggregate returns what is wrong with an agreement's aggregate terms: present
// exactly when it grants aggregate, group_by and measures among its columns, measures
// of numeric columns, a minimum group size no smaller than the catalog's.
func checkAggregate(a *Agreement, ds *schemas.Dataset, e *CatalogEntry) []string {
	t := a.Aggregate
	grants := slices.Contains(a.Actions, "aggregate")
	switch {
	case t == nil && grants:
		return []string{"grants aggregate without aggregate terms: name group_by, measures (and min_group_size)"}
	case t == nil:
		return nil
	case !grants:
		return []string{"has aggregate terms but does not grant the action aggregate"}
	}
	var msgs []string
	if len(t.GroupBy) == 0 {
		msgs = append(msgs, "aggregate.group_by is empty: name the columns answers may group by")
	}
	for _, c := range t.GroupBy {
		if !slices.Contains(a.Columns, c) {
			msgs = append(msgs, fmt.Sprintf("aggregate.group_by column %s is not among the agreement's columns", c))
		} else if f, ok := fieldOf(ds, c); ok && f.Kind() != schemas.KindString {
			msgs = append(msgs, fmt.Sprintf("aggregate.group_by column %s is a %s; only text columns (codes) are grouped", c, f.Type))
		}
	}
	if len(t.Measures) == 0 {
		msgs = append(msgs, "aggregate.measures is empty: name count or sum:COLUMN, avg:COLUMN, min:COLUMN, max:COLUMN")
	}
	for _, m := range t.Measures {
		if m == "count" {
			continue
		}
		fn, col, ok := strings.Cut(m, ":")
		if !ok || !slices.Contains([]string{"sum", "avg", "min", "max"}, fn) {
			msgs = append(msgs, fmt.Sprintf("aggregate measure %q must be count or sum:COLUMN, avg:COLUMN, min:COLUMN, max:COLUMN", m))
			continue
		}
		if !slices.Contains(a.Columns, col) {
			msgs = append(msgs, fmt.Sprintf("aggregate measure %s is of column %s, which is not among the agreement's columns", m, col))
		} else if f, ok := fieldOf(ds, col); ok && !slices.Contains([]schemas.Kind{schemas.KindInt64, schemas.KindFloat64, schemas.KindDecimal}, f.Kind()) {
			msgs = append(msgs, fmt.Sprintf("aggregate measure %s needs a numeric column; %s is a %s", m, col, f.Type))
		}
	}
	if t.MinGroupSize != 0 && t.MinGroupSize < e.minGroupSize() {
		msgs = append(msgs, fmt.Sprintf("aggregate.min_group_size %d is below the catalog's %d for %s; an agreement may raise it, never lower it", t.MinGroupSize, e.minGroupSize(), a.Dataset))
	}
	return msgs
}

func fieldOf(ds *schemas.Dataset, col string) (*schemas.Field, bool) {
	if ds == nil {
		return nil, false
	}
	return ds.Field(col)
}

// checkPartitions refuses two aggregate agreements of one department on one dataset
// that group by different columns: suppression works on the cells of one fixed
// partition, and the cells of two partitions could be subtracted from each other to
// recover a suppressed cell (docs/aggregate.md).
func checkPartitions(as []Agreement) []Problem {
	first := map[string]*Agreement{}
	var probs []Problem
	for i := range as {
		a := &as[i]
		if a.Aggregate == nil {
			continue
		}
		k := a.Consumer + "\x00" + a.Dataset
		p, seen := first[k]
		if !seen {
			first[k] = a
			continue
		}
		if !sameSet(p.Aggregate.GroupBy, a.Aggregate.GroupBy) || p.Aggregate.MinGroupSize != a.Aggregate.MinGroupSize {
			probs = append(probs, Problem{File: a.File, Line: a.Line, Entry: "agreement " + a.ID, Message: fmt.Sprintf(
				"%s already has aggregate agreement %s on %s with other group_by or min_group_size; one department's aggregate agreements on a dataset must share them, or suppressed cells could be recovered by subtracting one partition's answers from the other's",
				a.Consumer, p.ID, a.Dataset)})
		}
	}
	return probs
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// checkLevelRegion returns what is wrong with a department's level and region, or "".
func checkLevelRegion(level, region string) string {
	if !slices.Contains(levels, level) {
		return fmt.Sprintf("level %q must be one of %s", level, strings.Join(levels, ", "))
	}
	if level == "national" {
		if region != "" && region != "000000" {
			return fmt.Sprintf("a national department has no region, got %q", region)
		}
		return ""
	}
	if err := ident.CheckRegion(region); err != nil {
		return "region: " + err.Error()
	}
	var ok bool
	switch level {
	case "province":
		ok = strings.HasSuffix(region, "0000")
	case "city":
		ok = strings.HasSuffix(region, "00") && !strings.HasSuffix(region, "0000")
	case "county":
		ok = !strings.HasSuffix(region, "00")
	}
	if !ok {
		return fmt.Sprintf("region %s is not a %s-level code (province: ..0000, city: ....00, county: otherwise)", region, level)
	}
	return ""
}

func compileProblems(err error) []Problem {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return []Problem{{File: "rego", Message: err.Error()}}
	}
	var probs []Problem
	for _, e := range errs {
		p := Problem{Message: e.Message}
		if e.Location != nil {
			p.File, p.Line = e.Location.File, e.Location.Row
		}
		probs = append(probs, p)
	}
	return probs
}

func unknownColumns(ds *schemas.Dataset, cols []string) []string {
	var bad []string
	for _, c := range cols {
		if _, ok := ds.Field(c); !ok {
			bad = append(bad, c)
		}
	}
	return bad
}

func datasetIDs(cat *schemas.Catalog) []string {
	var ids []string
	for _, d := range cat.Datasets() {
		ids = append(ids, d.ID)
	}
	return ids
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
