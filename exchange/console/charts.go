package console

import (
	"bytes"
	"image/color"
	"math"
	"net/http"
	"sort"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/schemas"
)

// Charts are drawn on the server as SVG (gonum.org/v1/plot) from the same events the
// search shows, and served as images: no script, nothing fetched from elsewhere. Their
// labels are codes (departments, datasets, dates); the page around them says what they
// show, in the page's language.

// chartColors tell the departments apart.
var chartColors = []color.Color{
	color.RGBA{0x1f, 0x5f, 0xa8, 0xff}, color.RGBA{0xc0, 0x39, 0x2b, 0xff}, color.RGBA{0x27, 0x8a, 0x4b, 0xff},
	color.RGBA{0x8e, 0x44, 0xad, 0xff}, color.RGBA{0xd3, 0x84, 0x00, 0xff}, color.RGBA{0x16, 0x8a, 0x8f, 0xff},
}

func (c *Console) chart(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("chart")
	draw, ok := map[string]func([]*audit.Event) (*plot.Plot, error){
		"requests.svg": requestsChart, "rows.svg": rowsChart, "offhours.svg": offHoursChart,
	}[name]
	f, err := filterOf(r.URL.Query())
	if err == nil && !ok {
		err = c.audit(r, s, "audit.chart", "", "", "", nil, unknownChart(name))
	} else if err == nil {
		err = c.audit(r, s, "audit.chart", f.Dataset, f.Purpose, f.CaseRef, nil, nil)
	}
	var evs []*audit.Event
	if err == nil {
		evs, err = c.events(r.Context(), f)
	}
	var p *plot.Plot
	if err == nil {
		p, err = draw(evs)
	}
	if err != nil {
		http.Error(w, "the chart cannot be drawn: "+err.Error(), statusOf(err))
		return
	}
	canvas := vgsvg.New(16*vg.Centimeter, 8*vg.Centimeter)
	p.Draw(drawCanvas(canvas))
	var buf bytes.Buffer
	if _, err := canvas.WriteTo(&buf); err != nil {
		http.Error(w, "the chart cannot be drawn", http.StatusInternalServerError)
		return
	}
	// An SVG shown as an image runs no script; its own style attributes need this.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("Content-Type", "image/svg+xml")
	buf.WriteTo(w)
}

func drawCanvas(c *vgsvg.Canvas) draw.Canvas { return draw.New(c) }

func newPlot(title, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Y.Min = 0
	return p
}

// day is the calendar day of t in China Standard Time.
func day(t time.Time) time.Time {
	y, m, d := t.In(schemas.ChinaTime).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, schemas.ChinaTime)
}

// requestsChart: requests (solid) and denials (dashed) per department per day, for the
// six departments with the most requests.
func requestsChart(evs []*audit.Event) (*plot.Plot, error) {
	p := newPlot("requests / denials per day", "requests")
	type count struct{ all, denied map[time.Time]float64 }
	by := map[string]*count{}
	total := map[string]int{}
	first, last := time.Time{}, time.Time{}
	for _, e := range evs {
		if e.Kind != audit.KindDecision {
			continue
		}
		d := day(e.Time)
		if first.IsZero() || d.Before(first) {
			first = d
		}
		if d.After(last) {
			last = d
		}
		n := by[e.Department]
		if n == nil {
			n = &count{all: map[time.Time]float64{}, denied: map[time.Time]float64{}}
			by[e.Department] = n
		}
		n.all[d]++
		total[e.Department]++
		if e.Decision == audit.Deny {
			n.denied[d]++
		}
	}
	depts := make([]string, 0, len(by))
	for d := range by {
		depts = append(depts, d)
	}
	sort.Slice(depts, func(i, j int) bool {
		if total[depts[i]] != total[depts[j]] {
			return total[depts[i]] > total[depts[j]]
		}
		return depts[i] < depts[j]
	})
	if len(depts) > len(chartColors) {
		depts = depts[:len(chartColors)]
	}
	var days []time.Time
	for d := first; !first.IsZero() && !d.After(last); d = d.AddDate(0, 0, 1) {
		days = append(days, d)
	}
	if len(days) == 1 { // one day: show it between its neighbours
		days = []time.Time{days[0].AddDate(0, 0, -1), days[0], days[0].AddDate(0, 0, 1)}
	}
	labels := make([]string, len(days))
	for i, d := range days {
		labels[i] = d.Format("01-02")
	}
	for i, dept := range depts {
		all, denied := make(plotter.XYs, len(days)), make(plotter.XYs, len(days))
		for j, d := range days {
			all[j] = plotter.XY{X: float64(j), Y: by[dept].all[d]}
			denied[j] = plotter.XY{X: float64(j), Y: by[dept].denied[d]}
		}
		l, err := plotter.NewLine(all)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width = chartColors[i], vg.Points(1.5)
		ld, err := plotter.NewLine(denied)
		if err != nil {
			return nil, err
		}
		ld.Color, ld.Width, ld.Dashes = chartColors[i], vg.Points(1), []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l, ld)
		p.Legend.Add(dept, l)
	}
	if len(labels) > 0 {
		p.NominalX(labels...)
	}
	return p, nil
}

// rowsChart: rows served per dataset (complete events).
func rowsChart(evs []*audit.Event) (*plot.Plot, error) {
	p := newPlot("rows served per dataset", "rows")
	rows := map[string]float64{}
	for _, e := range evs {
		if e.Kind == audit.KindComplete && e.Dataset != "" {
			rows[e.Dataset] += float64(e.Rows)
		}
	}
	names := make([]string, 0, len(rows))
	for n := range rows {
		names = append(names, n)
	}
	sort.Strings(names)
	vals := make(plotter.Values, len(names))
	for i, n := range names {
		vals[i] = rows[n]
	}
	if len(vals) == 0 {
		return p, nil
	}
	b, err := plotter.NewBarChart(vals, vg.Points(24))
	if err != nil {
		return nil, err
	}
	b.Color = chartColors[0]
	p.Add(b)
	p.NominalX(names...)
	return p, nil
}

// offHours reports whether t is outside working hours (08:30–18:00 on weekdays, China
// Standard Time), as `govx audit report` counts them by default.
func offHours(t time.Time) bool {
	l := t.In(schemas.ChinaTime)
	if wd := l.Weekday(); wd == time.Saturday || wd == time.Sunday {
		return true
	}
	m := l.Hour()*60 + l.Minute()
	return m < 8*60+30 || m >= 18*60
}

// calendar is a GridXYZ of weeks (columns) by weekday (rows, Monday at the top).
type calendar struct {
	weeks []time.Time // each week's Monday
	n     map[time.Time]float64
}

func (g calendar) Dims() (int, int) { return len(g.weeks), 7 }
func (g calendar) Z(c, r int) float64 {
	return g.n[g.weeks[c].AddDate(0, 0, 6-r)] // row 0, at the bottom, is Sunday
}
func (g calendar) X(c int) float64 { return float64(c) }
func (g calendar) Y(r int) float64 { return float64(r) }

// offHoursChart: a calendar of off-hours requests per day, the last five weeks up to
// the newest event.
func offHoursChart(evs []*audit.Event) (*plot.Plot, error) {
	p := newPlot("off-hours requests per day", "")
	g := calendar{n: map[time.Time]float64{}}
	last := time.Now()
	for _, e := range evs {
		if e.Kind != audit.KindDecision {
			continue
		}
		if len(g.n) == 0 || e.Time.After(last) {
			last = e.Time
		}
		if offHours(e.Time) {
			g.n[day(e.Time)]++
		}
	}
	monday := day(last).AddDate(0, 0, -((int(day(last).Weekday()) + 6) % 7))
	var labels []string
	for i := 4; i >= 0; i-- {
		w := monday.AddDate(0, 0, -7*i)
		g.weeks = append(g.weeks, w)
		labels = append(labels, w.Format("01-02"))
	}
	max := 0.0
	for _, v := range g.n {
		max = math.Max(max, v)
	}
	h := plotter.NewHeatMap(g, shades{})
	h.Min, h.Max = 0, math.Max(max, 1)
	p.Add(h)
	p.NominalX(labels...)
	p.NominalY("Sun", "Sat", "Fri", "Thu", "Wed", "Tue", "Mon")
	p.X.Label.Text = "week of"
	return p, nil
}

// shades go from a pale grey (no off-hours request) to a deep red (the most in a day).
type shades struct{}

func (shades) Colors() []color.Color {
	out := make([]color.Color, 8)
	for i := range out {
		f := float64(i) / float64(len(out)-1)
		out[i] = color.RGBA{R: uint8(0xee - f*(0xee-0xb0)), G: uint8(0xf0 - f*0xe0), B: uint8(0xf2 - f*0xe0), A: 0xff}
	}
	return out
}

func unknownChart(name string) error {
	return exchange.E(exchange.NotFound, "unknown_chart", "no such chart: "+name)
}
