package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"govx/exchange/store"
	"govx/internal/testenv"
)

// TestIntegrationSnapshotSkipsUnchangedTables: a table that ingested nothing since its
// file was written is not written again (an idle exchange at a million rows would
// otherwise copy and fsync the whole store every interval, stalling the lookups); one
// that ingested is, and a restart serves what it ingested.
func TestIntegrationSnapshotSkipsUnchangedTables(t *testing.T) {
	brokers := testenv.Require(t, testenv.Kafka)
	chDB, _ := clickhouseDB(t)
	prefix := "govxtest" + randomSuffix() + "."
	topic := prefix + "population.person"
	persons := makePersons(t, 41, 11)
	recs := map[string]any{}
	for _, p := range persons[:40] {
		recs[p["id_number"].(string)] = map[string]any(p)
	}
	produce(t, brokers, topic, recs)
	dir := t.TempDir()
	te := newTestExchange(t, dir, brokers, prefix, chDB)
	file := filepath.Join(te.cfg.DataDir, "population.person", store.FileName("population.person"))
	stat := func() os.FileInfo {
		t.Helper()
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatalf("the snapshot file: %v", err)
		}
		return fi
	}
	if err := te.x.snapshot(); err != nil {
		t.Fatal(err)
	}
	first := stat()
	if err := te.x.snapshot(); err != nil {
		t.Fatal(err)
	}
	// Each write goes to a new file renamed over the old one: the same file is no write.
	if !os.SameFile(first, stat()) {
		t.Fatal("the snapshot of a table that ingested nothing was written again")
	}

	added := persons[40]
	produce(t, brokers, topic, map[string]any{added["id_number"].(string): map[string]any(added)})
	table := te.x.Tables()["population.person"]
	testenv.WaitFor(t, 30*time.Second, "the added person ingested", func() bool {
		snap := table.Snapshot()
		defer snap.Release()
		return snap.Len() == 41
	})
	if err := te.x.snapshot(); err != nil {
		t.Fatal(err)
	}
	if os.SameFile(first, stat()) {
		t.Fatal("the snapshot of a table that ingested a record was not written")
	}
	te.stop() // Close snapshots too: nothing changed since, so nothing is written

	// The restart loads the file, which holds the added person, and does not write it
	// back at its first snapshot.
	written := stat()
	te.start()
	defer te.stop()
	snap := te.x.Tables()["population.person"].Snapshot()
	_, ok := snap.Lookup(added["id_number"].(string))
	snap.Release()
	if !ok {
		t.Fatal("after a restart from the snapshot, the person added before it is not served")
	}
	if err := te.x.snapshot(); err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(written, stat()) {
		t.Fatal("the snapshot just loaded was written again though nothing was ingested")
	}
}
