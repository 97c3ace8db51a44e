package connectors

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestExamples loads every example config and checks that it maps every non-nullable
// field of its dataset (LoadConfig enforces it; this proves the examples pass).
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yaml")
	if len(files) < 8 {
		t.Fatalf("found %d example configs, want the four registers for postgres and sqlite at least", len(files))
	}
	seen := map[string]bool{}
	for _, f := range files {
		cfg, err := LoadConfig(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		ds, _ := catalog().Dataset(cfg.Dataset)
		for _, fd := range ds.Fields {
			if _, ok := cfg.Fields[fd.Name]; !ok && !fd.Nullable {
				t.Errorf("%s: %s is not mapped", f, fd.Name)
			}
		}
		if _, err := newMapper(cfg); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		seen[cfg.Source.Driver+"/"+cfg.Dataset] = true
	}
	for _, ds := range catalog().Datasets() {
		for _, drv := range []string{"postgres", "sqlite"} {
			if !seen[drv+"/"+ds.ID] {
				t.Errorf("no %s example for %s", drv, ds.ID)
			}
		}
	}
}

// TestImportsOnlySchemas keeps package connectors free of the exchange: of govx, it may
// import only govx/schemas/... and the leaf helpers of govx/internal that every layer
// shares (internal/archtest holds the whole rule).
func TestImportsOnlySchemas(t *testing.T) {
	sharedInternal := map[string]bool{"govx/internal/strictyaml": true, "govx/internal/backoff": true}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if (p == "govx" || strings.HasPrefix(p, "govx/")) && p != "govx/schemas" && !strings.HasPrefix(p, "govx/schemas/") && !sharedInternal[p] {
				t.Errorf("%s imports %s; package connectors may import only govx/schemas and %v of govx", f, p, slices.Sorted(maps.Keys(sharedInternal)))
			}
		}
	}
}

func TestDSNNeverInConfig(t *testing.T) {
	data, _ := os.ReadFile("examples/gab.postgres.yaml")
	_, err := ParseConfig("x.yaml", append(data, []byte("\nsource_dsn: postgres://u:p@h/db\n")...))
	if err == nil {
		t.Fatal("an inline DSN field was accepted")
	}
}

func TestJSONString(t *testing.T) {
	for _, s := range []string{"张三", "a\"b\\c", "line\nbreak\t\x01", "\u2028x", "bad\xffutf8", "ＡＢＣ 欧阳娜娜"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: round trip %q, encoding/json gives %q", s, back, wantBack)
		}
	}
}

func TestCheckpointValues(t *testing.T) {
	ts := time.Date(2025, 6, 30, 18, 0, 0, 123456000, time.UTC)
	for _, v := range []any{ts, "330106199001011234", int64(42), 1.5, nil, true} {
		raw, err := encodeValue(v)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeValue(raw)
		if err != nil {
			t.Fatal(err)
		}
		if bt, ok := back.(time.Time); ok {
			if !bt.Equal(ts) {
				t.Errorf("time %v came back as %v", ts, bt)
			}
			continue
		}
		if back != v {
			t.Errorf("%#v came back as %#v (%s)", v, back, raw)
		}
	}
	// A text cursor keeps its layout when moved back by the look-back window.
	got, ok := cursorMinus("2025-06-30 18:00:00", 5*time.Minute)
	if !ok || got != "2025-06-30 17:55:00" {
		t.Errorf("cursorMinus on text = %v, %v", got, ok)
	}
}

func TestRedact(t *testing.T) {
	for _, dsn := range []string{
		"postgres://gab_reader:s3cr3t-Pass@db:5432/rk",
		"host=db user=gab password=s3cr3t-Pass dbname=rk",
		"gab:s3cr3t-Pass@tcp(db:3306)/rk",
	} {
		r := newRedactor(dsn)
		msg := r.text("connect " + dsn + " failed for s3cr3t-Pass")
		if strings.Contains(msg, "s3cr3t-Pass") {
			t.Errorf("%q: redacted to %q", dsn, msg)
		}
	}
}
