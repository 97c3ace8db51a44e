package main

// The charts: one PNG per pair of measures, persons and values on log axes, each
// measure's points joined and its fit (fitAll) drawn dashed out to 100M persons.

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

var palette = []color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}}

// chart is one PNG: a title, a y label and the fits (by name) it shows.
type chart struct {
	file, title, ylabel string
	measures            []string
}

var chartSet = []chart{
	{"curve-ready.png", "Start → ready (ingest the whole topic)", "seconds", []string{"start → ready"}},
	{"curve-memory.png", "Memory at ready", "MB", []string{"RSS at ready", "Go heap live at ready"}},
	{"curve-pull.png", "Bulk pull, every row, 6 columns, 2 masks", "seconds", []string{"first pull after start", "warm pull"}},
	{"curve-lookup.png", "Lookup p99 at a fixed offered rate (open loop)", "ms", []string{"lookup p99"}},
}

func drawCharts(dir string, points []point, fits []fit) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	byName := map[string]fit{}
	for _, f := range fits {
		byName[f.name] = f
	}
	for _, c := range chartSet {
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = "persons (log scale); dashed: the fit extrapolated to 100M"
		p.Y.Label.Text = c.ylabel + " (log scale)"
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker = personTicks{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Legend.Top, p.Legend.Left = false, false // bottom right: the curves rise to the top right
		drawn := 0
		for i, name := range c.measures {
			f := byName[name]
			var xys plotter.XYs
			for _, pt := range points {
				if v := f.get(pt); pt.Err == "" && v > 0 {
					xys = append(xys, plotter.XY{X: float64(pt.Persons), Y: v})
				}
			}
			if len(xys) == 0 {
				continue
			}
			line, dots, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			line.Color, dots.Color = palette[i%len(palette)], palette[i%len(palette)]
			dots.Shape = draw.CircleGlyph{}
			p.Add(line, dots)
			label := name
			if f.n >= 2 {
				var ext plotter.XYs
				// A line with a negative fixed part (a first pull's) is below zero at the
				// smallest sizes: a log axis has no place for those points.
				for x := xys[0].X; x <= 1e8; x = min(x*math.Pow(10, 0.125), max(x*1.0001, 1e8)) {
					if y := f.at(x); y > 0 {
						ext = append(ext, plotter.XY{X: x, Y: y})
					}
					if x == 1e8 {
						break
					}
				}
				if len(ext) < 2 {
					p.Legend.Add(label, line, dots)
					drawn++
					continue
				}
				fl, err := plotter.NewLine(ext)
				if err != nil {
					return err
				}
				fl.Color = palette[i%len(palette)]
				fl.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
				p.Add(fl)
				label = fmt.Sprintf("%s (log-log slope %.2f; %s at 100M)", name, f.b, value(f.at(1e8), f.unit))
			}
			p.Legend.Add(label, line, dots)
			drawn++
		}
		if drawn == 0 {
			continue
		}
		p.X.Min, p.X.Max = xmin(points)/2, 2e8
		if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, c.file)); err != nil {
			return err
		}
	}
	return nil
}

func xmin(points []point) float64 {
	m := 1e8
	for _, p := range points {
		m = min(m, float64(p.Persons))
	}
	return m
}

// personTicks labels the persons axis at 100k, 1M, 10M, 100M.
type personTicks struct{}

func (personTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for v := 1e4; v <= 1e9; v *= 10 {
		if v < min || v > max {
			continue
		}
		ts = append(ts, plot.Tick{Value: v, Label: humanPersons(int(v))})
		for k := 2.0; k < 10; k++ {
			if v*k <= max {
				ts = append(ts, plot.Tick{Value: v * k})
			}
		}
	}
	return ts
}
