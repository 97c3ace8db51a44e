package connectors

import (
	"reflect"
	"testing"
	"time"

	"govx/schemas"
)

// normalizeInputs are source texts a department database holds: ASCII, Chinese,
// full-width letters and digits, the ideographic space, CJK punctuation that folds to a
// half-width form, lower-case check characters, padding, invalid UTF-8 and dates in and
// out of the configured formats.
var normalizeInputs = []string{
	"", " ", "\u3000", "abc", "  abc\t", "张三", " 张三 ", "欧阳娜娜", "浙江省杭州市西湖区文三路１２３号",
	"ＡＢＣ１２３", "１３８１２３４５６７８", "\u3000张三\u3000", "上城区。「注」", "ｱｲｳ", "ﾟ", "a\u00a0", "\u0085x",
	"33010619900307123x", "33010619900307123X", "\xff\xfeabc", "abc\xe4", "330106", "３３０１０６",
	"19900307", "１９９０0307", "19900230", "1990-03-07", "1990/3/7", "1990年3月7日", "2024-09-30T08:00:00+08:00",
	"07031990", "not a date", "alive", "男", "１", "true", "0.5", "12",
}

// TestNormalizeMatchesSchemas checks the snapshot's allocation-free normalization against
// schemas' own, for every field of every dataset, with and without configured formats.
func TestNormalizeMatchesSchemas(t *testing.T) {
	for _, s := range normalizeInputs {
		if got, want := normText(s), schemas.NormalizeText(s); got != want {
			t.Errorf("normText(%q) = %q, schemas.NormalizeText gives %q", s, got, want)
		}
	}
	values := []any{nil, int64(7), 1.5, true, time.Date(1990, 3, 7, 0, 0, 0, 0, cst), []byte("ＡＢＣ")}
	for _, s := range normalizeInputs {
		values = append(values, s)
	}
	for _, ds := range catalog().Datasets() {
		for i := range ds.Fields {
			f := &ds.Fields[i]
			for _, formats := range [][]string{nil, {"20060102"}, {"01022006"}, {"2006/01/02"}} {
				mf := &mappedField{f: f, formats: formats, dateLayouts: append(append([]string{}, formats...), schemas.DateLayouts...)}
				for _, v := range values {
					if b, ok := v.([]byte); ok {
						v = string(b) // mappedField.value does this first
					}
					got, gotErr := mf.normalize(v)
					want, wantErr := f.Normalize(v, formats...)
					if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) ||
						(gotErr != nil && gotErr.Error() != wantErr.Error()) {
						t.Errorf("%s.%s formats %v, %#v: got %#v, %v; Field.Normalize gives %#v, %v",
							ds.ID, f.Name, formats, v, got, gotErr, want, wantErr)
					}
				}
			}
		}
	}
}
