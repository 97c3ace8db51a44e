package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange"
	"govx/exchange/mask"
	"govx/schemas"
	"govx/schemas/ident"
)

var catalog = schemas.MustLoad()

func dataset(t testing.TB, id string) *schemas.Dataset {
	t.Helper()
	if id == "test.kinds" {
		b, err := os.ReadFile("testdata/test.kinds.yaml")
		if err != nil {
			t.Fatal(err)
		}
		d, err := schemas.Parse("testdata/test.kinds.yaml", b)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, ok := catalog.Dataset(id)
	if !ok {
		t.Fatalf("no dataset %s", id)
	}
	return d
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(11, 13)) }

func checked(t *testing.T) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

var (
	names     = []string{"张三", "欧阳娜娜", "李四", "王五", "赵六"}
	addresses = []string{"浙江省杭州市西湖区文三路1号", "江苏省南京市玄武区中山路2号", "浙江省宁波市鄞州区天童南路3号", "某路4号"}
	baseTime  = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
)

// gen makes random canonical values from small pools, so that filters hit and keys
// repeat (repeated keys are upserts).
type gen struct {
	r    *rand.Rand
	d    *schemas.Dataset
	keys int
}

func (g *gen) value(f *schemas.Field) any {
	r := g.r
	if f.Nullable && r.IntN(5) == 0 {
		return nil
	}
	switch f.Kind() {
	case schemas.KindString:
		switch {
		case f.Check == "region_code":
			c := ident.DemoCounties()
			return c[r.IntN(len(c))].Code
		case f.Check == "citizen_id" || (g.d.IsKey(f.Name) && len(g.d.Key) == 1):
			return fmt.Sprintf("3301061990%08d", r.IntN(g.keys))
		case strings.Contains(f.Name, "addr"):
			return addresses[r.IntN(len(addresses))]
		case strings.Contains(f.Name, "name") || f.Name == "s":
			return names[r.IntN(len(names))]
		case len(f.Enum) > 0:
			return f.Enum[r.IntN(len(f.Enum))]
		}
		return fmt.Sprintf("%s-%d", f.Name, r.IntN(6))
	case schemas.KindInt64:
		return int64(r.IntN(40) - 20)
	case schemas.KindFloat64:
		return float64(r.IntN(40)-20) / 4
	case schemas.KindDecimal:
		_, s := f.DecimalPS()
		return new(big.Rat).SetFrac64(int64(r.IntN(4000)-2000), 100).FloatString(s)
	case schemas.KindDate:
		return baseTime.AddDate(0, 0, r.IntN(60)).Format(time.DateOnly)
	case schemas.KindTimestamp:
		return baseTime.Add(time.Duration(r.IntN(60))*time.Hour + time.Duration(r.IntN(3))*time.Microsecond).Format(time.RFC3339Nano)
	case schemas.KindBool:
		return r.IntN(2) == 0
	}
	panic(f.Type)
}

func (g *gen) record() map[string]any {
	rec := map[string]any{}
	for i := range g.d.Fields {
		f := &g.d.Fields[i]
		if v := g.value(f); v != nil {
			rec[f.Name] = v
		}
	}
	return rec
}

// filter returns a random filter whose value is typed as a JSON client would send it.
func (g *gen) filter() exchange.Filter {
	r := g.r
	f := &g.d.Fields[r.IntN(len(g.d.Fields))]
	ops := []string{"eq", "ne", "in", "lt", "le", "gt", "ge", "is_null"}
	if f.Kind() == schemas.KindString {
		ops = append(ops, "prefix")
	}
	if f.Kind() == schemas.KindBool {
		ops = []string{"eq", "ne", "in", "is_null"}
	}
	op := ops[r.IntN(len(ops))]
	v := func() any {
		nf := *f
		nf.Nullable = false
		return jsonish(g.value(&nf))
	}
	switch op {
	case "is_null":
		return exchange.Filter{Column: f.Name, Op: op, Value: r.IntN(2) == 0}
	case "in":
		l := []any{}
		for range r.IntN(4) {
			l = append(l, v())
		}
		return exchange.Filter{Column: f.Name, Op: op, Value: l}
	case "prefix":
		s := v().(string)
		return exchange.Filter{Column: f.Name, Op: op, Value: s[:r.IntN(len(s)+1)]}
	}
	val := v()
	if f.Kind() == schemas.KindDecimal && r.IntN(3) == 0 {
		// Between two column values, or as a JSON number.
		if r.IntN(2) == 0 {
			val = val.(string) + "5"
		} else {
			x, _ := new(big.Rat).SetString(val.(string))
			fl, _ := x.Float64()
			val = fl
		}
	}
	return exchange.Filter{Column: f.Name, Op: op, Value: val}
}

// jsonish turns int64 into float64, as encoding/json decodes numbers into any.
func jsonish(v any) any {
	if i, ok := v.(int64); ok {
		return float64(i)
	}
	return v
}

// naiveMatch evaluates filters on a canonical record row by row.
func naiveMatch(d *schemas.Dataset, rec map[string]any, filters []exchange.Filter) bool {
	for _, flt := range filters {
		f, _ := d.Field(flt.Column)
		v := rec[flt.Column]
		switch flt.Op {
		case "is_null":
			if (v == nil) != flt.Value.(bool) {
				return false
			}
			continue
		}
		if v == nil {
			return false
		}
		switch flt.Op {
		case "prefix":
			if !strings.HasPrefix(v.(string), flt.Value.(string)) {
				return false
			}
		case "in":
			found := false
			for _, x := range flt.Value.([]any) {
				if naiveCmp(f, v, x) == 0 {
					found = true
				}
			}
			if !found {
				return false
			}
		default:
			c := naiveCmp(f, v, flt.Value)
			ok := map[string]bool{"eq": c == 0, "ne": c != 0, "lt": c < 0, "le": c <= 0, "gt": c > 0, "ge": c >= 0}[flt.Op]
			if !ok {
				return false
			}
		}
	}
	return true
}

func naiveCmp(f *schemas.Field, a, b any) int {
	switch f.Kind() {
	case schemas.KindString, schemas.KindDate:
		return strings.Compare(a.(string), b.(string))
	case schemas.KindTimestamp:
		ta, _ := time.Parse(time.RFC3339Nano, a.(string))
		tb, _ := time.Parse(time.RFC3339Nano, b.(string))
		return ta.Compare(tb)
	case schemas.KindBool:
		if a.(bool) == b.(bool) {
			return 0
		}
		return 1
	}
	rat := func(x any) *big.Rat {
		switch n := x.(type) {
		case string:
			r, _ := new(big.Rat).SetString(n)
			return r
		case float64:
			r, _ := new(big.Rat).SetString(fmt.Sprint(n))
			return r
		case int64:
			return new(big.Rat).SetInt64(n)
		}
		panic(fmt.Sprintf("%T", x))
	}
	return rat(a).Cmp(rat(b))
}

// naiveRow projects and masks a canonical record.
func naiveRow(t *testing.T, d *schemas.Dataset, rec map[string]any, spec Spec) []any {
	cols := spec.Columns
	if len(cols) == 0 {
		cols = d.FieldNames()
	}
	region := ""
	for i := range d.Fields {
		if d.Fields[i].Check == "region_code" {
			region, _ = rec[d.Fields[i].Name].(string)
			break
		}
	}
	// mask.Record, as lookups mask: a scan must give what it gives.
	masked, withheld := mask.Record(rec, cols, spec.Masks, mask.Options{Key: spec.MaskKey, Region: region, Text: schemas.CanonicalText})
	for _, w := range withheld {
		t.Fatalf("mask %s of %s: %v", w.Mask, w.Column, w.Err)
	}
	out := make([]any, len(cols))
	for i, c := range cols {
		out[i] = masked[c]
	}
	return out
}

// rowsOf renders records as sorted JSON rows, to compare results as multisets.
func rowsOf(t *testing.T, recs []arrow.Record) []string {
	var out []string
	for _, r := range recs {
		for i := 0; i < int(r.NumRows()); i++ {
			row := make([]any, r.NumCols())
			for c := range row {
				row[c] = canonical(r.Column(c), i)
			}
			out = append(out, jsonRow(t, row))
		}
	}
	slices.Sort(out)
	return out
}

func jsonRow(t *testing.T, row []any) string {
	b, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// collect scans into retained records; release them with releaseAll.
func collect(t *testing.T, s *Snapshot, spec Spec) []arrow.Record {
	t.Helper()
	var recs []arrow.Record
	err := s.Scan(context.Background(), spec, func(r arrow.Record) error {
		r.Retain()
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatalf("scan %+v: %v", spec, err)
	}
	return recs
}

func releaseAll(recs []arrow.Record) {
	for _, r := range recs {
		r.Release()
	}
}

// model is the expected state: key -> canonical record.
type model map[string]map[string]any

func (m model) apply(t *testing.T, d *schemas.Dataset, cs []Change) {
	for _, c := range cs {
		if c.Record == nil {
			delete(m, c.Key)
			continue
		}
		k, err := d.RecordKey(c.Record)
		if err != nil {
			t.Fatal(err)
		}
		m[k] = c.Record
	}
}

func (m model) rows(t *testing.T, d *schemas.Dataset, spec Spec) []string {
	var out []string
	for _, rec := range m {
		if naiveMatch(d, rec, spec.Filter) {
			out = append(out, jsonRow(t, naiveRow(t, d, rec, spec)))
		}
	}
	slices.Sort(out)
	return out
}
