package server

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"govx/exchange"
	"govx/exchange/console"
	"govx/schemas"
)

// startConsole serves the web console on console.listen, apart from the API: its own
// server and handlers, nothing on the request path. It reads the audit log as the
// auditor's tools do (ClickHouse when configured, else the spool) and writes its events
// through the service, like every edge.
func (x *Exchange) startConsole(cat *schemas.Catalog, tlsConfig *tls.Config, secret []byte, o options) error {
	a := console.AuditLog{SpoolDir: x.cfg.Audit.SpoolDir, Checkpoints: x.cfg.Audit.Checkpoint, PublicKey: x.cfg.Audit.SigningKey + ".pub"}
	st, err := clickHouseOf(x.cfg)
	if err != nil {
		return err
	}
	if st != nil {
		a.ClickHouse = st
	}
	h, err := console.New(console.Config{Service: x.svc, Tokens: x.tokens, Apply: x.apply, Policy: x.policy, Catalog: cat,
		Audit: a, Scope: x.servedInScope, Secret: secret, TLS: tlsConfig != nil, IdleTimeout: x.cfg.Console.IdleTimeout, Now: o.clock, Log: o.log})
	if err != nil {
		return err
	}
	x.console = &http.Server{Handler: h, TLSConfig: tlsConfig,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}
	x.goRun("console", func() error {
		if a.ClickHouse != nil {
			defer a.ClickHouse.Close()
		}
		var err error
		if tlsConfig != nil {
			err = x.console.ServeTLS(x.conLn, "", "")
		} else {
			err = x.console.Serve(x.conLn)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	return nil
}

// servedInScope reports whether the record the exchange now serves for key passes
// filters: the store's own scoped lookup, the code that applied the pull's scope.
func (x *Exchange) servedInScope(dataset, key string, filters []exchange.Filter) (bool, error) {
	t, ok := x.tables[dataset]
	if !ok {
		return false, errors.New("the exchange does not serve " + dataset)
	}
	snap := t.Snapshot()
	defer snap.Release()
	_, found, err := snap.LookupScoped(key, filters)
	return found, err
}
