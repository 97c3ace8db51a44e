package sqlsrc

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"govx/connectors"
)

// MariaDB's optimizer does not turn row-value comparisons into index ranges, so keyset
// conditions are written out as ORs.
var mysqlDialect = &dialect{name: "mysql", driver: "mysql", quoteChar: '`', indexes: mysqlIndexes}

func init() {
	connectors.Register("mysql", func(ctx context.Context, spec connectors.Spec) (connectors.Source, error) {
		dsn, err := mysqlDSN(spec.DSN)
		if err != nil {
			return nil, err
		}
		return open(ctx, mysqlDialect, dsn, spec)
	})
}

// mysqlDSN accepts the driver's own DSN (user:pass@tcp(host:port)/db) or a URL
// (mysql://user:pass@host:port/db) and makes DATETIME columns come back as time.Time in
// UTC, so cursor values bind back exactly as they were read.
func mysqlDSN(dsn string) (string, error) {
	if dsn == "" {
		return "", errNoDSN
	}
	var cfg *mysql.Config
	if strings.HasPrefix(dsn, "mysql://") || strings.HasPrefix(dsn, "mariadb://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("the DSN is not a valid mysql:// URL")
		}
		cfg = mysql.NewConfig()
		cfg.Net, cfg.Addr = "tcp", u.Host
		if u.User != nil {
			cfg.User = u.User.Username()
			cfg.Passwd, _ = u.User.Password()
		}
		cfg.DBName = strings.TrimPrefix(u.Path, "/")
		for k, v := range u.Query() {
			if cfg.Params == nil {
				cfg.Params = map[string]string{}
			}
			cfg.Params[k] = v[0]
		}
	} else {
		var err error
		if cfg, err = mysql.ParseDSN(dsn); err != nil {
			return "", fmt.Errorf("the DSN is not a valid MySQL DSN (user:pass@tcp(host:port)/db or mysql://user:pass@host:port/db)")
		}
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["charset"]; !ok {
		cfg.Params["charset"] = "utf8mb4"
	}
	return cfg.FormatDSN(), nil
}
