package policies

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"govx/schemas"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// The sharing process's policy lives in two subdirectories of a policy directory, which
// the sharing bundle (Load) does not read, so that neither changes the sharing revision:
//
//	calendar/<year>.yaml        public holidays and adjusted working days (调休)
//	applications/roles.yaml     who holds the data authority's and the stewards' roles
//	applications/limits.yaml    time limits in working days, per province
//	applications/*.rego         data.govx.applications.decision: who may act
//
//go:embed calendar/*.yaml applications/*.yaml applications/*.rego
var processFS embed.FS

// Subdirectories of a policy directory holding the sharing process's policy.
const (
	CalendarDir     = "calendar"
	ApplicationsDir = "applications"
)

// ProcessQuery is the rule deciding who may act in the sharing process.
const ProcessQuery = "data.govx.applications.decision"

// Process is the policy of the sharing application process (共享申请—答复) and of
// corrections (校核纠错): the calendar its clocks run on, its time limits, its roles and
// the Rego deciding who may act.
type Process struct {
	Source   string
	Calendar *Calendar
	Limits   []TimeLimit
	Roles    Roles
	Modules  []Module
	// Revision is the SHA-256 of the files above, in hex.
	Revision string
}

// TimeLimit is one province's time limits, in working days.
type TimeLimit struct {
	// Province is the first two digits of a GB/T 2260 code, or "default".
	Province         string `yaml:"province"`
	Name             string `yaml:"name"`
	Review           int    `yaml:"review"`
	Answer           int    `yaml:"answer"`
	PublishAndAnswer int    `yaml:"publish_and_answer"`
	Correction       int    `yaml:"correction"`
}

// RoleHolder is a department, or one system of it, holding a role.
type RoleHolder struct {
	Department string `yaml:"department"`
	// System, when set, limits the role to that system of the department.
	System string `yaml:"system"`
}

// Roles are the holders of the sharing process's roles.
type Roles struct {
	DataAuthority []RoleHolder `yaml:"data_authority"`
	Stewards      []RoleHolder `yaml:"stewards"`
	// Auditors read the audit log in the exchange's console (exchange/console).
	Auditors []RoleHolder `yaml:"auditors"`
}

// EmbeddedProcess returns the process policy built into the binary.
func EmbeddedProcess() (*Process, error) {
	return loadProcess(processFS, EmbeddedSource)
}

// LoadProcess loads the process policy from a policy directory (its calendar and
// applications subdirectories). A missing file, a file that does not parse, an unknown
// key or an inconsistent entry is an error of type Problems.
func LoadProcess(dir string) (*Process, error) {
	return loadProcess(os.DirFS(dir), dir)
}

func loadProcess(fsys fs.FS, source string) (*Process, error) {
	p := &Process{Source: source}
	h := sha256.New()
	var probs Problems
	read := func(name string) []byte {
		raw, err := fs.ReadFile(fsys, name)
		if err != nil {
			probs = append(probs, Problem{File: path.Join(source, name), Message: err.Error()})
			return nil
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(raw))
		h.Write(raw)
		return raw
	}
	years, err := fs.Glob(fsys, CalendarDir+"/*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(years)
	var cal []calendarYear
	for _, name := range years {
		raw := read(name)
		if raw == nil {
			continue
		}
		var y calendarYear
		if yp := decodeYAML(path.Join(source, name), raw, &y); yp != nil {
			probs = append(probs, yp...)
			continue
		}
		y.file = path.Join(source, name)
		cal = append(cal, y)
	}
	c, cp := newCalendar(cal)
	probs = append(probs, cp...)
	p.Calendar = c

	var limits struct {
		Limits []TimeLimit `yaml:"limits"`
	}
	limitsFile := path.Join(ApplicationsDir, "limits.yaml")
	if raw := read(limitsFile); raw != nil {
		probs = append(probs, decodeYAML(path.Join(source, limitsFile), raw, &limits)...)
	}
	p.Limits = limits.Limits
	probs = append(probs, checkLimits(path.Join(source, limitsFile), p.Limits)...)

	rolesFile := path.Join(ApplicationsDir, "roles.yaml")
	if raw := read(rolesFile); raw != nil {
		probs = append(probs, decodeYAML(path.Join(source, rolesFile), raw, &p.Roles)...)
	}
	for _, r := range slices.Concat(p.Roles.DataAuthority, p.Roles.Stewards, p.Roles.Auditors) {
		if r.Department == "" {
			probs = append(probs, Problem{File: path.Join(source, rolesFile), Message: "a role holder without a department"})
		}
	}

	regos, err := fs.Glob(fsys, ApplicationsDir+"/*.rego")
	if err != nil {
		return nil, err
	}
	sort.Strings(regos)
	for _, name := range regos {
		if raw := read(name); raw != nil {
			p.Modules = append(p.Modules, Module{File: name, Source: string(raw), Test: strings.HasSuffix(name, "_test.rego")})
		}
	}
	if len(regos) == 0 {
		probs = append(probs, Problem{File: path.Join(source, ApplicationsDir), Message: "no .rego file deciding " + ProcessQuery})
	}
	if len(probs) > 0 {
		return nil, probs
	}
	p.Revision = hex.EncodeToString(h.Sum(nil))
	return p, nil
}

func checkLimits(file string, ls []TimeLimit) []Problem {
	var probs []Problem
	seen := map[string]bool{}
	for _, l := range ls {
		entry := "province " + l.Province
		if l.Province != "default" && (len(l.Province) != 2 || strings.Trim(l.Province, "0123456789") != "") {
			probs = append(probs, Problem{File: file, Entry: entry, Message: `province is two digits (the GB/T 2260 province prefix, e.g. "61") or "default"`})
		}
		if seen[l.Province] {
			probs = append(probs, Problem{File: file, Entry: entry, Message: "listed twice"})
		}
		seen[l.Province] = true
		if l.Review < 1 || l.Answer < 1 || l.PublishAndAnswer < 1 || l.Correction < 1 {
			probs = append(probs, Problem{File: file, Entry: entry, Message: "every limit (review, answer, publish_and_answer, correction) is at least 1 working day"})
		}
	}
	if !seen["default"] {
		probs = append(probs, Problem{File: file, Message: "no default entry: the limits of a department in a province not listed would be unknown"})
	}
	return probs
}

// Limit returns the time limits for a department of the given GB/T 2260 region (empty
// for a national department): its province's, or the default.
func (p *Process) Limit(region string) TimeLimit {
	var def TimeLimit
	for _, l := range p.Limits {
		if len(region) >= 2 && l.Province == region[:2] {
			return l
		}
		if l.Province == "default" {
			def = l
		}
	}
	return def
}

// Data returns the data document the process Rego reads: data.roles, each role as an
// object mapping a department to {any_system, systems}.
func (p *Process) Data() map[string]any {
	shape := func(hs []RoleHolder) map[string]any {
		out := map[string]any{}
		for _, h := range hs {
			r, _ := out[h.Department].(map[string]any)
			if r == nil {
				r = map[string]any{"any_system": false, "systems": map[string]any{}}
				out[h.Department] = r
			}
			if h.System == "" {
				r["any_system"] = true
			} else {
				r["systems"].(map[string]any)[h.System] = true
			}
		}
		return out
	}
	return map[string]any{"roles": map[string]any{
		"data_authority": shape(p.Roles.DataAuthority),
		"stewards":       shape(p.Roles.Stewards),
		"auditors":       shape(p.Roles.Auditors),
	}}
}

// copyProcess writes the shipped process policy into dir's subdirectories.
func copyProcess(dir string) error {
	return fs.WalkDir(processFS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := path.Join(dir, name)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := processFS.ReadFile(name)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// chinaDate is a calendar day in China Standard Time.
func chinaDate(t time.Time) time.Time {
	y, m, d := t.In(schemas.ChinaTime).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, schemas.ChinaTime)
}
