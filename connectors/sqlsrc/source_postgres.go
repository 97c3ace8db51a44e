package sqlsrc

import (
	"context"

	_ "github.com/jackc/pgx/v5/stdlib" // registers database/sql driver "pgx"

	"govx/connectors"
)

var postgres = &dialect{name: "postgres", driver: "pgx", quoteChar: '"', dollar: true, rowCompare: true,
	caseSensitive: true, indexes: postgresIndexes}

func init() {
	connectors.Register("postgres", func(ctx context.Context, spec connectors.Spec) (connectors.Source, error) {
		if spec.DSN == "" {
			return nil, errNoDSN
		}
		// A postgres:// URL or key=value DSN, as libpq and pgx take it.
		return open(ctx, postgres, spec.DSN, spec)
	})
}
