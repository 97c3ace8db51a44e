package main

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"govx/connectors/synth"
	"govx/internal/testenv"
)

// TestIntegrationConnectorCheckErrors runs `govx connector check` on the usual mistakes:
// each exits non-zero with one message naming the problem, and never prints the password.
func TestIntegrationConnectorCheckErrors(t *testing.T) {
	admin := testenv.Require(t, testenv.Postgres)
	t.Setenv("GOVX_KAFKA_BROKERS", testenv.Require(t, testenv.Kafka))
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	schema := "clitest_" + strings.ReplaceAll(t.Name(), "/", "_")[len("TestIntegration"):]
	schema = strings.ToLower(schema)
	for _, q := range []string{
		"DROP SCHEMA IF EXISTS " + schema + " CASCADE", "CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + ".rk_jbxx (sfzh varchar(18) PRIMARY KEY, xm text, xb text, csrq text, mz text, hjdz_qhdm text, hjdz_xz text, lxdh text, ryzt text, gxsj timestamp)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { db.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE") })

	example, err := os.ReadFile(filepath.Join(moduleRoot(t), "connectors/examples/gab.postgres.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "Wr0ng-Secret-pw-4711"
	u, _ := url.Parse(admin)
	good := u.String()
	u.User = url.UserPassword(u.User.Username(), secret)
	wrong := u.String()

	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	base := strings.Replace(string(example), "table: gab.rk_jbxx", "table: "+schema+".rk_jbxx", 1)
	cases := []struct {
		name, dsn, config, want string
	}{
		{"wrong password", wrong, base, "password authentication failed"},
		{"missing table", good, strings.Replace(base, schema+".rk_jbxx", schema+".no_such_table", 1), "does not exist"},
		{"unknown column", good, strings.Replace(base, "name: xm", "name: xingming", 1), `no column "xingming"`},
		{"unknown config field", good, strings.Replace(base, "poll_interval:", "pol_interval:", 1), `unknown key "pol_interval"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOVX_SOURCE_DSN", tc.dsn)
			out, err := runGovx(t, "connector", "check", "-c", write(strings.ReplaceAll(tc.name, " ", "_")+".yaml", tc.config))
			if err == nil || exitCode(err) == 0 {
				t.Fatalf("exit 0, want a failure; output:\n%s", out)
			}
			all := out + err.Error()
			if !strings.Contains(all, tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(all, secret) {
				t.Errorf("the password is in the output:\n%s", all)
			}
		})
	}
}

func moduleRoot(t *testing.T) string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// TestIntegrationConnectorCheckCursorIndex: `govx connector check` on a SQLite source
// whose table lacks the (cursor, key) index passes but warns, naming the statement to
// run; once it is run, check names the index instead.
func TestIntegrationConnectorCheckCursorIndex(t *testing.T) {
	t.Setenv("GOVX_KAFKA_BROKERS", testenv.Require(t, testenv.Kafka))
	dir := t.TempDir()
	ctx := context.Background()
	g, err := synth.New(synth.Options{Scale: 100, Seed: 3, Departments: []string{synth.DeptPopulation}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := synth.Open(ctx, "sqlite:"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Generate(ctx, g, w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	db, err := sql.Open("sqlite", "file:"+synth.SQLitePath(dir, synth.DeptPopulation))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DROP INDEX rk_jbxx_gxsj_sfzh"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOVX_DATA_DIR", dir)
	config := filepath.Join(moduleRoot(t), "connectors/examples/gab.sqlite.yaml")
	const create = `CREATE INDEX "rk_jbxx_gxsj_sfzh" ON "rk_jbxx" ("gxsj", "sfzh");`

	out, err := runGovx(t, "connector", "check", "-c", config, "--samples", "2")
	if err != nil {
		t.Fatalf("check failed on a source without the index (it should only warn): %v\n%s", err, out)
	}
	if !strings.Contains(out, "WARNING: table rk_jbxx has no index on (gxsj, sfzh)") || !strings.Contains(out, "\n  "+create+"\n") {
		t.Errorf("check does not warn of the missing index with the statement to run:\n%s", out)
	}
	if _, err := db.Exec(create); err != nil {
		t.Fatalf("the statement check printed does not run: %v", err)
	}
	out, err = runGovx(t, "connector", "check", "-c", config, "--samples", "2")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "WARNING") || !strings.Contains(out, "index: rk_jbxx_gxsj_sfzh serves the (gxsj, sfzh) order") {
		t.Errorf("with the index in place, check should name it and not warn:\n%s", out)
	}
}
