package sqlsrc

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"

	_ "modernc.org/sqlite" // registers database/sql driver "sqlite"

	"govx/connectors"
)

var sqliteDialect = &dialect{name: "sqlite", driver: "sqlite", quoteChar: '"', rowCompare: true, rawCursor: true,
	indexes: sqliteIndexes}

func init() {
	connectors.Register("sqlite", func(ctx context.Context, spec connectors.Spec) (connectors.Source, error) {
		path := spec.DSN
		if path == "" {
			return nil, errNoDSN
		}
		if strings.HasPrefix(path, "file:") {
			return open(ctx, sqliteDialect, path, spec)
		}
		// Opening a missing file would create an empty database and then report a
		// missing table; say what is wrong instead.
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("database file: %w", err)
		}
		// Read-only: a connector never writes the department's database; busy_timeout
		// waits out the department application's write locks.
		dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro&_pragma=busy_timeout(5000)"
		return open(ctx, sqliteDialect, dsn, spec)
	})
}
