package policies

import (
	"crypto/ed25519"
	"errors"
	"time"

	"gopkg.in/yaml.v3"

	"govx/internal/strictyaml"
	"govx/schemas/license"
)

// CatalogEntry is one dataset of the sharing catalog (共享目录).
type CatalogEntry struct {
	Dataset string `yaml:"dataset"`
	// Share is "unconditional" (无条件共享), "conditional" (有条件共享) or "none"
	// (不予共享).
	Share string `yaml:"share"`
	// LegalBasis cites the law or measure the share type rests on; required for none,
	// and quoted in every denial of a none dataset.
	LegalBasis string `yaml:"legal_basis"`
	// RegionColumn is the GB/T 2260 column a department's region scope filters on.
	RegionColumn string `yaml:"region_column"`
	// MaxRows is the default cap on one result; 0 means none.
	MaxRows int64 `yaml:"max_rows"`
	// KeyBudget is the dataset's default budget of keys checked by lookup and verify.
	KeyBudget *KeyBudget `yaml:"key_budget"`
	// MinGroupSize is the smallest group an aggregate answer shows (0: the built-in
	// DefaultMinGroupSize); an aggregate agreement may raise it, never lower it.
	MinGroupSize int64 `yaml:"min_group_size"`

	File string `yaml:"-"`
	Line int    `yaml:"-"`
}

// Department is a department known to the exchange.
type Department struct {
	Code string `yaml:"code"`
	Name string `yaml:"name"`
	// Region is the department's GB/T 2260 code; empty for national departments.
	Region string `yaml:"region"`
	// Level is national, province, city or county.
	Level string `yaml:"level"`

	File string `yaml:"-"`
	Line int    `yaml:"-"`
}

// Agreement is a sharing agreement (共享协议).
type Agreement struct {
	ID       string `yaml:"id"`
	Title    string `yaml:"title"`
	Consumer string `yaml:"consumer"`
	// System, when set, limits the agreement to one of the consumer's systems.
	System   string   `yaml:"system"`
	Dataset  string   `yaml:"dataset"`
	Purposes []string `yaml:"purposes"`
	Columns  []string `yaml:"columns"`
	// Unmasked lists the columns granted without their mask.
	Unmasked []string `yaml:"unmasked"`
	// Masks overrides the schema's default mask per column.
	Masks map[string]string `yaml:"masks"`
	// Region is the row scope as a GB/T 2260 code; empty means the department's own
	// region, "000000" nationwide.
	Region     string   `yaml:"region"`
	MaxRows    int64    `yaml:"max_rows"`
	Actions    []string `yaml:"actions"`
	ValidFrom  string   `yaml:"valid_from"`
	ValidUntil string   `yaml:"valid_until"`
	Approval   string   `yaml:"approval"`
	// Application is the sharing application (共享申请) whose approval made the
	// agreement, for agreements the exchange writes itself (exchange/apply).
	Application string `yaml:"application"`
	// KeyBudget, when set, is the consumer's budget of keys checked by lookup and verify
	// under this agreement, over the catalog's.
	KeyBudget *KeyBudget `yaml:"key_budget"`
	// Aggregate is the terms of the action aggregate: which columns the consumer may
	// group by, which measures it may compute, and the smallest group it may see.
	Aggregate *AggregateTerms `yaml:"aggregate"`

	// From and Until are the validity as instants: valid at t when From <= t < Until.
	From  time.Time `yaml:"-"`
	Until time.Time `yaml:"-"`
	File  string    `yaml:"-"`
	Line  int       `yaml:"-"`
}

// DefaultMinGroupSize is the smallest group an aggregate answer shows when neither the
// catalog nor the agreement says.
const DefaultMinGroupSize = 10

// AggregateTerms are an agreement's terms for aggregate-only access (action aggregate):
// answers are counts and sums over groups, never rows. The group_by columns define a
// fixed partition of the rows in scope; a cell of it with fewer than MinGroupSize rows
// is suppressed, and its rows count in no answer (docs/aggregate.md).
type AggregateTerms struct {
	// GroupBy lists the columns answers may group by and filter on.
	GroupBy []string `yaml:"group_by"`
	// Measures lists the measures allowed: count, or sum:COL, avg:COL, min:COL, max:COL
	// of a numeric column.
	Measures []string `yaml:"measures"`
	// MinGroupSize is the smallest group shown; 0: the catalog's.
	MinGroupSize int64 `yaml:"min_group_size"`
}

// Issuer is a department that issues e-licences (发证机关), with the Ed25519 public key
// the exchange verifies its licences' signatures with.
type Issuer struct {
	Code string `yaml:"code"`
	Name string `yaml:"name"`
	// Region is the GB/T 2260 code of the issuer's area; empty for a national issuer.
	Region string `yaml:"region"`
	// PublicKey is "ed25519:" and the 32-byte key in standard base64
	// (license.FormatPublicKey).
	PublicKey string `yaml:"public_key"`

	// Key is PublicKey parsed; nil when it does not parse (a load problem).
	Key  ed25519.PublicKey `yaml:"-"`
	File string            `yaml:"-"`
	Line int               `yaml:"-"`
}

// dataFile is the shape of every data file; a file may hold any of the lists, so a
// steward can split agreements across files.
type dataFile struct {
	Datasets    []CatalogEntry `yaml:"datasets"`
	Departments []Department   `yaml:"departments"`
	Agreements  []Agreement    `yaml:"agreements"`
	Issuers     []Issuer       `yaml:"issuers"`
}

// parseData decodes one data file strictly and appends its entries to b.
func (b *Bundle) parseData(file string, raw []byte) []Problem {
	var doc dataFile
	if probs := decodeYAML(file, raw, &doc); probs != nil {
		return probs
	}
	// yaml.v3 decodes into structs without positions; a second pass over the node tree
	// finds the line of each list entry for messages.
	var root yaml.Node
	_ = yaml.Unmarshal(raw, &root)
	lines := entryLines(&root)
	var probs []Problem
	for i := range doc.Datasets {
		e := &doc.Datasets[i]
		e.File, e.Line = file, lineAt(lines["datasets"], i)
		if e.KeyBudget != nil {
			for _, m := range e.KeyBudget.parse() {
				probs = append(probs, Problem{File: file, Line: e.Line, Entry: "dataset " + e.Dataset, Message: m})
			}
		}
		b.Datasets = append(b.Datasets, *e)
	}
	for i := range doc.Departments {
		d := &doc.Departments[i]
		d.File, d.Line = file, lineAt(lines["departments"], i)
		b.Departments = append(b.Departments, *d)
	}
	for i := range doc.Issuers {
		is := &doc.Issuers[i]
		is.File, is.Line = file, lineAt(lines["issuers"], i)
		key, err := license.ParsePublicKey(is.PublicKey)
		if err != nil {
			probs = append(probs, Problem{File: file, Line: is.Line, Entry: "issuer " + is.Code, Message: "public_key: " + err.Error()})
		}
		is.Key = key
		b.Issuers = append(b.Issuers, *is)
	}
	for i := range doc.Agreements {
		a := &doc.Agreements[i]
		a.File, a.Line = file, lineAt(lines["agreements"], i)
		entry := "agreement " + a.ID
		var err error
		if a.From, err = parseValidity(a.ValidFrom, false); err != nil {
			probs = append(probs, Problem{File: file, Line: a.Line, Entry: entry, Message: "valid_from: " + err.Error()})
		}
		if a.Until, err = parseValidity(a.ValidUntil, true); err != nil {
			probs = append(probs, Problem{File: file, Line: a.Line, Entry: entry, Message: "valid_until: " + err.Error()})
		}
		if a.KeyBudget != nil {
			for _, m := range a.KeyBudget.parse() {
				probs = append(probs, Problem{File: file, Line: a.Line, Entry: entry, Message: m})
			}
		}
		b.Agreements = append(b.Agreements, *a)
	}
	return probs
}

// decodeYAML decodes one policy YAML file strictly (one document, no unknown key; see
// strictyaml) and returns its problems with file and line. An empty file holds nothing
// and is no problem. An unknown key's problem says where the keys are listed.
func decodeYAML(file string, raw []byte, v any) []Problem {
	err := strictyaml.Decode(file, raw, v)
	if err == nil || errors.Is(err, strictyaml.ErrEmpty) {
		return nil
	}
	var probs []Problem
	for _, e := range strictyaml.Problems(err) {
		p := Problem{File: file, Line: e.Line, Message: e.Msg}
		if e.Key != "" {
			p.Message += " (see the comment at the top of the shipped file for the keys)"
		}
		probs = append(probs, p)
	}
	return probs
}

// entryLines maps each top-level list key to the lines of its entries.
func entryLines(root *yaml.Node) map[string][]int {
	out := map[string][]int{}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return out
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return out
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, val := m.Content[i], m.Content[i+1]
		if val.Kind != yaml.SequenceNode {
			continue
		}
		for _, item := range val.Content {
			out[key.Value] = append(out[key.Value], item.Line)
		}
	}
	return out
}

func lineAt(lines []int, i int) int {
	if i < len(lines) {
		return lines[i]
	}
	return 0
}
