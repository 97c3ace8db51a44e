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
// titles and axes are in the page's language (the SVG names its fonts and the browser
// draws the text, CJK included); the data labels are codes (departments, datasets,
// dates).

// chartColors tell the departments apart.
var chartColors = []color.Color{
	color.RGBA{0x1f, 0x5f, 0xa8, 0xff}, color.RGBA{0xc0, 0x39, 0x2b, 0xff}, color.RGBA{0x27, 0x8a, 0x4b, 0xff},
	color.RGBA{0x8e, 0x44, 0xad, 0xff}, color.RGBA{0xd3, 0x84, 0x00, 0xff}, color.RGBA{0x16, 0x8a, 0x8f, 0xff},
}

func (c *Console) chart(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("chart")
	newChart, ok := map[string]func() chartData{
		"requests.svg": newRequests, "rows.svg": newRows, "offhours.svg": newOffHours,
	}[name]
	f, err := filterOf(r.URL.Query())
	if err == nil && !ok {
		err = c.audit(r, s, "audit.chart", "", "", "", nil, unknownChart(name))
	} else if err == nil {
		err = c.audit(r, s, "audit.chart", f.Dataset, f.Purpose, f.CaseRef, nil, nil)
	}
	var p *plot.Plot
	if err == nil {
		data := newChart()
		if err = c.scan(r.Context(), f, data.add); err == nil {
			p, err = data.plot(c.newPage(r, s, "chart").T)
		}
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

// chartData sums the events of a search as they pass, then draws the chart.
type chartData interface {
	add(*audit.Event)
	plot(t func(key string) string) (*plot.Plot, error)
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

// requests sums requests (solid) and denials (dashed) per department per day, drawn
// for the six departments with the most requests.
type requests struct {
	all, denied map[string]map[time.Time]float64
	total       map[string]int
	first, last time.Time
}

func newRequests() chartData {
	return &requests{all: map[string]map[time.Time]float64{}, denied: map[string]map[time.Time]float64{}, total: map[string]int{}}
}

func (q *requests) add(e *audit.Event) {
	if e.Kind != audit.KindDecision {
		return
	}
	d := day(e.Time)
	if q.first.IsZero() || d.Before(q.first) {
		q.first = d
	}
	if d.After(q.last) {
		q.last = d
	}
	if q.all[e.Department] == nil {
		q.all[e.Department], q.denied[e.Department] = map[time.Time]float64{}, map[time.Time]float64{}
	}
	q.all[e.Department][d]++
	q.total[e.Department]++
	if e.Decision == audit.Deny {
		q.denied[e.Department][d]++
	}
}

func (q *requests) plot(t func(string) string) (*plot.Plot, error) {
	p := newPlot(t("chart_t_requests"), t("requests"))
	depts := make([]string, 0, len(q.all))
	for d := range q.all {
		depts = append(depts, d)
	}
	sort.Slice(depts, func(i, j int) bool {
		if q.total[depts[i]] != q.total[depts[j]] {
			return q.total[depts[i]] > q.total[depts[j]]
		}
		return depts[i] < depts[j]
	})
	if len(depts) > len(chartColors) {
		depts = depts[:len(chartColors)]
	}
	var days []time.Time
	for d := q.first; !q.first.IsZero() && !d.After(q.last); d = d.AddDate(0, 0, 1) {
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
			all[j] = plotter.XY{X: float64(j), Y: q.all[dept][d]}
			denied[j] = plotter.XY{X: float64(j), Y: q.denied[dept][d]}
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

// rows sums the rows served per dataset (complete events).
type rows map[string]float64

func newRows() chartData { return rows{} }

func (r rows) add(e *audit.Event) {
	if e.Kind == audit.KindComplete && e.Dataset != "" {
		r[e.Dataset] += float64(e.Rows)
	}
}

func (r rows) plot(t func(string) string) (*plot.Plot, error) {
	p := newPlot(t("chart_t_rows"), t("rows"))
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	vals := make(plotter.Values, len(names))
	for i, n := range names {
		vals[i] = r[n]
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

// offHoursCalendar counts off-hours requests per day, drawn as a calendar of the last
// five weeks up to the newest event.
type offHoursCalendar struct {
	n    map[time.Time]float64
	last time.Time
}

func newOffHours() chartData { return &offHoursCalendar{n: map[time.Time]float64{}} }

func (o *offHoursCalendar) add(e *audit.Event) {
	if e.Kind != audit.KindDecision {
		return
	}
	if e.Time.After(o.last) {
		o.last = e.Time
	}
	if offHours(e.Time) {
		o.n[day(e.Time)]++
	}
}

func (o *offHoursCalendar) plot(t func(string) string) (*plot.Plot, error) {
	p := newPlot(t("chart_t_offhours"), "")
	last := o.last
	if last.IsZero() {
		last = time.Now()
	}
	g := calendar{n: o.n}
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
	p.NominalY(t("sun"), t("sat"), t("fri"), t("thu"), t("wed"), t("tue"), t("mon"))
	p.X.Label.Text = t("week_of")
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
