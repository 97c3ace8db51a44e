package connectors_test

import (
	"context"
	"database/sql"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"govx/connectors"
	"govx/connectors/synth"
	"govx/internal/testenv"
)

// TestIntegrationCheckCursorIndex: on PostgreSQL, MariaDB and SQLite, connector check
// names the (cursor, key) index `govx gen` creates; with it dropped, check says it is
// missing and gives the exact CREATE INDEX statement, which run in the database
// restores what check and the connector's polls look for.
func TestIntegrationCheckCursorIndex(t *testing.T) {
	pg := newPostgresDB(t)
	my := testenv.Require(t, testenv.MySQL)
	myPrefix := "t" + randID() + "_"
	t.Cleanup(func() { dropMySQL(t, my, myPrefix+"scjgj") })
	sqliteDir := t.TempDir()
	generate(t, pg, 200, synth.DeptPopulation)
	generate(t, strings.TrimSuffix(my, "/")+"/?prefix="+myPrefix, 200, synth.DeptMarket)
	generate(t, "sqlite:"+sqliteDir, 200, synth.DeptPopulation)
	t.Setenv("GOVX_DATA_DIR", sqliteDir)

	u, _ := url.Parse(my)
	pw, _ := u.User.Password()
	myAdmin, err := sqlOpenMySQL(u.User.Username(), pw, u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer myAdmin.Close()
	pgAdmin, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer pgAdmin.Close()
	sqliteAdmin, err := sql.Open("sqlite", "file:"+filepath.Join(sqliteDir, "gab.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sqliteAdmin.Close()

	for _, tc := range []struct {
		name, example, dsn, table string
		admin                     *sql.DB
		index, drop, create       string
	}{
		{"postgres", "gab.postgres.yaml", pg, "", pgAdmin, "rk_jbxx_gxsj_sfzh", "DROP INDEX gab.rk_jbxx_gxsj_sfzh",
			`CREATE INDEX CONCURRENTLY "rk_jbxx_gxsj_sfzh" ON "gab"."rk_jbxx" ("gxsj", "sfzh");`},
		{"mariadb", "scjgj.mysql.yaml", my, myPrefix + "scjgj.scztdj", myAdmin, "scztdj_gxsj_tyshxydm",
			"DROP INDEX scztdj_gxsj_tyshxydm ON " + myPrefix + "scjgj.scztdj",
			"CREATE INDEX `scztdj_gxsj_tyshxydm` ON `" + myPrefix + "scjgj`.`scztdj` (`gxsj`, `tyshxydm`);"},
		{"sqlite", "gab.sqlite.yaml", "", "", sqliteAdmin, "rk_jbxx_gxsj_sfzh", "DROP INDEX rk_jbxx_gxsj_sfzh",
			`CREATE INDEX "rk_jbxx_gxsj_sfzh" ON "rk_jbxx" ("gxsj", "sfzh");`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := exampleConfig(t, tc.example, tc.dsn)
			if tc.table != "" {
				cfg.Source.Table = tc.table
			}
			check := func() *connectors.IndexAdvice {
				t.Helper()
				c, err := connectors.New(cfg, connectors.WithLogger(quietLogger(t)))
				if err != nil {
					t.Fatal(err)
				}
				rep, err := c.Check(context.Background(), 1)
				if err != nil {
					t.Fatal(err)
				}
				if rep.CursorIndex == nil {
					t.Fatal("check said nothing of the (cursor, key) index of a database table")
				}
				return rep.CursorIndex
			}
			if adv := check(); adv.Missing() || adv.Index != tc.index {
				t.Fatalf("as generated: index %q, want %q (the one govx gen creates)", adv.Index, tc.index)
			}
			if _, err := tc.admin.Exec(tc.drop); err != nil {
				t.Fatal(err)
			}
			adv := check()
			if !adv.Missing() || adv.Create != tc.create {
				t.Fatalf("index dropped: missing=%v, statement %q, want %q", adv.Missing(), adv.Create, tc.create)
			}
			if w := adv.Warning(); !strings.Contains(w, tc.create) || !strings.Contains(w, "no index on (gxsj, ") {
				t.Errorf("warning %q does not name the columns and the statement", w)
			}
			if _, err := tc.admin.Exec(tc.create); err != nil {
				t.Fatalf("the statement check gives does not run: %v", err)
			}
			if adv := check(); adv.Missing() || adv.Index != tc.index {
				t.Errorf("after running the statement: index %q, want %q", adv.Index, tc.index)
			}
			// An index on the cursor alone, or on the columns in the other order, does
			// not serve (cursor, key) order.
			if _, err := tc.admin.Exec(tc.drop); err != nil {
				t.Fatal(err)
			}
			other := strings.Replace(tc.create, "CONCURRENTLY ", "", 1)
			other = strings.Replace(other, tc.index, "wrong_order", 1)
			col := adv.Columns
			other = strings.Replace(strings.Replace(other, col[0], "@@", 1), col[1], col[0], 1)
			other = strings.Replace(other, "@@", col[1], 1)
			if _, err := tc.admin.Exec(other); err != nil {
				t.Fatalf("%s: %v", other, err)
			}
			if adv := check(); !adv.Missing() {
				t.Errorf("an index on (%s, %s) was taken for one on (%s, %s)", col[1], col[0], col[0], col[1])
			}
		})
	}
}
