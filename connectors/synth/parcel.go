package synth

import (
	"strconv"
	"time"
)

// rightKind is a land right as the real-estate register records it: the native right
// type (qllx), the parcel-code letters (ownership G state / J collective, then the
// parcel type of TD/T 1001), the land uses (GB/T 21010) it goes with, the holder kind and
// a typical area.
type rightKind struct {
	qllx          string
	letters       string
	uses          []string
	orgHolderPct  int // share of holders that are organizations; the rest are persons
	minM2, spanM2 int
	weight        int
}

var rightKinds = []rightKind{
	{"国有建设用地使用权", "GB", []string{"0701", "0701", "05", "0601", "08", "0901"}, 55, 200, 50000, 55},
	{"宅基地使用权", "JC", []string{"0702"}, 0, 80, 220, 20},
	{"集体土地所有权", "JA", []string{"0101", "0102", "0103", "0201", "0301"}, 100, 5000, 500000, 10},
	{"集体建设用地使用权", "JB", []string{"0601", "05", "0702"}, 70, 300, 30000, 10},
	{"国有农用地使用权", "GD", []string{"0101", "0201", "0301"}, 60, 2000, 200000, 5},
}

var rightKindCum = func() []int {
	cum := make([]int, len(rightKinds))
	t := 0
	for i, k := range rightKinds {
		t += k.weight
		cum[i] = t
	}
	return cum
}()

var (
	registeredFirst = time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC)
	registeredDays  = int(time.Date(2025, 6, 30, 0, 0, 0, 0, time.UTC).Sub(registeredFirst).Hours() / 24)
)

func (g *Generator) parcelRow(rr *rowRand, i int) []any {
	row, djrq := g.parcelClean(rr, i)
	switch g.plantedVariant(DeptLand, i) {
	case 1:
		// 30 February: an impossible registration date.
		row[9] = djrq.Format("2006") + "/02/30"
	case 2:
		// A parcel with no right holder at all.
		row[5], row[6] = nil, nil
	}
	return row
}

// parcelClean is parcel i as it would be if it were not planted invalid, with its
// registration date: the real-estate certificate of the parcel is issued to its
// holder on that date even when the land register's copy of the row is damaged.
func (g *Generator) parcelClean(rr *rowRand, i int) ([]any, time.Time) {
	r := rr.at(g.opts.Seed, kindParcel, i)
	c := g.cinfo[r.IntN(len(g.cinfo))]
	k := rightKinds[weighted(r, rightKindCum)]
	// The code's 6 + 5 digits (cadastral zone, sub-zone, parcel number) encode the row
	// index, so parcel codes are unique by construction.
	zone := i/(999*99999) + 1
	sub := i/99999%999 + 1
	seq := i%99999 + 1
	zddm := c.Code + pad(zone, 3) + pad(sub, 3) + k.letters + pad(seq, 5)
	area := int64(k.minM2+r.IntN(k.spanM2))*100 + int64(r.IntN(100)) // hundredths of a m²
	var qlrUSCC, qlrID any
	if r.IntN(100) < k.orgHolderPct {
		qlrUSCC = g.refOrg(kindHolder, i).uscc
	} else {
		qlrID = g.refPerson(kindHolder, i).id
	}
	djrq := registeredFirst.AddDate(0, 0, r.IntN(registeredDays))
	row := []any{
		zddm, c.Code, pick(r, k.uses), strconv.FormatInt(area/100, 10) + "." + pad(int(area%100), 2),
		k.qllx, qlrUSCC, qlrID,
		round6(c.lon + (r.Float64()-0.5)*0.08), round6(c.lat + (r.Float64()-0.5)*0.06),
		djrq.Format("2006/01/02"), updatedAt(r),
	}
	return row, djrq
}

func round6(x float64) float64 {
	return float64(int64(x*1e6+0.5)) / 1e6
}

func pad(n, width int) string {
	s := strconv.Itoa(n)
	for len(s) < width {
		s = "0" + s
	}
	return s
}
