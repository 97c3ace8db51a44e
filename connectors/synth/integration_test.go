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
// database: 100,000 persons, 142,240 rows in all.
const integrationScale = 100_000

// TestIntegrationGenTargets loads the same seed into SQLite, PostgreSQL and MariaDB
// through Open and Generate (what `govx gen` runs), reads every row back, and checks the
// three hold the same data as the generator (an order-independent digest and exact
// counts per table) and that the rows failing their dataset's validation are exactly
// the planted ones.
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

	targets := []struct {
		name, target string
		read         func(dept string) readBack
	}{
		{"sqlite", "sqlite:" + sqliteDir, func(dept string) readBack {
			return readSQLite(t, filepath.Join(sqliteDir, dept+".db"), synth.TableOf(dept))
		}},
		{"postgres", pgTarget, func(dept string) readBack {
			db := openSQL(t, "pgx", pgTarget)
			tab := synth.TableOf(dept)
			return readTable(t, db, dept+"."+tab.Name, tab, true)
		}},
		{"mariadb", myTarget, func(dept string) readBack {
			cfg, err := synth.MySQLConfig(myURL)
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(must(mysql.NewConnector(cfg)))
			t.Cleanup(func() { db.Close() })
			tab := synth.TableOf(dept)
			return readTable(t, db, "govx_synthtest_"+dept+"."+tab.Name, tab, true)
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
