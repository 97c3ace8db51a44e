package connectors_test

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"govx/connectors"
	"govx/connectors/synth"
	"govx/internal/testenv"
)

// TestIntegrationIdlePollsStoreNoCheckpoint: polls of a source where nothing changed
// store no checkpoint (each would be a produce round trip and one more record in the
// checkpoint topic every poll_interval, forever); a change is published and its
// checkpoint stored as before.
func TestIntegrationIdlePollsStoreNoCheckpoint(t *testing.T) {
	g, dir, cfg, prefix, r := startSQLitePopulation(t, 40) // polls every 200 ms
	ckptTopic := r.c.Config().Kafka.CheckpointTopic

	// Each poll re-reads the rows inside the look-back window and counts them unchanged:
	// waiting for the count to grow waits for polls, not for time.
	polls := func(n int64) {
		t.Helper()
		from := r.c.Progress().Unchanged
		testenv.WaitFor(t, 30*time.Second, "idle polls", func() bool { return r.c.Progress().Unchanged >= from+n })
	}
	polls(2)
	_, atRest := readTopic(t, ckptTopic)
	polls(5)
	if _, n := readTopic(t, ckptTopic); n != atRest {
		t.Fatalf("five idle polls stored %d checkpoints, want none", n-atRest)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "gab.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	victim := g.Row(synth.DeptPopulation, 3)[0].(string)
	if _, err := db.Exec(`UPDATE rk_jbxx SET xm = ?, gxsj = ? WHERE sfzh = ?`, "空闲后更新", time.Now().UTC().Add(time.Minute).Format("2006-01-02 15:04:05"), victim); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 60*time.Second, "the update published and its checkpoint stored", func() bool {
		m, _ := readTopic(t, prefix+cfg.Dataset)
		rec, ok := m[victim]
		if !ok || rec.value == nil || rec.value["name"] != "空闲后更新" {
			return false
		}
		_, n := readTopic(t, ckptTopic)
		return n > atRest
	})
}

// startSQLitePopulation generates the population register at scale into a SQLite
// database in a new directory and runs its example connector on it until its snapshot
// is done.
func startSQLitePopulation(t *testing.T, scale int) (g *synth.Generator, dir string, cfg *connectors.Config, prefix string, r *running) {
	t.Helper()
	dir = t.TempDir()
	g = generate(t, "sqlite:"+dir, scale, synth.DeptPopulation)
	t.Setenv("GOVX_DATA_DIR", dir)
	cfg = exampleConfig(t, "gab.sqlite.yaml", "")
	prefix = "t" + randID() + "."
	r = start(t, cfg, prefix)
	r.waitReady(t, time.Minute)
	return g, dir, cfg, prefix, r
}
