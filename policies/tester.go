package policies

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is the outcome of one Rego test rule.
type TestResult struct {
	Name     string // e.g. "data.govx.sharing_test.test_mz_reads_masked"
	File     string
	Line     int
	Pass     bool
	Err      error  // an evaluation error, when the test errored rather than failed
	Failed   string // the expression that was false, when known
	Duration time.Duration
}

// TestReport is the outcome of RunTests.
type TestReport struct {
	Results []TestResult
	// Coverage is the percentage of the policy modules' (not the tests') lines that
	// the tests evaluated.
	Coverage float64
	// NotCovered lists "file:line" ranges of policy lines no test evaluated.
	NotCovered []string
}

// Failed returns the number of tests that did not pass.
func (r *TestReport) Failed() int {
	n := 0
	for _, t := range r.Results {
		if !t.Pass {
			n++
		}
	}
	return n
}

// RunTests runs the bundle's Rego tests (rules named test_* in *_test.rego files) with
// the bundle's data, as `opa test --coverage` would, and reports each result and the
// coverage of the policy modules. An error means the tests could not run (e.g. the
// Rego does not compile); failing tests are in the report.
func RunTests(ctx context.Context, b *Bundle) (*TestReport, error) {
	comp, mods, err := b.Compile(true)
	if err != nil {
		return nil, Problems(compileProblems(err))
	}
	store := inmem.NewFromObject(b.Data())
	cov := cover.New()
	runner := tester.NewRunner().
		SetCompiler(comp).
		SetStore(store).
		SetModules(mods).
		SetCoverageQueryTracer(cov).
		SetTimeout(30 * time.Second).
		SetParallel(1)
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("run Rego tests: %w", err)
	}
	rep := &TestReport{}
	for r := range ch {
		tr := TestResult{
			Name:     r.Package + "." + r.Name,
			Pass:     r.Pass(),
			Err:      r.Error,
			Duration: r.Duration,
		}
		if r.Location != nil {
			tr.File, tr.Line = r.Location.File, r.Location.Row
		}
		if r.FailedAt != nil {
			tr.Failed = r.FailedAt.String()
		}
		rep.Results = append(rep.Results, tr)
	}
	policyMods := map[string]*ast.Module{}
	for _, m := range b.Modules {
		if !m.Test {
			policyMods[m.File] = mods[m.File]
		}
	}
	cr := cov.Report(policyMods)
	rep.Coverage = cr.Coverage
	files := make([]string, 0, len(cr.Files))
	for f := range cr.Files {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		for _, rg := range cr.Files[f].NotCovered {
			if rg.Start.Row == rg.End.Row {
				rep.NotCovered = append(rep.NotCovered, fmt.Sprintf("%s:%d", f, rg.Start.Row))
			} else {
				rep.NotCovered = append(rep.NotCovered, fmt.Sprintf("%s:%d-%d", f, rg.Start.Row, rg.End.Row))
			}
		}
	}
	return rep, nil
}
