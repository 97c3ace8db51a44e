package aggregate

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange"
	"govx/exchange/store"
	"govx/schemas"
)

// parcel is one generated land parcel, kept to compute answers independently.
type parcel struct {
	region, use, right string
	cents              int64 // area_m2 × 100
}

var (
	regions = []string{"330102", "330106", "330108", "330203", "320102"}
	uses    = []string{"0101", "0701", "0702", "0501", "1001"}
	rights  = []string{"ownership", "use_right"}
)

// parcels makes n parcels whose cells are of very different sizes: some far above the
// minimum, many below it.
func parcels(n int) []parcel {
	r := rand.New(rand.NewPCG(7, 9))
	out := make([]parcel, n)
	for i := range out {
		// Skewed choices: the first values are common, the last rare.
		pick := func(vs []string) string { return vs[min(int(r.ExpFloat64()*1.3), len(vs)-1)] }
		out[i] = parcel{region: pick(regions), use: pick(uses), right: pick(rights), cents: 1000 + r.Int64N(5_000_000)}
	}
	return out
}

func table(t testing.TB, mem memory.Allocator, ps []parcel) *store.Table {
	t.Helper()
	d := landParcel(t)
	tbl := store.New(d, store.WithAllocator(mem))
	changes := make([]store.Change, len(ps))
	for i, p := range ps {
		changes[i] = store.Change{Offset: int64(i), Record: map[string]any{
			"parcel_code": fmt.Sprintf("%s%012d", p.region, i), "region_code": p.region, "land_use": p.use,
			"area_m2": fmt.Sprintf("%d.%02d", p.cents/100, p.cents%100), "right_type": p.right,
			"holder_uscc": "91330106MA2B0000X1", "longitude": 120.1, "latitude": 30.2,
			"registered_on": "2020-01-01", "updated_at": "2026-01-01T00:00:00Z"}}
	}
	if err := tbl.Apply(changes); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tbl.Close)
	return tbl
}

func landParcel(t testing.TB) *schemas.Dataset {
	d, ok := schemas.MustLoad().Dataset("resource.land_parcel")
	if !ok {
		t.Fatal("no resource.land_parcel schema")
	}
	return d
}

// decision is the statistics bureau's decision on land parcels: scope Zhejiang.
func decision(k int64) exchange.Decision {
	return exchange.Decision{Allow: true, Agreement: "AGR-T", Revision: "r1",
		Columns:   []string{"region_code", "land_use", "right_type", "area_m2"},
		RowFilter: []exchange.Filter{{Column: "region_code", Op: exchange.OpPrefix, Value: "33"}},
		Aggregate: &exchange.AggregateTerms{GroupBy: []string{"region_code", "land_use", "right_type"},
			Measures: []string{"count", "sum:area_m2", "avg:area_m2", "min:area_m2", "max:area_m2"}, MinGroupSize: k}}
}

func run(t *testing.T, tbl *store.Table, dec exchange.Decision, sql string) (*Result, error) {
	t.Helper()
	q, err := Parse(sql)
	if err != nil {
		return nil, err
	}
	p, err := NewPlan(q, landParcel(t), dec)
	if err != nil {
		return nil, err
	}
	snap := tbl.Snapshot()
	defer snap.Release()
	return p.Execute(context.Background(), snap, memory.NewGoAllocator())
}

// rowsText renders a result as "v1|v2|…" lines, decimals with their scale.
func rowsText(rec arrow.Record) []string {
	var out []string
	for r := range int(rec.NumRows()) {
		var cells []string
		for c := range int(rec.NumCols()) {
			col := rec.Column(c)
			switch {
			case col.IsNull(r):
				cells = append(cells, "NULL")
			case col.DataType().ID() == arrow.DECIMAL128:
				cells = append(cells, col.(*array.Decimal128).Value(r).ToString(col.DataType().(*arrow.Decimal128Type).Scale))
			case col.DataType().ID() == arrow.FLOAT64:
				cells = append(cells, fmt.Sprintf("%.4f", col.(*array.Float64).Value(r)))
			default:
				cells = append(cells, col.ValueStr(r))
			}
		}
		out = append(out, strings.Join(cells, "|"))
	}
	return out
}

// expected computes the answer of "SELECT <group>, COUNT(*), SUM(area_m2) … GROUP BY
// <group>" over ps independently: cells of the full partition within scope, those
// below k dropped, the rest summed per group.
func expected(ps []parcel, k int64, group func(parcel) string, keep func(parcel) bool) (rows []string, suppressed int) {
	type acc struct {
		n   int64
		sum *big.Rat
	}
	cells := map[parcel]*acc{}
	for _, p := range ps {
		if !strings.HasPrefix(p.region, "33") || !keep(p) {
			continue
		}
		c := parcel{region: p.region, use: p.use, right: p.right}
		if cells[c] == nil {
			cells[c] = &acc{sum: new(big.Rat)}
		}
		cells[c].n++
		cells[c].sum.Add(cells[c].sum, big.NewRat(p.cents, 100))
	}
	groups := map[string]*acc{}
	for c, a := range cells {
		if a.n < k {
			suppressed++
			continue
		}
		g := group(c)
		if groups[g] == nil {
			groups[g] = &acc{sum: new(big.Rat)}
		}
		groups[g].n += a.n
		groups[g].sum.Add(groups[g].sum, a.sum)
	}
	for g, a := range groups {
		rows = append(rows, fmt.Sprintf("%s|%d|%s", g, a.n, a.sum.FloatString(2)))
	}
	sort.Strings(rows)
	return rows, suppressed
}

func TestAggregateMatchesIndependentComputation(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) }) // after the table closes
	ps := parcels(5000)
	tbl := table(t, mem, ps)
	all := func(parcel) bool { return true }
	cases := []struct {
		sql   string
		group func(parcel) string
		keep  func(parcel) bool
	}{
		{"SELECT region_code, COUNT(*), SUM(area_m2) FROM resource.land_parcel GROUP BY region_code",
			func(p parcel) string { return p.region }, all},
		{"select region_code, land_use, count(*) n, sum(area_m2) as s from `resource.land_parcel` group by land_use, region_code order by region_code, land_use",
			func(p parcel) string { return p.region + "|" + p.use }, all},
		{"SELECT land_use, COUNT(*), SUM(area_m2) FROM resource.land_parcel WHERE region_code LIKE '3301%' AND right_type = 'ownership' GROUP BY land_use",
			func(p parcel) string { return p.use }, func(p parcel) bool { return strings.HasPrefix(p.region, "3301") && p.right == "ownership" }},
		{"SELECT right_type, COUNT(*), SUM(area_m2) FROM resource.land_parcel WHERE land_use IN ('0101', '0701') AND '330203' <> region_code GROUP BY right_type",
			func(p parcel) string { return p.right }, func(p parcel) bool { return (p.use == "0101" || p.use == "0701") && p.region != "330203" }},
	}
	for _, tc := range cases {
		t.Run(tc.sql, func(t *testing.T) {
			res, err := run(t, tbl, decision(10), tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Record.Release()
			got := rowsText(res.Record)
			sort.Strings(got)
			want, suppressed := expected(ps, 10, tc.group, tc.keep)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("answer differs from the independent computation:\ngot\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if res.SuppressedCells != suppressed {
				t.Errorf("suppressed cells %d, want %d", res.SuppressedCells, suppressed)
			}
			if _, all := expected(ps, 10, tc.group, all); all == 0 {
				t.Error("the generated data has no cell below the minimum: the test would not test suppression")
			}
		})
	}
}

func TestAggregateMeasuresAndOrder(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) }) // after the table closes
	ps := []parcel{}
	for i := range 12 {
		ps = append(ps, parcel{"330106", "0101", "ownership", int64(100 * (i + 1))})
	}
	for i := range 10 {
		ps = append(ps, parcel{"330108", "0101", "ownership", int64(50 * (i + 1))})
	}
	for range 3 {
		ps = append(ps, parcel{"330108", "0701", "ownership", 1_000_000}) // a small cell
	}
	tbl := table(t, mem, ps)
	res, err := run(t, tbl, decision(10), "SELECT region_code AS county, AVG(area_m2), MIN(area_m2), MAX(area_m2), COUNT(*) FROM resource.land_parcel GROUP BY region_code ORDER BY 5 DESC LIMIT 5")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Record.Release()
	want := "330106|6.5000|1.00|12.00|12\n330108|2.7500|0.50|5.00|10"
	if got := strings.Join(rowsText(res.Record), "\n"); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if res.SuppressedCells != 1 {
		t.Errorf("suppressed %d cells, want 1 (330108/0701)", res.SuppressedCells)
	}
	if n := res.Record.Schema().Field(0).Name; n != "county" {
		t.Errorf("first column named %q, want the alias county", n)
	}
}

// TestDifferencingRecoversNothing plays the attacks suppression must stop: a total
// minus its shown parts, and two nested scopes subtracted. Each difference must be zero:
// the suppressed cell's rows are in no answer at all.
func TestDifferencingRecoversNothing(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) }) // after the table closes
	var ps []parcel
	for range 20 {
		ps = append(ps, parcel{"330106", "0101", "ownership", 10000})
	}
	for range 15 {
		ps = append(ps, parcel{"330106", "0701", "ownership", 20000})
	}
	ps = append(ps, parcel{"330106", "0702", "use_right", 777777}) // the one parcel to hide
	tbl := table(t, mem, ps)
	count := func(sql string) (total int64) {
		t.Helper()
		res, err := run(t, tbl, decision(10), sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer res.Record.Release()
		for r := range int(res.Record.NumRows()) {
			total += res.Record.Column(int(res.Record.NumCols()) - 1).(*array.Int64).Value(r)
		}
		return total
	}
	total := count("SELECT region_code, COUNT(*) FROM resource.land_parcel GROUP BY region_code")
	parts := count("SELECT region_code, land_use, COUNT(*) FROM resource.land_parcel GROUP BY region_code, land_use")
	outer := count("SELECT COUNT(*) FROM resource.land_parcel WHERE region_code LIKE '33%'")
	inner := count("SELECT COUNT(*) FROM resource.land_parcel WHERE region_code LIKE '33%' AND land_use <> '0702'")
	if total != 35 || parts != 35 || outer != 35 || inner != 35 {
		t.Errorf("total %d, parts %d, outer %d, inner %d: all must be 35, the suppressed parcel in none", total, parts, outer, inner)
	}
	// Asking for the suppressed cell alone finds nothing: a total of 0, as over no rows.
	if n := count("SELECT COUNT(*) FROM resource.land_parcel WHERE land_use = '0702'"); n != 0 {
		t.Errorf("the suppressed cell alone counts %d, want 0", n)
	}
	// Cutting the hidden parcel out of a big cell by a column outside the partition is
	// refused, not answered.
	_, err := run(t, tbl, decision(10), "SELECT COUNT(*) FROM resource.land_parcel WHERE area_m2 < 7777")
	if code := reason(err); code != "filter_not_groupable" {
		t.Errorf("filter on a measured column: reason %q (%v), want filter_not_groupable", code, err)
	}
}

func reason(err error) string {
	var xe *exchange.Error
	if errors.As(err, &xe) {
		if len(xe.Reasons) > 0 {
			return xe.Reasons[0].Code
		}
		return xe.Code
	}
	return ""
}

func TestRefusals(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) }) // after the table closes
	tbl := table(t, mem, parcels(50))
	dec := decision(10)
	dec.Aggregate.Measures = []string{"count", "sum:area_m2"}
	cases := map[string]string{
		"SELECT * FROM resource.land_parcel":                                                              "row_query",
		"SELECT parcel_code, area_m2 FROM resource.land_parcel":                                           "row_query",
		"SELECT region_code, land_use, COUNT(*) FROM resource.land_parcel GROUP BY region_code":           "row_query",
		"SELECT holder_uscc, COUNT(*) FROM resource.land_parcel GROUP BY holder_uscc":                     "group_not_granted",
		"SELECT region_code, MAX(area_m2) FROM resource.land_parcel GROUP BY region_code":                 "measure_not_granted",
		"SELECT COUNT(*) FROM resource.land_parcel WHERE holder_uscc = 'x'":                               "filter_not_groupable",
		"SELECT COUNT(*) FROM resource.land_parcel; DROP TABLE x":                                         "bad_query",
		"DELETE FROM resource.land_parcel":                                                                "unsupported_sql",
		"SELECT COUNT(*) FROM resource.land_parcel a JOIN resource.land_parcel b":                         "unsupported_sql",
		"SELECT COUNT(*) FROM (SELECT * FROM resource.land_parcel) t":                                     "unsupported_sql",
		"SELECT region_code, COUNT(*) FROM resource.land_parcel GROUP BY region_code HAVING COUNT(*) > 1": "unsupported_sql",
		"SELECT COUNT(DISTINCT region_code) FROM resource.land_parcel":                                    "unsupported_sql",
		"SELECT COUNT(*) FROM resource.land_parcel WHERE region_code LIKE '%06'":                          "unsupported_sql",
		"SELECT COUNT(*) FROM resource.land_parcel WHERE region_code = 'a' OR land_use = 'b'":             "unsupported_sql",
		"SELECT COUNT(*) FROM resource.land_parcel LIMIT 1, 2":                                            "unsupported_sql",
		"SELEC COUNT(*)": "bad_query",
		"":               "bad_query",
		// Comments: MySQL runs the executable and hint kinds, so none is answered.
		"SELECT land_use, COUNT(*) FROM resource.land_parcel /*! WHERE region_code = '330106' */ GROUP BY land_use": "unsupported_sql",
		"SELECT /*+ MAX_EXECUTION_TIME(1) */ COUNT(*) FROM resource.land_parcel":                                    "unsupported_sql",
		"SELECT COUNT(*) FROM resource.land_parcel /* plain */":                                                     "unsupported_sql",
		"SELECT COUNT(*) FROM resource.land_parcel -- trailing":                                                     "unsupported_sql",
		"SELECT COUNT(*) FROM resource.land_parcel # trailing":                                                      "unsupported_sql",
	}
	for sql, want := range cases {
		_, err := run(t, tbl, dec, sql)
		if got := reason(err); got != want {
			t.Errorf("%q: %q (%v), want %s", sql, got, err, want)
		}
	}
}

// Comment marks inside quoted strings are text, not comments.
func TestCommentMarksInStringsAreText(t *testing.T) {
	for _, sql := range []string{
		"SELECT COUNT(*) FROM resource.land_parcel WHERE land_use = '/*!x*/'",
		"SELECT COUNT(*) FROM resource.land_parcel WHERE land_use IN ('#', '-- a', 'it''s /*', \"a\\\"/*\")",
		"SELECT COUNT(*) AS `n/*` FROM resource.land_parcel",
	} {
		if _, err := Parse(sql); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}

// FuzzQuery runs any text as a query under a decision scoped to Hangzhou (3301). It
// must never panic, and whatever it answers must equal the answer over a table that
// holds only the rows in scope: rows outside the grant never reach an answer. Every
// answer group must hold at least the minimum group size rows.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"SELECT region_code, COUNT(*) FROM resource.land_parcel GROUP BY region_code",
		"SELECT land_use, SUM(area_m2), AVG(area_m2), MIN(area_m2), MAX(area_m2), COUNT(*) FROM resource.land_parcel WHERE region_code >= '3301' GROUP BY land_use ORDER BY 2 DESC LIMIT 3",
		"SELECT COUNT(*) FROM resource.land_parcel WHERE region_code IN ('330106', '320102') AND right_type IS NOT NULL",
		"SELECT right_type r, count(1) FROM `resource.land_parcel` t WHERE t.land_use LIKE '07%' GROUP BY t.right_type ORDER BY r",
		"SELECT region_code, COUNT(*) FROM resource.land_parcel WHERE region_code = '320102' GROUP BY region_code",
		"SELECT * FROM resource.land_parcel",
		"SELECT parcel_code FROM resource.land_parcel WHERE area_m2 > 0",
		"SELECT COUNT(*) FROM resource.land_parcel WHERE region_code < 0x33",
		"select sum(area_m2) from resource.land_parcel where land_use = 1.5e3",
	} {
		f.Add(s)
	}
	ps := parcels(2000)
	var inScope []parcel
	for _, p := range ps {
		if strings.HasPrefix(p.region, "3301") {
			inScope = append(inScope, p)
		}
	}
	mem := memory.NewGoAllocator()
	full, scoped := table(f, mem, ps), table(f, mem, inScope)
	d := landParcel(f)
	dec := decision(5)
	dec.RowFilter = []exchange.Filter{{Column: "region_code", Op: exchange.OpPrefix, Value: "3301"}}
	answer := func(t *testing.T, p *Plan, tbl *store.Table) ([]string, int, error) {
		snap := tbl.Snapshot()
		defer snap.Release()
		res, err := p.Execute(context.Background(), snap, mem)
		if err != nil {
			return nil, 0, err
		}
		defer res.Record.Release()
		for i, it := range p.Query.Items {
			if it.Fn == FnCount {
				for r := range int(res.Record.NumRows()) {
					// A query without GROUP BY over nothing answers one row counting 0.
					if n := res.Record.Column(i).(*array.Int64).Value(r); n < dec.Aggregate.MinGroupSize && !(n == 0 && len(p.Query.GroupBy) == 0) {
						t.Fatalf("%q answered a group of %d rows, below the minimum %d", p.Query.Text, n, dec.Aggregate.MinGroupSize)
					}
				}
			}
		}
		return rowsText(res.Record), res.SuppressedCells, nil
	}
	f.Fuzz(func(t *testing.T, sql string) {
		q, err := Parse(sql)
		if err != nil {
			var xe *exchange.Error
			if !errors.As(err, &xe) {
				t.Fatalf("%q: untyped error %v", sql, err)
			}
			return
		}
		if q.Dataset != d.ID {
			return
		}
		p, err := NewPlan(q, d, dec)
		if err != nil {
			return
		}
		got, gotSup, err1 := answer(t, p, full)
		want, wantSup, err2 := answer(t, p, scoped)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("%q: errors differ: %v / %v", sql, err1, err2)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") || gotSup != wantSup {
			t.Fatalf("%q: rows outside the scope changed the answer:\n%s\nvs in-scope only\n%s", sql, got, want)
		}
	})
}

// TestMySQLNamesAndWhyRefused: names read as MySQL reads them (an output alias in GROUP
// BY, column names in any case, an escaped _ in a LIKE prefix) answer as the plain
// query does; what cannot be answered says exactly why.
func TestMySQLNamesAndWhyRefused(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	tbl := table(t, mem, parcels(400))
	dec := decision(10)
	answer := func(sql string) string {
		t.Helper()
		res, err := run(t, tbl, dec, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer res.Record.Release()
		return strings.Join(rowsText(res.Record), ",")
	}
	plain := answer("SELECT land_use, COUNT(*) FROM resource.land_parcel GROUP BY land_use")
	for _, sql := range []string{
		"SELECT land_use AS u, COUNT(*) FROM resource.land_parcel GROUP BY u",
		"SELECT land_use AS U, COUNT(*) FROM resource.land_parcel GROUP BY u ORDER BY u",
		"SELECT LAND_USE, COUNT(*) FROM resource.land_parcel GROUP BY Land_Use",
		"SELECT land_parcel.land_use, COUNT(*) FROM resource.land_parcel GROUP BY LAND_USE",
	} {
		if got := answer(sql); got != plain {
			t.Errorf("%s:\n%s\nwant\n%s", sql, got, plain)
		}
	}
	rights := answer("SELECT right_type, COUNT(*) FROM resource.land_parcel WHERE right_type = 'use_right' GROUP BY right_type")
	for _, sql := range []string{
		`SELECT right_type, COUNT(*) FROM resource.land_parcel WHERE right_type LIKE 'use\_%' GROUP BY right_type`,
		`SELECT right_type, COUNT(*) FROM resource.land_parcel WHERE right_type LIKE 'use|_right' ESCAPE '|' GROUP BY right_type`,
	} {
		if got := answer(sql); got != rights || rights == "" {
			t.Errorf("%s:\n%s\nwant\n%s", sql, got, rights)
		}
	}
	for sql, want := range map[string]string{
		"SELECT x.land_use, COUNT(*) FROM resource.land_parcel GROUP BY land_use":                                     "unknown table x",
		"SELECT land_use, COUNT(*) FROM resource.land_parcel WHERE other.region_code = '330106' GROUP BY land_use":    "unknown table other",
		"SELECT land_use AS region_code, COUNT(*) FROM resource.land_parcel GROUP BY region_code":                     "names both a column of resource.land_parcel and an output alias",
		"SELECT right_type, COUNT(*) FROM resource.land_parcel WHERE right_type LIKE 'use_right' GROUP BY right_type": `'_' is a wildcard here; for the character itself write \_`,
		"SELECT right_type, COUNT(*) FROM resource.land_parcel WHERE right_type LIKE 'u%e%' GROUP BY right_type":      `'%' is a wildcard here; for the character itself write \%`,
	} {
		_, err := run(t, tbl, dec, sql)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", sql, err, want)
		}
	}
}
