package synth

import (
	"math"
	"slices"
	"strconv"
	"time"

	"govx/schemas/ident"
)

// indicator is one statistics indicator: its code, unit, a typical yearly value for a
// province, and whether it is a flow that sums over a year (so a quarter holds about a
// quarter of it) or a level or index that does not.
type indicator struct {
	code, unit string
	province   float64
	flow       bool
	spread     float64 // relative random spread
}

var indicators = []indicator{
	{"GDP", "亿元", 80000, true, 0.08},
	{"CPI", "上年同期=100", 100.4, false, 0.01},
	{"PPI", "上年同期=100", 98.5, false, 0.02},
	{"RETAIL_SALES", "亿元", 30000, true, 0.08},
	{"FIXED_ASSET_INVESTMENT_GROWTH", "%", 4.5, false, 0.5},
	{"INDUSTRIAL_VALUE_ADDED_GROWTH", "%", 6.0, false, 0.4},
	{"EXPORTS", "亿元", 30000, true, 0.1},
	{"IMPORTS", "亿元", 12000, true, 0.1},
	{"URBAN_DISPOSABLE_INCOME", "元", 70000, true, 0.1},
	{"SURVEYED_UNEMPLOYMENT_RATE", "%", 4.8, false, 0.1},
	{"RESIDENT_POPULATION", "万人", 6500, false, 0.01},
	{"FISCAL_REVENUE", "亿元", 8500, true, 0.1},
}

// periods are the statistical periods of 2023–2025 in the national bureau's notation:
// years, quarters and months.
var periods = func() []string {
	var out []string
	for y := 2023; y <= 2025; y++ {
		ys := strconv.Itoa(y)
		out = append(out, ys)
		for q := 1; q <= 4; q++ {
			out = append(out, ys+"Q"+strconv.Itoa(q))
		}
		for m := 1; m <= 12; m++ {
			out = append(out, ys+"-"+twoDigits(m))
		}
	}
	return out
}()

// indicatorRegions are the regions the other registers use, with their cities and
// provinces, sorted: statistics covers exactly where people, organizations and parcels
// are.
func indicatorRegions(counties []ident.Region) []string {
	var out []string
	for _, c := range counties {
		for _, code := range []string{c.Code, c.CityCode, c.ProvinceCode} {
			if code != "" && !slices.Contains(out, code) {
				out = append(out, code)
			}
		}
	}
	slices.Sort(out)
	return out
}

// periodShape returns a period's end, its share of a year and its kind.
func periodShape(p string) (end time.Time, share float64, kind byte) {
	y, _ := strconv.Atoi(p[:4])
	switch {
	case len(p) == 4:
		return time.Date(y, 12, 31, 0, 0, 0, 0, time.UTC), 1, 'y'
	case p[4] == 'Q':
		q := int(p[5] - '0')
		return time.Date(y, time.Month(3*q+1), 0, 0, 0, 0, 0, time.UTC), 0.25, 'q'
	default:
		m, _ := strconv.Atoi(p[5:])
		return time.Date(y, time.Month(m+1), 0, 0, 0, 0, 0, time.UTC), 1.0 / 12, 'm'
	}
}

func (g *Generator) indicatorRow(rr *rowRand, i int) []any {
	r := rr.at(g.opts.Seed, kindIndicator, i)
	np := len(periods)
	ind := indicators[i/(np*len(g.indRegions))]
	region := g.indRegions[i/np%len(g.indRegions)]
	period := periods[i%np]
	end, share, kind := periodShape(period)

	v := ind.province * (1 + ind.spread*(2*r.Float64()-1))
	if ind.flow && ind.unit != "元" {
		// Flows in money scale with the region's size and the period's length; an
		// income per head does not scale with size.
		switch {
		case region[2:] == "0000":
		case region[4:] == "00":
			v *= 0.2
		default:
			v *= 0.03
		}
	}
	if ind.flow {
		v *= share
	}
	zbz := strconv.FormatFloat(math.Round(v*10000)/10000, 'f', 4, 64)

	// Published some weeks after the period ends; yearly figures at the end of February.
	var fbrq time.Time
	switch kind {
	case 'y':
		fbrq = time.Date(end.Year()+1, 2, 28, 0, 0, 0, 0, time.UTC)
	case 'q':
		fbrq = end.AddDate(0, 0, 15+r.IntN(10))
	default:
		fbrq = end.AddDate(0, 0, 12+r.IntN(8))
	}
	gxsj := fbrq.Add(9*time.Hour + time.Duration(r.IntN(8*3600))*time.Second)

	row := []any{ind.code, region, period, zbz, ind.unit, fbrq, gxsj}
	if g.plantedVariant(DeptStatistics, i) != 0 {
		// A period that does not exist, distinct per period so keys stay unique:
		// a year becomes quarter 0, a quarter Q5–Q8, a month 13–24.
		switch kind {
		case 'y':
			row[2] = period + "Q0"
		case 'q':
			row[2] = period[:5] + strconv.Itoa(int(period[5]-'0')+4)
		default:
			m, _ := strconv.Atoi(period[5:])
			row[2] = period[:5] + strconv.Itoa(m+12)
		}
	}
	return row
}
