package server

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange/apply"
	"govx/policies"
	"govx/schemas"
)

// ApplicationsFile is the SQLite database of the sharing process in the data directory,
// used unless applications.database names a PostgreSQL database.
const ApplicationsFile = "applications.db"

// startApplications opens the sharing process (exchange/apply) over the exchange's
// policy engine and audit spool: its database, its policy (the policy directory's
// calendar and applications subdirectories, or the shipped ones), and a loop closing
// the corrections whose value the store now serves.
func (x *Exchange) startApplications(ctx context.Context, cat *schemas.Catalog, reg *prometheus.Registry) error {
	dsn := x.cfg.Applications.Database
	if dsn == "" {
		dsn = filepath.Join(x.cfg.DataDir, ApplicationsFile)
	}
	st, err := apply.OpenStore(ctx, dsn)
	if err != nil {
		return err
	}
	x.applyStore = st
	var proc *policies.Process
	if x.cfg.PoliciesDir != "" {
		proc, err = policies.LoadProcess(x.cfg.PoliciesDir)
	} else {
		proc, err = policies.EmbeddedProcess()
	}
	if err != nil {
		return fmt.Errorf("sharing process policy: %w", err)
	}
	x.apply, err = apply.New(ctx, apply.Config{Store: st, Audit: x.spool, Policy: x.policy, Catalog: cat, Process: proc,
		PolicyDir: x.cfg.PoliciesDir, Values: x.servedValue, Log: x.log})
	if err != nil {
		return err
	}
	reg.MustRegister(x.apply.Collectors()...)
	return nil
}

// servedValue is the value the exchange serves for a record's column, as text.
func (x *Exchange) servedValue(dataset, key, column string) (string, bool) {
	t, ok := x.tables[dataset]
	if !ok {
		return "", false
	}
	snap := t.Snapshot()
	defer snap.Release()
	rec, ok := snap.Lookup(key)
	if !ok {
		return "", false
	}
	v, ok := rec[column]
	if !ok {
		return "", false
	}
	return strings.TrimSpace(fmt.Sprint(v)), true
}

// closeCorrections closes, every interval, the corrections whose corrected value is
// served: a source update reaches the store through its connector and Kafka like any
// other change, and the flag closes only when consumers can read it.
func (x *Exchange) closeCorrections(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := x.apply.CloseServed(ctx); err != nil && ctx.Err() == nil {
				x.log.Warn("closing served corrections failed; will retry", "err", err)
			}
		}
	}
}

// Applications returns the sharing process.
func (x *Exchange) Applications() *apply.Service { return x.apply }
