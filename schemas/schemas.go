// Package schemas holds the shared dataset definitions of govx (schemas/*.yaml, embedded)
// and everything that depends only on them: strict loading, record validation, the one
// value normalizer that connectors and the exchange's verify share, record keys, and each
// dataset's Arrow schema.
//
// It imports nothing of govx but schemas/ident, so every other part may import it.
package schemas

import (
	"embed"
	"errors"
	"fmt"
	"govx/internal/strictyaml"
	"io/fs"
	"path"
	"sort"
	"strings"
)

//go:embed *.yaml
var embedded embed.FS

// Sensitivity classifies a field for the sharing policy.
type Sensitivity string

// The sensitivities, from least to most protected.
const (
	Public            Sensitivity = "public"
	Internal          Sensitivity = "internal"
	Personal          Sensitivity = "personal"
	SensitivePersonal Sensitivity = "sensitive_personal"
)

// Masks a field may name as its default.
var masks = map[string]bool{
	"id_card": true, "name": true, "phone": true, "address": true,
	"year": true, "hash": true, "null": true,
}

// Title is a bilingual display name.
type Title struct {
	Zh string `yaml:"zh"`
	En string `yaml:"en"`
}

// Provider is the department that owns a dataset.
type Provider struct {
	Code string `yaml:"code"`
	Zh   string `yaml:"zh"`
	En   string `yaml:"en"`
}

// Dataset is one shared dataset definition.
type Dataset struct {
	ID           string   `yaml:"dataset"`
	Version      int      `yaml:"version"`
	Register     string   `yaml:"register"`
	Title        Title    `yaml:"title"`
	Provider     Provider `yaml:"provider"`
	Key          []string `yaml:"key"`
	ExactlyOneOf []string `yaml:"exactly_one_of"`
	Fields       []Field  `yaml:"fields"`

	index map[string]int
}

// Catalog is the set of loaded datasets.
type Catalog struct {
	byID map[string]*Dataset
	ids  []string
}

// Load loads the dataset definitions embedded in the binary.
func Load() (*Catalog, error) {
	return LoadFS(embedded, ".")
}

// MustLoad is Load for definitions that ship with the binary and are checked by tests.
func MustLoad() *Catalog {
	c, err := Load()
	if err != nil {
		panic(err)
	}
	return c
}

// LoadFS loads every *.yaml file in dir of fsys, strictly: unknown keys, bad types and
// inconsistent definitions are errors naming the file (and line where YAML knows it).
func LoadFS(fsys fs.FS, dir string) (*Catalog, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no dataset definitions (*.yaml) in %s", dir)
	}
	c := &Catalog{byID: map[string]*Dataset{}}
	var errs []error
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		d, err := Parse(name, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := c.byID[d.ID]; dup {
			errs = append(errs, fmt.Errorf("%s: dataset %q is defined twice", name, d.ID))
			continue
		}
		c.byID[d.ID] = d
		c.ids = append(c.ids, d.ID)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Strings(c.ids)
	return c, nil
}

// Parse decodes and checks one dataset definition; file names it in errors.
func Parse(file string, data []byte) (*Dataset, error) {
	var d Dataset
	if err := strictyaml.Decode(file, data, &d); err != nil {
		return nil, err
	}
	if err := d.init(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &d, nil
}

func (d *Dataset) init() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if d.ID == "" || strings.Count(d.ID, ".") != 1 {
		bad("dataset id %q must be <register>.<entity>", d.ID)
	} else if d.Register != "" && !strings.HasPrefix(d.ID, d.Register+".") {
		bad("dataset id %q does not start with its register %q", d.ID, d.Register)
	}
	if d.Version < 1 {
		bad("version must be a positive integer")
	}
	if d.Title.Zh == "" || d.Title.En == "" {
		bad("title needs both zh and en")
	}
	if d.Provider.Code == "" {
		bad("provider.code is required")
	}
	if len(d.Fields) == 0 {
		bad("no fields")
	}
	d.index = make(map[string]int, len(d.Fields))
	for i := range d.Fields {
		f := &d.Fields[i]
		if _, dup := d.index[f.Name]; dup {
			bad("field %q is defined twice", f.Name)
		}
		d.index[f.Name] = i
		if err := f.init(); err != nil {
			bad("field %q: %v", f.Name, err)
		}
	}
	if len(d.Key) == 0 {
		bad("key is required")
	}
	for _, k := range d.Key {
		f, ok := d.Field(k)
		switch {
		case !ok:
			bad("key names unknown field %q", k)
		case f.Nullable:
			bad("key field %q must not be nullable", k)
		}
	}
	for _, name := range d.ExactlyOneOf {
		if f, ok := d.Field(name); !ok {
			bad("exactly_one_of names unknown field %q", name)
		} else if !f.Nullable {
			bad("exactly_one_of field %q must be nullable", name)
		}
	}
	return errors.Join(errs...)
}

// Dataset returns the dataset with the given id.
func (c *Catalog) Dataset(id string) (*Dataset, bool) {
	d, ok := c.byID[id]
	return d, ok
}

// Datasets returns every dataset, sorted by id.
func (c *Catalog) Datasets() []*Dataset {
	out := make([]*Dataset, len(c.ids))
	for i, id := range c.ids {
		out[i] = c.byID[id]
	}
	return out
}

// Field returns the named field.
func (d *Dataset) Field(name string) (*Field, bool) {
	i, ok := d.index[name]
	if !ok {
		return nil, false
	}
	return &d.Fields[i], true
}

// FieldNames returns the field names in definition order.
func (d *Dataset) FieldNames() []string {
	out := make([]string, len(d.Fields))
	for i, f := range d.Fields {
		out[i] = f.Name
	}
	return out
}

// IsKey reports whether name is part of the dataset's primary key.
func (d *Dataset) IsKey(name string) bool {
	for _, k := range d.Key {
		if k == name {
			return true
		}
	}
	return false
}
