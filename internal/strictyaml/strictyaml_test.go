package strictyaml

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type config struct {
	Name    string   `yaml:"name"`
	Port    int      `yaml:"port"`
	Brokers []string `yaml:"brokers"`
	TLS     struct {
		Cert string `yaml:"cert"`
	} `yaml:"tls"`
	Every duration `yaml:"every"`
}

type duration string

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if !strings.HasSuffix(n.Value, "s") {
		return fmt.Errorf("line %d: %q is not a duration", n.Line, n.Value)
	}
	*d = duration(n.Value)
	return nil
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // the problems, as printed; none: it decodes
	}{
		{"good", "name: x\nport: 8080\nbrokers: [a, b]\ntls:\n  cert: c.pem\n", nil},
		{"unknown key with its line", "name: x\ntls:\n  cert: c.pem\n  kye: k.pem\n", []string{`f.yaml:4: unknown key "kye"`}},
		{"type error with its line", "name: x\nport: eighty\n", []string{"f.yaml:2: cannot unmarshal !!str `eighty` into int"}},
		{"every problem, in file order", "prot: 1\nport: x\nbrokers: {a: b}\n", []string{
			`f.yaml:1: unknown key "prot"`,
			"f.yaml:2: cannot unmarshal !!str `x` into int",
			"f.yaml:3: cannot unmarshal !!map into []string",
		}},
		{"two documents", "name: x\n---\nname: y\n", []string{"f.yaml:2: a second YAML document: a file holds one (remove the --- and what follows, or split the file)"}},
		{"a second document that does not parse", "name: x\n---\nname: y\n  port: 1\n", []string{"f.yaml:4: mapping values are not allowed in this context"}},
		{"a leading and a trailing ---", "---\nname: x\n---\n", nil},
		{"empty file", "", []string{"f.yaml: no YAML document"}},
		{"only comments", "# nothing yet\n", []string{"f.yaml: no YAML document"}},
		{"syntax error", "name: x\n  port: 1\n", []string{"f.yaml:2: mapping values are not allowed in this context"}},
		{"a custom unmarshaler's error", "every: 5m\n", []string{`f.yaml:1: "5m" is not a duration`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c config
			err := Decode("f.yaml", []byte(tc.yaml), &c)
			var got []string
			for _, p := range Problems(err) {
				got = append(got, p.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if err != nil && err.Error() != strings.Join(tc.want, "\n") {
				t.Errorf("error text %q, want the problems one a line", err)
			}
		})
	}
}

func TestDecodeDecodes(t *testing.T) {
	var c config
	if err := Decode("f.yaml", []byte("name: x\nport: 8080\nbrokers: [a, b]\ntls: {cert: c.pem}\nevery: 5s\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "x" || c.Port != 8080 || len(c.Brokers) != 2 || c.TLS.Cert != "c.pem" || c.Every != "5s" {
		t.Fatalf("decoded %+v", c)
	}
}

func TestProblemFields(t *testing.T) {
	var c config
	err := Decode("dir/f.yaml", []byte("name: x\ntls:\n  kye: k.pem\n"), &c)
	ps := Problems(err)
	if len(ps) != 1 || ps[0].File != "dir/f.yaml" || ps[0].Line != 3 || ps[0].Key != "kye" || ps[0].Msg != `unknown key "kye"` {
		t.Fatalf("problems %+v", ps)
	}
	if err := Decode("f.yaml", nil, &c); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty file: %v, want ErrEmpty", err)
	}
	if err := Decode("f.yaml", []byte("name: x\nport: x\n"), &c); errors.Is(err, ErrEmpty) {
		t.Fatalf("a type error is ErrEmpty: %v", err)
	}
	if ps := Problems(errors.New("read f.yaml: permission denied")); len(ps) != 1 || ps[0].Msg != "read f.yaml: permission denied" {
		t.Fatalf("a foreign error: %+v", ps)
	}
}
