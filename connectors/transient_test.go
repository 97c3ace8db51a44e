package connectors_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"govx/connectors/synth"
	"govx/internal/testenv"
)

// TestIntegrationSourceLockedIsWaitedOut: a department's database locked for longer than
// the connector's busy timeout (a long write, a backup) makes polls fail for a while; the
// connector waits it out instead of stopping, and the change made under the lock reaches
// Kafka once it is committed.
func TestIntegrationSourceLockedIsWaitedOut(t *testing.T) {
	g, dir, cfg, prefix, r := startSQLitePopulation(t, 30)
	topic := prefix + cfg.Dataset

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "gab.db")+"?_pragma=busy_timeout(1000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	victim := g.Row(synth.DeptPopulation, 1)[0].(string)
	if _, err := conn.ExecContext(ctx, `UPDATE rk_jbxx SET xm = ?, gxsj = ? WHERE sfzh = ?`, "锁后更新", time.Now().UTC().Add(time.Minute).Format("2006-01-02 15:04:05"), victim); err != nil {
		t.Fatal(err)
	}
	// Longer than the connector's 5 s busy timeout: its polls fail meanwhile.
	time.Sleep(8 * time.Second)
	select {
	case err := <-r.done:
		r.done <- err
		t.Fatalf("the connector stopped while the source was locked: %v", err)
	default:
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 60*time.Second, "the update committed under the lock", func() bool {
		m, _ := readTopic(t, topic)
		rec, ok := m[victim]
		return ok && rec.value != nil && rec.value["name"] == "锁后更新"
	})
}
