package policy

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"govx/exchange"
	"govx/policies"
)

// TestPairLocal: the shipped policy reads the data only at the requesting department
// and dataset, so a reload may take over what it decided for the pairs it did not
// change; every other way of reading the data is refused, since an edit of one pair
// could then change another's decisions.
func TestPairLocal(t *testing.T) {
	b, err := policies.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	comp, _, err := b.Compile(false)
	if err != nil {
		t.Fatal(err)
	}
	keys := dataKeys(b)
	if !pairLocal(comp, keys) {
		t.Fatal("the shipped policy is not found pair-local")
	}
	for name, body := range map[string]string{
		"the pair's slice":               "x := data.agreements_by_key[input.subject.department][input.resource.dataset]\n\tcount(x) > 0",
		"a field of the department":      "data.departments[input.subject.department].region != \"\"",
		"through a variable":             "d := input.subject.department\n\tdata.departments[d]",
		"inside a comprehension":         "count([a | some a in data.agreements_by_key[input.subject.department][input.resource.dataset]]) > 0",
		"a rule of the policy":           "data.govx.other.y",
		"every element of the pair":      "every a in data.agreements_by_key[input.subject.department][input.resource.dataset] { a.id != \"\" }",
		"a variable bound in the parent": "d := input.subject.department\n\tcount([1 | data.departments[d]]) > 0",
	} {
		if !pairLocal(compile(t, body), keys) {
			t.Errorf("%s: not pair-local, want pair-local", name)
		}
	}
	for name, body := range map[string]string{
		"all agreements counted":    "count(data.agreements_by_key) > 0",
		"another department":        "data.departments[\"gab\"]",
		"the catalog by department": "data.catalog[input.subject.department]",
		"a key of its own":          "some k\n\tdata.catalog[k].share == \"none\"",
		"the department's datasets": "count(data.agreements_by_key[input.subject.department]) > 0",
		"a key from the request":    "data.departments[input.request.purpose]",
		"an unknown document":       "data.issuers[input.subject.department]",
		"a variable rebound":        "d := input.subject.department\n\tsome e\n\tdata.departments[e]",
	} {
		if pairLocal(compile(t, body), append(keys, "issuers")) {
			t.Errorf("%s: pair-local, want not", name)
		}
	}
}

func compile(t *testing.T, body string) *ast.Compiler {
	t.Helper()
	mods := map[string]string{
		"p.rego": "package govx.sharing\n\nallow if {\n\t" + body + "\n}\n",
		"o.rego": "package govx.other\n\ny := true\n",
	}
	parsed := map[string]*ast.Module{}
	for name, src := range mods {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		parsed[name] = m
	}
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(parsed); c.Failed() {
		t.Fatal(c.Errors)
	}
	return c
}

// FuzzPairOfKey: pairOfKey reads back the department and dataset of every cache key, and
// requestOfKey the whole request of a key without case_ref, filter and limit, whatever
// the names hold (colons, digits, other scripts), and never panics on others.
func FuzzPairOfKey(f *testing.F) {
	f.Add("mz-3301", "dibao-review", "population.person", "3:a:b", "12:x")
	f.Add("", "", "", "", "")
	f.Add("部门:1", "9:", "a.b", "p", "0:")
	f.Fuzz(func(t *testing.T, dept, system, dataset, purpose, junk string) {
		req := exchange.Request{Subject: exchange.Subject{Department: dept, System: system},
			Action: exchange.ActionRead, Dataset: dataset, Purpose: purpose, Columns: []string{junk}}
		for _, kp := range []keyParts{{}, {true, true, true}} {
			key, err := cacheKey(req, kp)
			if err != nil {
				t.Fatal(err)
			}
			d, ds, ok := pairOfKey(key)
			if !ok || d != dept || ds != dataset {
				t.Fatalf("pairOfKey(%q) = %q, %q, %v", key, d, ds, ok)
			}
		}
		key, _ := cacheKey(req, keyParts{})
		if back, ok := requestOfKey(key); !ok || !reflect.DeepEqual(back, req) {
			t.Fatalf("requestOfKey(%q) = %+v, %v; want %+v", key, back, ok, req)
		}
		pairOfKey(junk)
		requestOfKey(junk)
	})
}

// TestPairOfKeyRandom runs pairOfKey and requestOfKey on random keys as the fuzz target does, under go test.
func TestPairOfKeyRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []rune("ab:[0129部\x00")
	word := func() string {
		r := make([]rune, rng.IntN(6))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(r)
	}
	for range 2000 {
		dept, ds := word(), word()
		req := exchange.Request{Subject: exchange.Subject{Department: dept, System: word()}, Action: exchange.Action(word()), Dataset: ds, Purpose: word()}
		for range rng.IntN(3) {
			req.Columns = append(req.Columns, word())
		}
		key, _ := cacheKey(req, keyParts{})
		if d, s, ok := pairOfKey(key); !ok || d != dept || s != ds {
			t.Fatalf("pairOfKey(%q) = %q, %q, %v; want %q, %q", key, d, s, ok, dept, ds)
		}
		if back, ok := requestOfKey(key); !ok || !reflect.DeepEqual(back, req) {
			t.Fatalf("requestOfKey(%q) = %+v, %v; want %+v", key, back, ok, req)
		}
		pairOfKey(word())
		requestOfKey(word())
	}
}
