package main

import (
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

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
