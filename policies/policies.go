// Package policies embeds the shipped sharing policy (Rego, package govx.sharing) and
// its data (the sharing catalog, the departments, the sharing agreements, the e-licence
// issuers' public keys), loads the same from a directory a data steward edits, and
// validates it: a strict compile of the Rego, and the data checked against the dataset
// schemas and against itself.
//
// The exchange (exchange/policy) evaluates a Bundle; the steward's commands (govx
// policy test|check|explain) load, check and test one. This package decides nothing
// itself.
package policies

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"govx/schemas"
	"govx/schemas/license"
)

//go:embed *.rego *.yaml
var embedded embed.FS

// EmbeddedSource is the Source of the bundle built into the binary.
const EmbeddedSource = "(embedded)"

// Module is one Rego file.
type Module struct {
	File   string // base name, e.g. "sharing.rego"
	Source string
	// Test reports whether the file holds Rego tests (*_test.rego); tests are compiled
	// by Check and run by RunTests but never evaluated by the exchange.
	Test bool
}

// Bundle is a loaded policy: the Rego modules, the data, and its revision.
type Bundle struct {
	// Source is the directory the bundle was loaded from, or EmbeddedSource.
	Source      string
	Modules     []Module
	Datasets    []CatalogEntry
	Departments []Department
	Agreements  []Agreement
	// Issuers are the e-licence issuers and their public keys; Keyring holds the keys.
	Issuers []Issuer
	// Revision is the SHA-256 of the policy modules and data files (tests excluded, as
	// they decide nothing), in hex. Every decision and audit event carries it.
	Revision string

	dataJSON      []byte
	boundaries    map[string][]int64
	agreementByID map[string]*Agreement
	keyring       *license.Keyring
}

// Embedded returns the bundle built into the binary.
func Embedded() (*Bundle, error) {
	return LoadFS(embedded, ".", EmbeddedSource)
}

// Load loads the policy bundle in dir: every *.rego file, and every *.yaml, *.yml and
// *.json file as data. Subdirectories (such as testdata) are not read. A file that does
// not parse, or has an unknown key, is an error of type Problems naming file and line.
func Load(dir string) (*Bundle, error) {
	return LoadFS(os.DirFS(dir), ".", dir)
}

// LoadFS is Load over a file system; source names the bundle in messages.
func LoadFS(fsys fs.FS, dir, source string) (*Bundle, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read policy directory %s: %w", source, err)
	}
	b := &Bundle{Source: source}
	var probs Problems
	h := sha256.New()
	nRego := 0
	for _, e := range entries { // fs.ReadDir sorts by name, so the hash is stable
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		ext := path.Ext(name)
		isRego := ext == ".rego"
		isData := ext == ".yaml" || ext == ".yml" || ext == ".json"
		if !isRego && !isData {
			continue
		}
		raw, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		test := isRego && strings.HasSuffix(name, "_test.rego")
		if !test {
			fmt.Fprintf(h, "%s\x00%d\x00", name, len(raw))
			h.Write(raw)
		}
		if isRego {
			nRego++
			b.Modules = append(b.Modules, Module{File: name, Source: string(raw), Test: test})
			continue
		}
		probs = append(probs, b.parseData(name, raw)...)
	}
	if nRego == 0 {
		probs = append(probs, Problem{File: source, Message: "no .rego files: a policy directory holds the Rego modules and the data files"})
	}
	if len(probs) > 0 {
		return nil, probs
	}
	b.Revision = hex.EncodeToString(h.Sum(nil))
	if err := b.buildData(); err != nil {
		return nil, err
	}
	if err := b.buildKeyring(); err != nil {
		return nil, err
	}
	return b, nil
}

// PolicyModules returns the modules the exchange evaluates: every module but the tests.
func (b *Bundle) PolicyModules() []Module {
	var out []Module
	for _, m := range b.Modules {
		if !m.Test {
			out = append(out, m)
		}
	}
	return out
}

// Compile parses and compiles the bundle's modules in Rego v1 with the strict compiler
// (unused variables and imports, shadowed names and deprecated built-ins are errors).
// withTests adds the *_test.rego modules.
func (b *Bundle) Compile(withTests bool) (*ast.Compiler, map[string]*ast.Module, error) {
	mods := make(map[string]*ast.Module, len(b.Modules))
	var errs ast.Errors
	for _, m := range b.Modules {
		if m.Test && !withTests {
			continue
		}
		mod, err := ast.ParseModuleWithOpts(m.File, m.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			if ae, ok := err.(ast.Errors); ok {
				errs = append(errs, ae...)
				continue
			}
			return nil, nil, fmt.Errorf("%s: %w", m.File, err)
		}
		mods[m.File] = mod
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	c := ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1).WithCapabilities(capabilities())
	if c.Compile(mods); c.Failed() {
		return nil, nil, c.Errors
	}
	return c, mods, nil
}

// Data returns a fresh copy of the data document the Rego reads (data.catalog,
// data.departments, data.agreements_by_key), decoded from JSON so that numbers are
// json.Number as OPA's stores expect.
func (b *Bundle) Data() map[string]any {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b.dataJSON))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		// buildData encoded it a moment after loading; failing here is a bug.
		panic(fmt.Sprintf("policies: decode own data document: %v", err))
	}
	return m
}

// Agreement returns the agreement with the given id.
func (b *Bundle) Agreement(id string) (*Agreement, bool) {
	for i := range b.Agreements {
		if b.Agreements[i].ID == id {
			return &b.Agreements[i], true
		}
	}
	return nil, false
}

// Department returns the department with the given code.
func (b *Bundle) Department(code string) (*Department, bool) {
	for i := range b.Departments {
		if b.Departments[i].Code == code {
			return &b.Departments[i], true
		}
	}
	return nil, false
}

// Keyring returns the issuers' public keys, by issuer code, for verifying e-licence
// signatures (license.Keyring.Verify). Issuers are policy data, so the keys change with
// a reload like the rest of the bundle.
func (b *Bundle) Keyring() *license.Keyring { return b.keyring }

// Issuer returns the issuer with the given code.
func (b *Bundle) Issuer(code string) (*Issuer, bool) {
	for i := range b.Issuers {
		if b.Issuers[i].Code == code {
			return &b.Issuers[i], true
		}
	}
	return nil, false
}

// Boundaries returns, sorted, the instants (Unix nanoseconds) at which one of the
// department's agreements for the dataset starts or stops being valid. Between two
// consecutive boundaries the shipped policy decides a request the same way, which is
// what lets the exchange cache decisions exactly.
func (b *Bundle) Boundaries(department, dataset string) []int64 {
	return b.boundaries[department+"\x00"+dataset]
}

// buildData builds the data document and the validity boundaries.
func (b *Bundle) buildData() error {
	catalog := map[string]any{}
	for _, e := range b.Datasets {
		catalog[e.Dataset] = map[string]any{
			"share":          e.Share,
			"legal_basis":    e.LegalBasis,
			"region_column":  e.RegionColumn,
			"max_rows":       e.MaxRows,
			"min_group_size": e.minGroupSize(),
		}
	}
	depts := map[string]any{}
	for _, d := range b.Departments {
		depts[d.Code] = map[string]any{"name": d.Name, "region": d.Region, "level": d.Level}
	}
	sorted := make([]*Agreement, len(b.Agreements))
	for i := range b.Agreements {
		sorted[i] = &b.Agreements[i]
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	byKey := map[string]map[string][]any{}
	b.boundaries = map[string][]int64{}
	b.agreementByID = make(map[string]*Agreement, len(sorted))
	for _, a := range sorted {
		if _, dup := b.agreementByID[a.ID]; !dup { // Check reports duplicates; the first counts
			b.agreementByID[a.ID] = a
		}
		if byKey[a.Consumer] == nil {
			byKey[a.Consumer] = map[string][]any{}
		}
		masks := a.Masks
		if masks == nil {
			masks = map[string]string{}
		}
		byKey[a.Consumer][a.Dataset] = append(byKey[a.Consumer][a.Dataset], map[string]any{
			"id":             a.ID,
			"purpose_set":    set(a.Purposes),
			"action_set":     set(a.Actions),
			"column_set":     set(a.Columns),
			"unmasked_set":   set(a.Unmasked),
			"system":         a.System,
			"purposes":       nonNil(a.Purposes),
			"columns":        nonNil(a.Columns),
			"unmasked":       nonNil(a.Unmasked),
			"masks":          masks,
			"region":         a.Region,
			"max_rows":       a.MaxRows,
			"actions":        nonNil(a.Actions),
			"valid_from":     a.ValidFrom,
			"valid_until":    a.ValidUntil,
			"valid_from_ns":  a.From.UnixNano(),
			"valid_until_ns": a.Until.UnixNano(),
			"approval":       a.Approval,
			"aggregate":      aggregateData(a.Aggregate),
		})
		k := a.Consumer + "\x00" + a.Dataset
		b.boundaries[k] = append(b.boundaries[k], a.From.UnixNano(), a.Until.UnixNano())
	}
	for k, bs := range b.boundaries {
		sort.Slice(bs, func(i, j int) bool { return bs[i] < bs[j] })
		b.boundaries[k] = compact(bs)
	}
	raw, err := json.Marshal(map[string]any{
		"catalog":           catalog,
		"departments":       depts,
		"agreements_by_key": byKey,
	})
	if err != nil {
		return fmt.Errorf("encode policy data: %w", err)
	}
	b.dataJSON = raw
	return nil
}

// aggregateData is an agreement's aggregate terms as policy data; an agreement without
// them has an empty group_by, which grants no aggregate.
func aggregateData(t *AggregateTerms) map[string]any {
	if t == nil {
		t = &AggregateTerms{}
	}
	return map[string]any{"group_by": nonNil(t.GroupBy), "measures": nonNil(t.Measures), "min_group_size": t.MinGroupSize}
}

// minGroupSize is the catalog's smallest aggregate group for the dataset.
func (e *CatalogEntry) minGroupSize() int64 {
	if e.MinGroupSize > 0 {
		return e.MinGroupSize
	}
	return DefaultMinGroupSize
}

// buildKeyring builds the keyring from the issuers. An issuer listed twice is a load
// problem: which of two keys verifies a licence must never depend on file order.
func (b *Bundle) buildKeyring() error {
	keys := make(map[string]ed25519.PublicKey, len(b.Issuers))
	first := map[string]*Issuer{}
	var probs Problems
	for i := range b.Issuers {
		is := &b.Issuers[i]
		if prev, dup := first[is.Code]; dup {
			probs = append(probs, Problem{File: is.File, Line: is.Line, Entry: "issuer " + is.Code,
				Message: fmt.Sprintf("listed twice (first at %s:%d)", prev.File, prev.Line)})
			continue
		}
		first[is.Code] = is
		keys[is.Code] = is.Key
	}
	if len(probs) > 0 {
		return probs
	}
	k, err := license.NewKeyring(keys)
	if err != nil {
		return err
	}
	b.keyring = k
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// set returns s as a Rego-friendly set: an object mapping each member to true.
func set(s []string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}

func compact(s []int64) []int64 {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// parseValidity parses a valid_from or valid_until value: a date means the whole day in
// China Standard Time, so a valid_until date is exclusive from the next midnight.
func parseValidity(s string, until bool) (time.Time, error) {
	if t, err := time.ParseInLocation(time.DateOnly, s, schemas.ChinaTime); err == nil {
		if until {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a date (2026-12-31) nor an RFC 3339 time (2026-12-31T18:00:00+08:00)", s)
	}
	return t, nil
}

// forbidden are the builtins a sharing policy may not call: a decision must depend on
// the request, the time in the input and the policy data alone, so that it can be
// explained, tested and cached exactly — and the exchange must not reach the network
// from inside a decision.
var forbidden = map[string]bool{
	"http.send": true, "net.lookup_ip_addr": true, "opa.runtime": true,
	"rand.intn": true, "uuid.rfc4122": true, "time.now_ns": true,
}

// capabilities are OPA's builtins less the forbidden ones; a policy calling one fails
// to compile, naming it.
func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	kept := caps.Builtins[:0:0]
	for _, b := range caps.Builtins {
		if !forbidden[b.Name] {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	return caps
}
