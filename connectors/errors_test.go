package connectors_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"govx/connectors"
)

const wrongPassword = "Wr0ng-Secret-pw-4711"

// TestIntegrationClearErrors checks that each common mistake gives one error naming the
// problem, and that the password never appears in it.
func TestIntegrationClearErrors(t *testing.T) {
	pg := newPostgresDB(t)
	generate(t, pg, 20, "gab")
	u, _ := url.Parse(pg)
	u.User = url.UserPassword(u.User.Username(), wrongPassword)
	badPW := u.String()

	cases := []struct {
		name   string
		dsn    string
		edit   func(*connectors.Config)
		expect []string
	}{
		{"wrong password", badPW, nil, []string{"password authentication failed"}},
		{"missing table", pg, func(c *connectors.Config) { c.Source.Table = "gab.no_such_table" }, []string{"gab.no_such_table", "does not exist"}},
		{"unknown mapped column", pg, func(c *connectors.Config) { c.Fields["name"] = connectors.FieldMapping{Column: "xingming"} }, []string{`no column "xingming"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := exampleConfig(t, "gab.postgres.yaml", tc.dsn)
			if tc.edit != nil {
				tc.edit(cfg)
			}
			c, err := connectors.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Check(context.Background(), 3)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, want := range tc.expect {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, wrongPassword) || strings.Contains(msg, "govx:govx@") {
				t.Errorf("error shows the password: %q", msg)
			}
			// Run fails the same way, before touching Kafka.
			if err := c.Run(context.Background()); err == nil || strings.Contains(err.Error(), wrongPassword) {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

func TestUnknownConfigField(t *testing.T) {
	data := []byte("name: x\ndepartment: gab\ndataset: population.person\nsource:\n  driver: postgres\n  dsn_env: X\n  tabel: gab.rk_jbxx\n")
	_, err := connectors.ParseConfig("bad.yaml", data)
	if err == nil || !strings.Contains(err.Error(), `bad.yaml:7: unknown key "tabel"`) {
		t.Fatalf("got %v, want the file, line 7 and the field named", err)
	}
	data = []byte("dataset: population.person\nfields:\n  name: {column: xm, formtas: [x]}\n")
	_, err = connectors.ParseConfig("bad2.yaml", data)
	if err == nil || !strings.Contains(err.Error(), `bad2.yaml:3: unknown key "formtas"`) {
		t.Fatalf("got %v, want line 3 and formtas named", err)
	}
}
