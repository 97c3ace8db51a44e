package mask

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/decimal128"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

func TestStringMasks(t *testing.T) {
	cases := []struct {
		mask, in, region, want string
	}{
		{IDCard, "330106199001011234", "", "330106********1234"},
		{IDCard, "33010619900101123X", "", "330106********123X"},
		{IDCard, "330106900101123", "", "330106*****1123"}, // 15-digit first-generation ID
		{IDCard, "12345678", "", "********"},
		{IDCard, "", "", ""},
		{Name, "张三", "", "张*"},
		{Name, "欧阳娜娜", "", "欧***"},
		{Name, "王", "", "*"},
		{Name, "", "", ""},
		{Phone, "13812345678", "", "138****5678"},
		{Phone, "+86 13812345678", "", "+86 138****5678"},
		{Phone, "0571-87654321", "", "0571-****4321"},
		{Phone, "025-8765432", "", "025-***5432"},
		{Phone, "01087654321", "", "010****4321"},
		{Phone, "87654321", "", "****4321"},
		{Phone, "12345", "", "*****"},
		{Phone, "ext.12345678", "", "****" + "****5678"},
		{Address, "浙江省杭州市西湖区文三路123号", "", "浙江省杭州市西湖区"},
		{Address, "浙江省杭州市西湖区文三路123号", "330106", "浙江省杭州市西湖区"},
		{Address, "杭州市西湖区文三路123号", "330106", "杭州市西湖区"},
		// The region's name wins over the heuristic when it occurs.
		{Address, "浙江省宁波市奉化区县前街1号", "330213", "浙江省宁波市奉化区"},
		{Address, "浙江省杭州市建德市新安江街道1号", "", "浙江省杭州市建德市"},
		{Address, "北京市朝阳区建国路1号", "110105", "北京市朝阳区"},
		{Address, "内蒙古自治区阿拉善左旗巴彦浩特镇", "", "内蒙古自治区阿拉善左旗"},
		{Address, "浙江省淳安县千岛湖镇1号", "", "浙江省淳安县"},
		{Address, "浙江省某地某路", "", "浙江省"},
		{Address, "某路1号", "", "***"},
		// A county-level suffix further along belongs to the street: never cut there.
		{Address, "杭州市文三路100号市民中心5楼", "", "杭州市"},
		{Address, "浙江省杭州市文三路100号西湖区政府旁5幢", "330106", "浙江省杭州市"},
		{Address, "杭州市古墩路春晓小区3幢", "", "杭州市"},
		{Address, "杭州市春晓小区3幢", "", "杭州市"},
		{Address, "内蒙古自治区阿拉善左旗巴彦浩特镇市场路1号", "", "内蒙古自治区阿拉善左旗"},
		{Address, "浙江省杭州市西湖区文三路123号", "999999", "浙江省杭州市西湖区"},
		{Year, "1990-01-01", "", "1990"},
		{Year, "2024-09-30T12:00:00Z", "", "2024"},
		{Year, "2024", "", "2024"},
		{Year, "abcd-01-01", "", ""},
	}
	for _, c := range cases {
		var got string
		switch c.mask {
		case IDCard:
			got = IDCardString(c.in)
		case Name:
			got = NameString(c.in)
		case Phone:
			got = PhoneString(c.in)
		case Address:
			got = AddressString(c.in, c.region)
		case Year:
			got = YearString(c.in)
		}
		if got != c.want {
			t.Errorf("%s(%q, region %q) = %q, want %q", c.mask, c.in, c.region, got, c.want)
		}
	}
}

func TestNameKeepsLength(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("张王李赵欧阳娜司马a b·é\u0301ñ")
	for range 2000 {
		n := r.IntN(12)
		var b strings.Builder
		for range n {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		s := b.String()
		got := NameString(s)
		if utf8.RuneCountInString(got) != utf8.RuneCountInString(s) {
			t.Fatalf("NameString(%q) = %q: %d runes, want %d", s, got, utf8.RuneCountInString(got), utf8.RuneCountInString(s))
		}
		if n > 1 && !strings.HasPrefix(got, string([]rune(s)[:1])) {
			t.Fatalf("NameString(%q) = %q does not keep the first character", s, got)
		}
	}
}

func TestHashPerDepartment(t *testing.T) {
	master := []byte("0123456789abcdef0123456789abcdef")
	k1, k2 := DeriveKey(master, "mz-3301"), DeriveKey(master, "rs-33")
	r := rand.New(rand.NewPCG(3, 4))
	seen := map[string]string{}
	for range 500 {
		v := strings.Repeat(string(rune('0'+r.IntN(10))), 1+r.IntN(5)) + time.Unix(r.Int64N(1e9), 0).String()
		a1, _ := HashString(k1, v)
		a2, _ := HashString(k1, v)
		b1, _ := HashString(k2, v)
		if a1 != a2 {
			t.Fatalf("hash of %q is not stable: %s vs %s", v, a1, a2)
		}
		if a1 == b1 {
			t.Fatalf("hash of %q is the same for two departments: %s", v, a1)
		}
		if len(a1) != HashHexLen {
			t.Fatalf("hash %q has %d characters, want %d", a1, len(a1), HashHexLen)
		}
		if prev, ok := seen[a1]; ok && prev != v {
			t.Fatalf("%q and %q collide", prev, v)
		}
		seen[a1] = v
	}
	if _, err := HashString(nil, "x"); err != ErrNoKey {
		t.Fatalf("hash without key: err %v, want ErrNoKey", err)
	}
	if string(DeriveKey(master, "mz-3301")) != string(k1) {
		t.Fatal("DeriveKey is not deterministic")
	}
}

func TestOutputField(t *testing.T) {
	// Fields as the dataset schemas give them: a sensitivity and a default mask in the
	// metadata (the schemas package's own keys; exchange/store tests that MetaKey is its).
	meta := arrow.NewMetadata([]string{"govx.sensitivity", MetaKey}, []string{"personal", IDCard})
	fields := map[string]arrow.Field{
		"id_number":  {Name: "id_number", Type: arrow.BinaryTypes.String, Metadata: meta},
		"birth_date": {Name: "birth_date", Type: arrow.FixedWidthTypes.Date32, Metadata: meta},
	}
	for _, c := range []struct {
		col, mask string
		want      arrow.DataType
	}{
		{"id_number", IDCard, arrow.BinaryTypes.String},
		{"birth_date", Year, arrow.BinaryTypes.String},
		{"birth_date", Null, arrow.FixedWidthTypes.Date32},
		{"birth_date", "", arrow.FixedWidthTypes.Date32},
	} {
		out := OutputField(fields[c.col], c.mask)
		if !arrow.TypeEqual(out.Type, c.want) {
			t.Errorf("%s masked %q: type %s, want %s", c.col, c.mask, out.Type, c.want)
		}
		if v, ok := out.Metadata.GetValue(MetaKey); !ok || v != c.mask {
			t.Errorf("%s masked %q: metadata govx.mask = %q", c.col, c.mask, v)
		}
		if v, _ := out.Metadata.GetValue("govx.sensitivity"); v == "" {
			t.Errorf("%s: sensitivity metadata lost", c.col)
		}
		if n := strings.Count(out.Metadata.String(), MetaKey); n != 1 {
			t.Errorf("%s: metadata holds the mask key %d times, want once", c.col, n)
		}
		if c.mask == Null && !out.Nullable {
			t.Errorf("%s masked null is not nullable", c.col)
		}
	}
}

// TestArrayMatchesValue checks that masking a column gives, row by row, what masking
// each canonical value gives: scans and lookups must agree.
func TestArrayMatchesValue(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	key := DeriveKey([]byte("master-secret-for-tests-only-000"), "mz-3301")

	strs := []string{"330106199001011234", "欧阳娜娜", "13812345678", "浙江省杭州市西湖区文三路1号", "", "\xff\xfe"}
	regions := []string{"330106", "", "", "330106", "", ""}
	sb := array.NewStringBuilder(mem)
	rb := array.NewStringBuilder(mem)
	for i, s := range strs {
		sb.Append(s)
		rb.Append(regions[i])
	}
	sb.AppendNull()
	rb.AppendNull()
	sarr, rarr := sb.NewStringArray(), rb.NewStringArray()
	sb.Release()
	rb.Release()
	defer sarr.Release()
	defer rarr.Release()

	db := array.NewDate32Builder(mem)
	db.Append(arrow.Date32FromTime(time.Date(1990, 1, 2, 0, 0, 0, 0, time.UTC)))
	db.AppendNull()
	darr := db.NewArray()
	db.Release()
	defer darr.Release()

	tt := &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	tb := array.NewTimestampBuilder(mem, tt)
	tb.Append(arrow.Timestamp(time.Date(2024, 9, 30, 1, 2, 3, 456000, time.UTC).UnixMicro()))
	tarr := tb.NewArray()
	tb.Release()
	defer tarr.Release()

	dt := &arrow.Decimal128Type{Precision: 18, Scale: 2}
	decb := array.NewDecimal128Builder(mem, dt)
	decb.Append(decimal128.FromI64(-50))
	decb.Append(decimal128.FromI64(123456))
	decarr := decb.NewArray()
	decb.Release()
	defer decarr.Release()

	canon := func(a arrow.Array, i int) any {
		switch x := a.(type) {
		case *array.String:
			return x.Value(i)
		case *array.Date32:
			return x.Value(i).FormattedString()
		case *array.Timestamp:
			return x.Value(i).ToTime(arrow.Microsecond).UTC().Format(time.RFC3339Nano)
		case *array.Decimal128:
			return DecimalText(x.Value(i).BigInt().String(), 2)
		}
		t.Fatalf("no canonical form for %T", a)
		return nil
	}
	if got := canon(decarr, 0); got != "-0.50" {
		t.Fatalf("decimal text = %q, want -0.50", got)
	}

	for _, c := range []struct {
		arr  arrow.Array
		mask string
	}{
		{sarr, IDCard}, {sarr, Name}, {sarr, Phone}, {sarr, Address}, {sarr, Hash}, {sarr, Year}, {sarr, Null},
		{darr, Year}, {darr, Hash}, {darr, Null}, {tarr, Year}, {tarr, Hash}, {decarr, Hash},
	} {
		out, err := Array(mem, c.arr, c.mask, ArrayOptions{Key: key, Regions: func() *array.String {
			if c.arr == arrow.Array(sarr) {
				return rarr
			}
			return nil
		}()})
		if err != nil {
			t.Fatalf("%s on %s: %v", c.mask, c.arr.DataType(), err)
		}
		if out.Len() != c.arr.Len() {
			t.Fatalf("%s: %d rows out of %d", c.mask, out.Len(), c.arr.Len())
		}
		for i := 0; i < c.arr.Len(); i++ {
			var want any
			if c.arr.IsValid(i) {
				region := ""
				if c.arr == arrow.Array(sarr) && rarr.IsValid(i) {
					region = rarr.Value(i)
				}
				want, err = Value(c.mask, canon(c.arr, i), Options{Key: key, Region: region})
				if err != nil {
					t.Fatalf("Value %s: %v", c.mask, err)
				}
			}
			var got any
			if out.IsValid(i) {
				got = out.(*array.String).Value(i)
			}
			if got != want {
				t.Errorf("%s on %s row %d: array gives %v, value gives %v", c.mask, c.arr.DataType(), i, got, want)
			}
		}
		out.Release()
	}

	if _, err := Array(mem, sarr, Hash, ArrayOptions{}); err != ErrNoKey {
		t.Errorf("hash without a key: err = %v, want ErrNoKey", err)
	}
	if _, err := Array(mem, darr, IDCard, ArrayOptions{}); err == nil {
		t.Error("id_card on a date column: no error")
	}
	if _, err := Array(mem, sarr, "blur", ArrayOptions{}); err == nil {
		t.Error("unknown mask: no error")
	}
}

func FuzzMasks(f *testing.F) {
	for _, s := range []string{"330106199001011234", "张三", "0571-87654321", "浙江省杭州市西湖区", "2024-01-01", "\xff", "市\xff区"} {
		f.Add(s, "330106")
	}
	key := DeriveKey([]byte("fuzz"), "d")
	f.Fuzz(func(t *testing.T, s, region string) {
		outs := []string{IDCardString(s), NameString(s), PhoneString(s), AddressString(s, region), YearString(s)}
		h, err := HashString(key, s)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, h)
		for i, o := range outs {
			if !utf8.ValidString(o) {
				t.Fatalf("mask %d of %q gives invalid UTF-8 %q", i, s, o)
			}
		}
		if utf8.RuneCountInString(outs[1]) != utf8.RuneCountInString(s) {
			t.Fatalf("name mask of %q changes the length: %q", s, outs[1])
		}
		if utf8.RuneCountInString(s) > 10 && utf8.RuneCountInString(outs[0]) != utf8.RuneCountInString(s) {
			t.Fatalf("id_card mask of %q changes the length: %q", s, outs[0])
		}
	})
}

// TestHashNeedsCanonicalText: a value that is not a string is hashed as the caller's
// Options.Text writes it (schemas.CanonicalText in govx), and without one it is refused,
// never hashed as some other text a scan would not produce.
func TestHashNeedsCanonicalText(t *testing.T) {
	key := DeriveKey([]byte("master-secret-for-tests-only-000"), "mz-3301")
	if v, err := Value(Hash, int64(42), Options{Key: key}); err == nil {
		t.Fatalf("hash of an int64 without Options.Text = %v, want an error", v)
	}
	want, _ := HashString(key, "42")
	text := func(v any) string {
		if v != int64(42) {
			t.Fatalf("Text called with %#v", v)
		}
		return "42"
	}
	if got, err := Value(Hash, int64(42), Options{Key: key, Text: text}); err != nil || got != want {
		t.Fatalf("hash of int64 42 = %v, %v; want %v (the hash of its text)", got, err, want)
	}
	if got, _ := Value(Hash, "42", Options{Key: key}); got != want {
		t.Fatalf("hash of the string 42 = %v, want %v", got, want)
	}
}

// TestRecord: Record projects to the columns asked for, masks those with a mask as Value
// does, passes the others through, and withholds (nil, reported) a value its mask
// cannot handle rather than return it unmasked.
func TestRecord(t *testing.T) {
	key := DeriveKey([]byte("master-secret-for-tests-only-000"), "mz-3301")
	rec := map[string]any{
		"id_number": "330106199001011234", "name": "欧阳娜娜", "address": "浙江省杭州市西湖区文三路1号",
		"household_region": "330106", "children": int64(2), "phone": "13812345678",
	}
	masks := map[string]string{"id_number": IDCard, "name": Name, "address": Address, "children": IDCard, "household_region": "", "phone": Hash}
	out, withheld := Record(rec, []string{"id_number", "name", "address", "household_region", "children", "missing"}, masks, Options{Key: key, Region: "330106"})
	want := map[string]any{
		"id_number": "330106********1234", "name": "欧***", "address": "浙江省杭州市西湖区",
		"household_region": "330106", "children": nil, "missing": nil,
	}
	if len(out) != len(want) {
		t.Fatalf("Record = %v, want the 6 columns asked for (not phone)", out)
	}
	for c, w := range want {
		if v, ok := out[c]; !ok || v != w {
			t.Errorf("%s = %#v, want %#v", c, out[c], w)
		}
	}
	if len(withheld) != 1 || withheld[0].Column != "children" || withheld[0].Mask != IDCard || withheld[0].Err == nil {
		t.Errorf("withheld = %+v, want children (id_card of an int64)", withheld)
	}
	for c := range rec {
		if c != "phone" && c != "children" {
			if v, _ := Value(masks[c], rec[c], Options{Key: key, Region: "330106"}); out[c] != v {
				t.Errorf("%s: Record gives %v, Value %v", c, out[c], v)
			}
		}
	}
}

// TestYearOfDatesAndTimestamps holds the year mask of date and timestamp columns, read
// from the day count without formatting, to the first four characters of the canonical
// text, for every day of years -1 to 10000 and for instants on either side of midnight
// in every timestamp unit.
func TestYearOfDatesAndTimestamps(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	first := arrow.Date32FromTime(time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC))
	last := arrow.Date32FromTime(time.Date(10000, 12, 31, 0, 0, 0, 0, time.UTC))
	db := array.NewDate32Builder(mem)
	for d := first; d <= last; d++ {
		db.Append(d)
	}
	db.Append(math.MinInt32)
	db.Append(math.MaxInt32)
	darr := db.NewArray()
	db.Release()
	defer darr.Release()
	checkYears(t, mem, darr)

	for _, unit := range []arrow.TimeUnit{arrow.Second, arrow.Millisecond, arrow.Microsecond, arrow.Nanosecond} {
		tb := array.NewTimestampBuilder(mem, &arrow.TimestampType{Unit: unit, TimeZone: "UTC"})
		step := 7*24*time.Hour + 13*time.Hour + 17*time.Second + 3*time.Millisecond
		from, to := time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(10000, 12, 31, 23, 59, 59, 0, time.UTC)
		if unit == arrow.Nanosecond { // int64 nanoseconds span 1677–2262
			from, to = time.Date(1678, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		for at := from; at.Before(to); at = at.Add(step) {
			for _, d := range []time.Duration{0, -time.Nanosecond, time.Nanosecond} {
				v, err := arrow.TimestampFromTime(at.Add(d), unit)
				if err != nil {
					t.Fatal(err)
				}
				tb.Append(v)
			}
		}
		for _, y := range []int{0, 1, 1969, 1970, 2000, 2024, 9999} {
			for _, at := range []time.Time{time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(y, 12, 31, 23, 59, 59, 999999999, time.UTC)} {
				if v, err := arrow.TimestampFromTime(at, unit); err == nil && (unit != arrow.Nanosecond || at.Year() > 1677 && at.Year() < 2262) {
					tb.Append(v)
				}
			}
		}
		tarr := tb.NewArray()
		tb.Release()
		checkYears(t, mem, tarr)
		tarr.Release()
	}
}

// checkYears compares Array's year mask of arr with the first four characters of each
// row's canonical text.
func checkYears(t *testing.T, mem memory.Allocator, arr arrow.Array) {
	t.Helper()
	out, err := Array(mem, arr, Year, ArrayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	text := canonicalText(arr)
	years := out.(*array.String)
	for i := 0; i < arr.Len(); i++ {
		tb := text(nil, i)
		if want := string(tb[:min(4, len(tb))]); years.Value(i) != want {
			t.Fatalf("%s row %d (%s): year mask %q, want %q", arr.DataType(), i, tb, years.Value(i), want)
		}
	}
}
