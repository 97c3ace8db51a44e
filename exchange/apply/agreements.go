package apply

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing/fstest"

	"gopkg.in/yaml.v3"

	"govx/policies"
	"govx/schemas"
)

// AgreementsFile is the data file of the policy directory holding the agreements the
// exchange wrote for granted applications. It is regenerated whole from the database at
// every grant and at start, so it always lists exactly the granted applications; stewards
// keep their own agreements in other files.
const AgreementsFile = "agreements-applications.yaml"

// AgreementID is the id of the agreement an application's grant creates.
func AgreementID(applicationID string) string { return "AGR-" + applicationID }

// agreementOf turns a granted application into the agreement the policy reads.
func agreementOf(a *Application) policies.Agreement {
	c := a.Conditions
	var actions []string
	seen := map[string]bool{}
	for _, acc := range c.Access {
		for _, act := range accessActions[acc] {
			if !seen[act] {
				seen[act] = true
				actions = append(actions, act)
			}
		}
	}
	sort.Strings(actions)
	title := a.Scenario
	if title == "" {
		title = a.Purpose
	}
	return policies.Agreement{
		ID: AgreementID(a.ID), Title: title + "（" + a.ID + "）", Consumer: a.Applicant, System: a.System,
		Dataset: a.Dataset, Purposes: []string{a.Purpose}, Columns: c.Columns, Unmasked: c.Unmasked, Masks: c.Masks,
		Region: c.RowScope, MaxRows: c.MaxRows, Actions: actions, ValidFrom: c.ValidFrom, ValidUntil: c.ValidUntil,
		Approval: c.Approval, Application: a.ID,
	}
}

// agreementYAML is one agreement as written: the keys of docs/policies.md, empty ones left out.
type agreementYAML struct {
	ID          string            `yaml:"id"`
	Title       string            `yaml:"title"`
	Application string            `yaml:"application"`
	Consumer    string            `yaml:"consumer"`
	System      string            `yaml:"system,omitempty"`
	Dataset     string            `yaml:"dataset"`
	Purposes    []string          `yaml:"purposes,flow"`
	Columns     []string          `yaml:"columns,flow"`
	Unmasked    []string          `yaml:"unmasked,flow,omitempty"`
	Masks       map[string]string `yaml:"masks,flow,omitempty"`
	Region      string            `yaml:"region,omitempty"`
	MaxRows     int64             `yaml:"max_rows,omitempty"`
	Actions     []string          `yaml:"actions,flow"`
	ValidFrom   string            `yaml:"valid_from"`
	ValidUntil  string            `yaml:"valid_until"`
	Approval    string            `yaml:"approval"`
}

// renderAgreements is the content of AgreementsFile for the granted applications.
func renderAgreements(granted []*Application) ([]byte, error) {
	sort.Slice(granted, func(i, j int) bool { return granted[i].ID < granted[j].ID })
	doc := struct {
		Agreements []agreementYAML `yaml:"agreements"`
	}{Agreements: []agreementYAML{}}
	for _, a := range granted {
		g := agreementOf(a)
		doc.Agreements = append(doc.Agreements, agreementYAML{ID: g.ID, Title: g.Title, Application: g.Application,
			Consumer: g.Consumer, System: g.System, Dataset: g.Dataset, Purposes: g.Purposes, Columns: g.Columns,
			Unmasked: g.Unmasked, Masks: g.Masks, Region: g.Region, MaxRows: g.MaxRows, Actions: g.Actions,
			ValidFrom: g.ValidFrom, ValidUntil: g.ValidUntil, Approval: g.Approval})
	}
	var b bytes.Buffer
	b.WriteString("# Written by the exchange (exchange/apply): one agreement per granted sharing\n")
	b.WriteString("# application (govx applications show APP-…). Do not edit: the file is rewritten\n")
	b.WriteString("# whole from the applications database at every grant and at start.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	enc.Close()
	return b.Bytes(), nil
}

// checkWith loads the policy directory as it would be with content as AgreementsFile and
// checks it as the exchange's reload would: a grant whose agreement the reload would
// refuse is refused before anything changes.
func checkWith(dir string, content []byte, cat *schemas.Catalog) error {
	// An in-memory copy of the directory's top level (all the loader reads), with the new
	// file in place: fstest.MapFS is a plain map-backed fs.FS.
	over := fstest.MapFS{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		over[e.Name()] = &fstest.MapFile{Data: raw, Mode: 0o644}
	}
	over[AgreementsFile] = &fstest.MapFile{Data: content, Mode: 0o644}
	b, err := policies.LoadFS(fs.FS(over), ".", dir)
	if err != nil {
		return err
	}
	if probs := policies.Check(b, cat); len(probs) > 0 {
		return policies.Problems(probs)
	}
	return nil
}

// writeAtomic replaces dir/name with content so that a reader, or a restart after a
// crash at any instant, finds either the old file or the new one whole: the content goes
// to a temporary file (a dot-file, which the policy loader skips), is fsynced, renamed
// over the old name (atomic on POSIX file systems), and the directory is fsynced so the
// rename itself survives a power cut.
func writeAtomic(dir, name string, content []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if crashHook != nil {
		crashHook("before-rename")
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("sync policy directory: %w", err)
	}
	return nil
}

// crashHook, set only by tests, is called between the steps of a grant so a test can
// kill the process there.
var crashHook func(step string)

// removeStaleTemps removes temporary files a crash left behind: they never became the
// agreements file, and the next write starts afresh from the database.
func removeStaleTemps(dir string) {
	olds, _ := filepath.Glob(filepath.Join(dir, "."+AgreementsFile+".tmp-*"))
	for _, p := range olds {
		os.Remove(p)
	}
}
