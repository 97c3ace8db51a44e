package main

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// TestDemoKeepsAuditLogs: starting the demo again empties its exchange directory but
// moves the previous run's audit spool, checkpoints and public key aside with the time,
// and keeps those of earlier runs; two runs within one second keep both.
func TestDemoKeepsAuditLogs(t *testing.T) {
	xdir := filepath.Join(t.TempDir(), "exchange")
	write := func(rel, data string) {
		p := filepath.Join(xdir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(spool string) {
		write("audit-spool/00000000000000000001.seg", spool)
		write("audit-spool/instance", "exchange-1\n")
		write("audit.checkpoints", "ckpt of "+spool)
		write("audit.key", "private")
		write("audit.key.pub", "public of "+spool)
		write("exchange-data/population.person/snap", "store")
		write("tokens.json", "{}")
	}
	at := time.Date(2026, 11, 29, 3, 40, 0, 0, time.UTC)
	run("first run")
	kept, err := freshExchangeDir(xdir, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0] != filepath.Join(xdir, "audit-spool.20261129T034000Z") {
		t.Fatalf("kept %v", kept)
	}
	run("second run")
	if _, err := freshExchangeDir(xdir, at); err != nil {
		t.Fatal(err)
	}
	var names []string
	entries, _ := os.ReadDir(xdir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	want := []string{"audit-spool.20261129T034000Z", "audit-spool.20261129T034000Z-2", "audit.checkpoints.20261129T034000Z",
		"audit.checkpoints.20261129T034000Z-2", "audit.key.pub.20261129T034000Z", "audit.key.pub.20261129T034000Z-2"}
	if len(names) != len(want) {
		t.Fatalf("left %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("left %v, want %v", names, want)
		}
	}
	for dir, content := range map[string]string{"audit-spool.20261129T034000Z": "first run", "audit-spool.20261129T034000Z-2": "second run"} {
		b, err := os.ReadFile(filepath.Join(xdir, dir, "00000000000000000001.seg"))
		if err != nil || string(b) != content {
			t.Errorf("%s holds %q, %v; want the %s's segment", dir, b, err, content)
		}
	}
}
