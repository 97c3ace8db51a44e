package connectors_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"govx/connectors"
	"govx/connectors/synth"
)

// TestIntegrationGB18030CSV reads market regulation's GB18030 CSV export (as govx gen
// writes it) and checks the Chinese names come through intact.
func TestIntegrationGB18030CSV(t *testing.T) {
	dir := t.TempDir()
	g := generate(t, "csv:"+dir, 200, synth.DeptMarket)
	path := synth.CSVPath(dir, synth.DeptMarket)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if utf8.Valid(raw) {
		t.Fatalf("%s is valid UTF-8; the test needs a GB18030 export", path)
	}
	t.Setenv("GOVX_DATA_DIR", dir)
	cfg := exampleConfig(t, "scjgj.csv.yaml", "")
	c, err := connectors.New(cfg, connectors.WithLogger(quietLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.Check(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{}
	for _, row := range g.Rows(synth.DeptMarket) {
		want[row[0].(string)] = [2]string{row[1].(string), row[4].(string)}
	}
	if len(rep.Samples) != len(want) {
		t.Fatalf("read %d rows, the export has %d", len(rep.Samples), len(want))
	}
	checked := 0
	for _, s := range rep.Samples {
		w, ok := want[s.Key]
		if !ok || len(s.Errors) > 0 {
			continue
		}
		if s.Record["name"] != w[0] || s.Record["legal_rep_name"] != w[1] {
			t.Fatalf("%s: read name %q, legal representative %q; the export has %q, %q", s.Key, s.Record["name"], s.Record["legal_rep_name"], w[0], w[1])
		}
		checked++
	}
	if checked < len(want)*9/10 || !strings.ContainsFunc(rep.Samples[0].Record["name"].(string), func(r rune) bool { return r >= 0x4e00 && r <= 0x9fff }) {
		t.Fatalf("only %d of %d names checked, or no Chinese characters in %q", checked, len(want), rep.Samples[0].Record["name"])
	}
}
