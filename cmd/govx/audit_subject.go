package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"govx/exchange/audit"
	"govx/exchange/audit/review"
	"govx/exchange/store"
	"govx/schemas"
)

func auditSubjectCmd(a *auditFlags) *cobra.Command {
	var format, record string
	cmd := &cobra.Command{
		Use:   "subject --key ID [--dataset D --record FILE]",
		Short: "Every access that touched one record: lookups, verifies and the bulk pulls whose scope included it",
		Long: `List every access to one record: the lookups and verifies that named its key (allowed
or not), and — given the record's values with --record and its dataset with --dataset —
every allowed bulk pull (read or changes) whose recorded scope included the record:
"bulk pull whose scope included this record". Each line says whether the access
returned the record's values (READ yes: a lookup that sent it, a pull that returned rows
and could have returned it, or an allowed request with no complete event, which may have
been cut short after sending), or nothing (denied, not found, failed, no rows); verifies
check claims and return no values.

A pull is matched by the scope its decision event recorded — the decision's row filter
and the caller's filter, as they were when it was decided, whatever the policy is now —
evaluated by the exchange's own filter code against the values in FILE: a JSON object of
the record's fields (as the register holds them, e.g. exported by its steward), or a
JSON array of objects for each version of the record over the period (a person who moved
was in another region's scope before). A pull's limit and a changes pull's cursor are
not recorded, so a listed pull could have returned the record; one not listed could
not have, for the values given. A scope that was cut when recorded (over 8 KiB) cannot
be evaluated and is listed as could-have-included, saying so. Without --record only
lookups and verifies are listed, and the report says so.`,
		Example: `  govx audit subject --key 330106199001011234
  govx audit subject --key 330106199001011234 --dataset population.person --record person.json
  govx audit subject --clickhouse 127.0.0.1:9000 --key 91330106MA2B3C4D5E --since 2026-01-01 --format jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.filter.Key == "" {
				return errors.New("give the record's key with --key")
			}
			loc, err := a.resolve()
			if err != nil {
				return err
			}
			opt := review.SubjectOptions{Key: a.filter.Key, Dataset: a.filter.Dataset}
			f := a.filter
			if record != "" {
				if f.Dataset == "" {
					return errors.New("--record needs --dataset: the dataset the record belongs to")
				}
				sc, err := loadRecordScope(record, f.Dataset, f.Key)
				if err != nil {
					return err
				}
				defer sc.close()
				opt.InScope = sc.inScope
				// Pulls name no key: read the dataset's events, and pick the key's here.
				f.Key = ""
			}
			st, _, err := a.open()
			if err != nil {
				return err
			}
			defer st.Close()
			it, err := st.Events(cmd.Context(), f)
			if err != nil {
				return err
			}
			rep, err := review.BuildSubject(cmd.Context(), it, opt)
			warnDamage(cmd, it)
			if err != nil {
				return err
			}
			return review.WriteSubject(cmd.OutOrStdout(), rep, format, loc)
		},
	}
	a.registerFilters(cmd, true)
	cmd.Flags().StringVar(&format, "format", "table", "table | csv | jsonl")
	cmd.Flags().StringVar(&record, "record", "", "JSON file of the record's values (an object, or an array of its versions): also list the bulk pulls whose scope included it")
	return cmd
}

// recordScope holds the versions of one record, each in a one-row table of the
// exchange's store, so that a pull's recorded scope is evaluated by the very code that
// applied it.
type recordScope struct {
	key    string
	tables []*store.Table
}

// loadRecordScope reads the record file of dataset id: an object or an array of
// objects, each a valid record of the dataset whose key is key.
func loadRecordScope(path, id, key string) (*recordScope, error) {
	cat, err := schemas.Load()
	if err != nil {
		return nil, err
	}
	d, ok := cat.Dataset(id)
	if !ok {
		return nil, fmt.Errorf("--dataset %q: no such dataset", id)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--record: %w", err)
	}
	var versions []map[string]any
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '[' {
		err = json.Unmarshal(raw, &versions)
	} else {
		var one map[string]any
		err = json.Unmarshal(raw, &one)
		versions = []map[string]any{one}
	}
	if err != nil || len(versions) == 0 || versions[0] == nil {
		return nil, fmt.Errorf("--record %s: want a JSON object of the record's fields, or an array of them", path)
	}
	sc := &recordScope{}
	for i, rec := range versions {
		if errs := d.Validate(rec); len(errs) > 0 {
			sc.close()
			var b strings.Builder
			for _, e := range errs {
				fmt.Fprintf(&b, "; %s: %s", e.Field, e.Code)
			}
			return nil, fmt.Errorf("--record %s: version %d is not a valid %s record%s", path, i+1, id, b.String())
		}
		k, err := d.RecordKey(rec)
		if err != nil || k != key {
			sc.close()
			return nil, fmt.Errorf("--record %s: version %d has key %q, not the --key %q", path, i+1, k, key)
		}
		t := store.New(d)
		sc.tables = append(sc.tables, t)
		if err := t.Apply([]store.Change{{Key: k, Record: rec}}); err != nil {
			sc.close()
			return nil, fmt.Errorf("--record %s: version %d: %w", path, i+1, err)
		}
	}
	sc.key = key
	return sc, nil
}

// inScope reports whether some version of the record passes the scope the pull's
// decision event recorded in its filter field (the decision's row filter, marked "by":
// "policy", and the caller's filter; the same JSON, as numbers keep their digits).
func (sc *recordScope) inScope(ev *audit.Event) (bool, error) {
	filters, err := review.RecordedScope(ev)
	if err != nil {
		return false, err
	}
	for _, t := range sc.tables {
		snap := t.Snapshot()
		_, found, err := snap.LookupScoped(sc.key, filters)
		snap.Release()
		if err != nil {
			return false, fmt.Errorf("the recorded scope does not apply to the record: %v", err)
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

func (sc *recordScope) close() {
	for _, t := range sc.tables {
		t.Close()
	}
}
