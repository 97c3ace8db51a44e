// Package synth generates synthetic department databases for govx: the population
// register of public security (gab), the market-regulation register of legal entities
// (scjgj), the land parcels of natural resources (zrzyb), the statistics bureau's
// indicators (tjj) and the e-licence register of the government service data authority
// (zwfw), each in the department's own native table and column names, as real
// department systems keep them. `govx gen` loads them into SQLite, PostgreSQL, MariaDB or
// CSV so that connectors, the exchange and the demo have realistic data to move.
//
// Every row is a pure function of (seed, department, row index): the same seed and scale
// give identical rows in every target, a row can be regenerated on its own (so
// cross-register references are computed, never looked up in memory), and rows stream
// straight to the target. The registers agree with each other: legal representatives
// and individual parcel holders are persons of the population register, organizational
// holders are registered organizations, indicators cover exactly the regions the
// other registers use, and licences go to those organizations, parcel holders and
// persons.
//
// Licences are signed (schemas/license) with demo keys derived from the seed, one per
// issuing department (IssuerKey); IssuersYAML writes their public keys as policy data,
// and policies/issuers.yaml ships the ones for seed 1.
//
// A small, seed-determined share of rows is deliberately invalid (see InvalidRate and
// PlantedInvalid) so that connectors' dead-letter handling has work to do.
//
// Only cmd/govx, benchmarks and tests import this package; it depends on schemas/ident
// for the identifier check characters, on schemas/license to sign licences, and on
// nothing else of govx.
package synth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"govx/schemas/ident"
)

// Department codes of the providing departments, as used across govx.
const (
	DeptPopulation = "gab"   // 公安: population register
	DeptMarket     = "scjgj" // 市场监管: legal entities
	DeptLand       = "zrzyb" // 自然资源: land parcels
	DeptStatistics = "tjj"   // 统计: indicators
	DeptLicence    = "zwfw"  // 政务服务数据管理局: the e-licence register
)

// Departments lists every department the generator knows, in generation order.
func Departments() []string {
	return []string{DeptPopulation, DeptMarket, DeptLand, DeptStatistics, DeptLicence}
}

// DefaultInvalidRate is the share of rows `govx gen` plants invalid unless told otherwise.
const DefaultInvalidRate = 0.005

// Options choose what to generate. The zero InvalidRate plants no invalid rows; the
// command line defaults to DefaultInvalidRate (see DefaultOptions).
type Options struct {
	Scale       int      // persons; organizations are Scale/10, parcels Scale/5, licences see Count
	Seed        uint64   // same seed and scale give identical rows
	InvalidRate float64  // share of rows (0–0.5) planted invalid, in a documented way
	Departments []string // which departments to generate; empty means all
}

// DefaultOptions returns the options `govx gen` uses for scale and seed.
func DefaultOptions(scale int, seed uint64) Options {
	return Options{Scale: scale, Seed: seed, InvalidRate: DefaultInvalidRate}
}

// Generator yields the native rows of each department. It is safe for concurrent use:
// all state is fixed at construction.
type Generator struct {
	opts      Options
	depts     []string
	counties  []ident.Region
	cinfo     []countyInfo
	nPersons  int
	nOrgs     int
	nParcels  int
	nPersonal int // licences of persons (or organizations' permits in their place)

	idSpace  uint64 // citizen-ID slots: counties × birth dates × 1000 sequences
	orgSlots perm   // index -> 8-digit organization code body, unique USCCs

	indRegions []string // every region indicators cover: counties, cities, provinces

	issuerKeys     map[string]ed25519.PrivateKey // by issuer code
	licencePersons perm                          // personal licence k -> person index
}

// Birth dates run from 1930-01-01 to 2020-12-31, as the brief of the demo fixes.
var (
	birthFirst = time.Date(1930, 1, 1, 0, 0, 0, 0, time.UTC)
	birthLast  = time.Date(2020, 12, 31, 0, 0, 0, 0, time.UTC)
	birthDays  = int(birthLast.Sub(birthFirst).Hours()/24) + 1
)

// minScale keeps every register non-empty and leaves adults to represent organizations.
const minScale = 10

// New checks opts and returns a generator.
func New(opts Options) (*Generator, error) {
	if opts.Scale < minScale {
		return nil, fmt.Errorf("scale must be at least %d persons, got %d", minScale, opts.Scale)
	}
	if opts.InvalidRate < 0 || opts.InvalidRate > 0.5 {
		return nil, fmt.Errorf("invalid rate must be between 0 and 0.5, got %v", opts.InvalidRate)
	}
	g := &Generator{opts: opts, counties: ident.DemoCounties()}
	if len(g.counties) == 0 {
		return nil, errors.New("the region table has no demo counties; schemas/ident is incomplete")
	}
	if len(opts.Departments) == 0 {
		g.depts = Departments()
	} else {
		for _, d := range opts.Departments {
			if !slices.Contains(Departments(), d) {
				return nil, fmt.Errorf("unknown department %q: use one of %v", d, Departments())
			}
			if !slices.Contains(g.depts, d) {
				g.depts = append(g.depts, d)
			}
		}
		// Keep generation order fixed whatever order the flag listed them in.
		slices.SortFunc(g.depts, func(a, b string) int {
			return slices.Index(Departments(), a) - slices.Index(Departments(), b)
		})
	}
	slots := uint64(len(g.counties)) * uint64(birthDays) * 1000
	if uint64(opts.Scale) > slots/2 {
		return nil, fmt.Errorf("scale %d is too large: the demo counties hold at most %d distinct citizen IDs", opts.Scale, slots/2)
	}
	g.nPersons = opts.Scale
	g.nOrgs = max(1, opts.Scale/10)
	g.nParcels = max(1, opts.Scale/5)
	if g.nOrgs > 50_000_000 {
		return nil, fmt.Errorf("scale %d is too large for distinct organization codes", opts.Scale)
	}
	g.idSpace = slots
	g.orgSlots = newPerm(100_000_000, opts.Seed, kindOrg)
	g.cinfo = countyInfos(g.counties)
	g.indRegions = indicatorRegions(g.counties)
	g.nPersonal = opts.Scale / 4
	g.licencePersons = newPerm(uint64(g.nPersons), opts.Seed, kindLicensee)
	g.issuerKeys = map[string]ed25519.PrivateKey{}
	for _, is := range issuersOf(g.cinfo) {
		g.issuerKeys[is.Code] = IssuerKey(opts.Seed, is.Code)
	}
	return g, nil
}

// Options returns the options the generator was built with.
func (g *Generator) Options() Options { return g.opts }

// Departments returns the departments this generator produces, in generation order.
func (g *Generator) Departments() []string { return slices.Clone(g.depts) }

// Count returns how many rows dept's table has.
func (g *Generator) Count(dept string) int {
	switch dept {
	case DeptPopulation:
		return g.nPersons
	case DeptMarket:
		return g.nOrgs
	case DeptLand:
		return g.nParcels
	case DeptStatistics:
		return len(indicators) * len(g.indRegions) * len(periods)
	case DeptLicence:
		// A registration certificate per organization, a real-estate certificate per
		// parcel, and Scale/4 personal licences or permits (see licenceRow).
		return g.nOrgs + g.nParcels + g.nPersonal
	}
	return 0
}

// Row returns row i of dept's table, in the column order of Table(dept).
func (g *Generator) Row(dept string, i int) []any {
	var r rowRand
	return g.row(&r, dept, i)
}

func (g *Generator) row(r *rowRand, dept string, i int) []any {
	switch dept {
	case DeptPopulation:
		return g.personRow(r, i)
	case DeptMarket:
		return g.orgRow(r, i)
	case DeptLand:
		return g.parcelRow(r, i)
	case DeptStatistics:
		return g.indicatorRow(r, i)
	case DeptLicence:
		return g.licenceRow(r, i)
	}
	return nil
}

// Rows yields every row of dept's table with its index, in order. Each row is a fresh
// slice the caller may keep.
func (g *Generator) Rows(dept string) iter.Seq2[int, []any] {
	return func(yield func(int, []any) bool) {
		var r rowRand
		n := g.Count(dept)
		for i := 0; i < n; i++ {
			if !yield(i, g.row(&r, dept, i)) {
				return
			}
		}
	}
}

// Summary reports what was written for one department.
type Summary struct {
	Dept    string
	Table   string
	Rows    int
	Elapsed time.Duration
}

// RowsPerSecond is the load rate.
func (s Summary) RowsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Rows) / s.Elapsed.Seconds()
}

// Progress receives progress while Generate runs; every method is called from the
// goroutine that called Generate.
type Progress interface {
	Start(dept, table string, total int)
	Add(n int)
	Done(s Summary)
}

// batchRows is how many rows travel together from the generator to the writer: large
// enough that per-batch costs (a statement, a COPY, a channel send) vanish, small
// enough that memory stays flat.
const batchRows = 2000

// Generate writes every department of g into w, replacing existing tables, and returns
// a summary per department. Rows are generated on a second goroutine while the writer
// loads the previous batch, so a two-core machine keeps both busy.
func Generate(ctx context.Context, g *Generator, w Writer, p Progress) ([]Summary, error) {
	var out []Summary
	for _, dept := range g.depts {
		s, err := generateDept(ctx, g, w, dept, p)
		if err != nil {
			return out, fmt.Errorf("%s: %w", dept, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func generateDept(ctx context.Context, g *Generator, w Writer, dept string, p Progress) (Summary, error) {
	t := TableOf(dept)
	start := time.Now()
	total := g.Count(dept)
	if p != nil {
		p.Start(dept, t.Name, total)
	}
	tw, err := w.Create(ctx, t)
	if err != nil {
		return Summary{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan [][]any, 4)
	go func() {
		defer close(batches)
		var r rowRand
		for lo := 0; lo < total; lo += batchRows {
			hi := min(total, lo+batchRows)
			b := make([][]any, 0, hi-lo)
			for i := lo; i < hi; i++ {
				b = append(b, g.row(&r, dept, i))
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	n := 0
	for b := range batches {
		if err := tw.Write(ctx, b); err != nil {
			tw.Abort()
			return Summary{}, err
		}
		n += len(b)
		if p != nil {
			p.Add(len(b))
		}
	}
	if err := ctx.Err(); err != nil {
		tw.Abort()
		return Summary{}, err
	}
	if err := tw.Commit(ctx); err != nil {
		return Summary{}, err
	}
	s := Summary{Dept: dept, Table: t.Name, Rows: n, Elapsed: time.Since(start)}
	if p != nil {
		p.Done(s)
	}
	return s, nil
}
