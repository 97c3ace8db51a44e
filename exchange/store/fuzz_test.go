package store

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange"
)

// FuzzFilter feeds arbitrary filters, as a client's JSON would carry them, to the
// filter parser and a scan: no panic, and every refusal is an Invalid exchange.Error.
func FuzzFilter(f *testing.F) {
	f.Add("birth_date", "lt", []byte(`"1990-01-01"`))
	f.Add("household_region", "in", []byte(`["330106","330108"]`))
	f.Add("d", "ge", []byte(`12.345`))
	f.Add("d", "eq", []byte(`"-0.5"`))
	f.Add("ts", "gt", []byte(`"2024-01-01T00:00:00.5+08:00"`))
	f.Add("i", "le", []byte(`1e300`))
	f.Add("b", "ne", []byte(`true`))
	f.Add("name", "is_null", []byte(`false`))
	f.Fuzz(func(t *testing.T, column, op string, value []byte) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		var v any
		if err := json.Unmarshal(value, &v); err != nil {
			v = string(value)
		}
		for _, id := range []string{"test.kinds", "population.person"} {
			d := dataset(t, id)
			tbl := New(d, WithAllocator(mem))
			g := &gen{r: newRand(), d: d, keys: 20}
			var cs []Change
			for i := range 50 {
				cs = append(cs, Change{Record: g.record(), Offset: int64(i)})
			}
			if err := tbl.Apply(cs); err != nil {
				t.Fatal(err)
			}
			s := tbl.Snapshot()
			flt := []exchange.Filter{{Column: column, Op: op, Value: v}}
			n, err := s.Count(context.Background(), flt)
			if err != nil {
				var e *exchange.Error
				if !errors.As(err, &e) || e.Kind != exchange.Invalid {
					t.Fatalf("filter %q %q %s: error %v is not Invalid", column, op, value, err)
				}
			} else if n < 0 || n > int64(s.Len()) {
				t.Fatalf("Count = %d of %d rows", n, s.Len())
			}
			s.Release()
			tbl.Close()
		}
	})
}

// FuzzDecodeCursor: cursors come back from clients; decoding must not panic, and what
// decodes re-encodes to the same bytes.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(Cursor{0: 1, 5: 1 << 40}.Encode())
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCursor(b)
		if err != nil {
			if exchange.KindOf(err) != exchange.Invalid {
				t.Fatalf("error %v is not Invalid", err)
			}
			return
		}
		if len(b) > 0 && string(c.Encode()) != string(b) {
			t.Fatalf("%x decodes to %v, which encodes to %x", b, c, c.Encode())
		}
	})
}
