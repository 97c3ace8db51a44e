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
	t.Setenv("GOVX_DATA_DIR", t.TempDir()) // the sqlite and csv examples' paths name it; unset is an error
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

// TestCheckRefusesUnsetPathVariableAndZeroPartitions: what `govx connector check
// --offline` reads refuses a source.path naming an unset variable (it would open
// "/gab.db") and an explicit kafka.partitions or replication_factor of 0, which are not
// the defaults; left out, they are.
func TestCheckRefusesUnsetPathVariableAndZeroPartitions(t *testing.T) {
	data, err := os.ReadFile("examples/gab.sqlite.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOVX_KAFKA_BROKERS", "127.0.0.1:9092")
	os.Unsetenv("GOVX_TEST_UNSET_DIR")
	unset := strings.Replace(string(data), "${GOVX_DATA_DIR}", "${GOVX_TEST_UNSET_DIR}", 1)
	if _, err := ParseConfig("x.yaml", []byte(unset)); err == nil || !strings.Contains(err.Error(), "environment variable GOVX_TEST_UNSET_DIR is not set") {
		t.Errorf("source.path with an unset variable: %v", err)
	}
	t.Setenv("GOVX_DATA_DIR", t.TempDir())
	for _, zero := range []string{"  partitions: 0\n", "  partitions: 6\n  replication_factor: 0\n"} {
		cfg := strings.Replace(string(data), "  partitions: 6\n", zero, 1)
		if _, err := ParseConfig("x.yaml", []byte(cfg)); err == nil || !strings.Contains(err.Error(), "must be positive") {
			t.Errorf("kafka %q: %v", zero, err)
		}
	}
	cfg, err := ParseConfig("x.yaml", []byte(strings.Replace(string(data), "  partitions: 6\n", "", 1)))
	if err != nil || *cfg.Kafka.Partitions != DefaultPartitions || *cfg.Kafka.ReplicationFactor != 1 {
		t.Errorf("defaults: %v, %v", cfg, err)
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
