package synth_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"govx/connectors/synth"
	"govx/internal/testenv"
	"govx/schemas"
)

// integrationScale is what `govx gen --scale` the integration test loads into each
// database: 100,000 persons, 197,240 rows in all (55,000 of them licences).
const integrationScale = 100_000

// TestIntegrationGenTargets loads the same seed into SQLite, PostgreSQL and MariaDB
// through Open and Generate (what `govx gen` runs), reads every row back, and checks the
// three hold the same data as the generator (an order-independent digest and exact
// counts per table), that the rows failing their dataset's validation are exactly the
// planted ones, and that the licence table has its (gxsj, zzbh) index.
func TestIntegrationGenTargets(t *testing.T) {
	pgURL := testenv.Require(t, testenv.Postgres)
	myURL := testenv.Require(t, testenv.MySQL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g, err := synth.New(synth.DefaultOptions(integrationScale, 20240901))
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog(t)
	want := map[string]digest{}
	for _, dept := range g.Departments() {
		want[dept] = generatedDigest(g, dept)
	}

	// PostgreSQL: a database of our own, so other tests' department schemas stay apart.
	pgTarget := ownPostgresDB(t, ctx, pgURL, "govx_synth_test")
	// MariaDB: our own database prefix for the same reason.
	myTarget := myURL + "?prefix=govx_synthtest_"
	sqliteDir := t.TempDir()

	mysqlDB := func() *sql.DB {
		cfg, err := synth.MySQLConfig(myURL)
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(must(mysql.NewConnector(cfg)))
		t.Cleanup(func() { db.Close() })
		return db
	}
	// Each target's catalog query lists the columns of the licence table's indexes
	// other than the primary key, in index order, comma-separated.
	targets := []struct {
		name, target string
		read         func(dept string) readBack
		indexQuery   func() (*sql.DB, string)
	}{
		{"sqlite", "sqlite:" + sqliteDir, func(dept string) readBack {
			return readSQLite(t, filepath.Join(sqliteDir, dept+".db"), synth.TableOf(dept))
		}, func() (*sql.DB, string) {
			return openSQL(t, "sqlite", "file:"+synth.SQLitePath(sqliteDir, synth.DeptLicence)+"?mode=ro"),
				`SELECT group_concat(name, ',') FROM (SELECT ii.name FROM pragma_index_list('dzzz_zzxx') il, pragma_index_info(il.name) ii WHERE il.origin = 'c' ORDER BY il.name, ii.seqno)`
		}},
		{"postgres", pgTarget, func(dept string) readBack {
			db := openSQL(t, "pgx", pgTarget)
			tab := synth.TableOf(dept)
			return readTable(t, db, dept+"."+tab.Name, tab, true)
		}, func() (*sql.DB, string) {
			return openSQL(t, "pgx", pgTarget),
				`SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace s ON s.oid = c.relnamespace
				 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				 WHERE s.nspname = 'zwfw' AND c.relname = 'dzzz_zzxx' AND NOT i.indisprimary`
		}},
		{"mariadb", myTarget, func(dept string) readBack {
			tab := synth.TableOf(dept)
			return readTable(t, mysqlDB(), "govx_synthtest_"+dept+"."+tab.Name, tab, true)
		}, func() (*sql.DB, string) {
			return mysqlDB(), `SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index SEPARATOR ',') FROM information_schema.statistics
				 WHERE table_schema = 'govx_synthtest_zwfw' AND table_name = 'dzzz_zzxx' AND index_name <> 'PRIMARY'`
		}},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			start := time.Now()
			w, err := synth.Open(ctx, tg.target)
			if err != nil {
				t.Fatal(err)
			}
			sums, err := synth.Generate(ctx, g, w, nil)
			w.Close()
			if err != nil {
				t.Fatal(err)
			}
			loaded := time.Since(start)
			for _, s := range sums {
				t.Logf("%s %s: %d rows, %.0f rows/s", s.Dept, s.Table, s.Rows, s.RowsPerSecond())
			}
			for _, dept := range g.Departments() {
				got := tg.read(dept)
				if got.digest != want[dept] {
					t.Errorf("%s: read back %v, generated %v", dept, got.digest, want[dept])
				}
				checkPlanted(t, cat, g, dept, got.rows)
			}
			db, q := tg.indexQuery()
			var cols sql.NullString
			if err := db.QueryRowContext(ctx, q).Scan(&cols); err != nil {
				t.Fatalf("list the licence table's indexes: %v", err)
			}
			if cols.String != "gxsj,zzbh" {
				t.Errorf("licence table's secondary index columns %q, want gxsj,zzbh", cols.String)
			}
			t.Logf("loaded in %v, read back and checked in %v", loaded.Round(time.Millisecond), (time.Since(start) - loaded).Round(time.Millisecond))
		})
	}
}

// checkPlanted validates every read-back row in dataset form and compares the failing
// keys with the planted rows' keys.
func checkPlanted(t *testing.T, cat *schemas.Catalog, g *synth.Generator, dept string, rows [][]any) {
	t.Helper()
	ds, _ := cat.Dataset(synth.DatasetOf(dept))
	var failing []string
	for _, row := range rows {
		rec, err := synth.ToDataset(dept, row)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds.Validate(rec)) > 0 {
			failing = append(failing, keyOf(dept, row))
		}
	}
	var planted []string
	for _, i := range g.PlantedInvalid(dept) {
		planted = append(planted, keyOf(dept, g.Row(dept, i)))
	}
	slices.Sort(failing)
	slices.Sort(planted)
	if !slices.Equal(failing, planted) {
		t.Errorf("%s: %d rows fail validation, %d were planted; they differ", dept, len(failing), len(planted))
	}
	if len(planted) == 0 {
		t.Errorf("%s: nothing planted", dept)
	}
}

func keyOf(dept string, row []any) string {
	if dept == synth.DeptStatistics {
		return fmt.Sprint(row[0], "|", row[1], "|", row[2])
	}
	return row[0].(string)
}

func openSQL(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// ownPostgresDB creates (or recreates) database name on the server of superURL and
// returns a URL for it.
func ownPostgresDB(t *testing.T, ctx context.Context, superURL, name string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, superURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", synth.Redact(superURL), err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident+" ENCODING 'UTF8' TEMPLATE template0"); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(superURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
