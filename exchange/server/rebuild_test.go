package server

import (
	"os"
	"path/filepath"
	"testing"

	"govx/exchange"
	"govx/exchange/server/servertest"
	"govx/internal/testenv"
)

// TestIntegrationClusterChangeRebuilds: a store snapshot taken from another Kafka
// cluster is not trusted (its offsets mean nothing here): the exchange rebuilds from the
// topics and serves what they hold. A cursor is bound to the cluster it names offsets
// of, so one issued here stays valid across the rebuild (same cluster, same offsets).
func TestIntegrationClusterChangeRebuilds(t *testing.T) {
	brokers := testenv.Require(t, testenv.Kafka)
	chDB, _ := clickhouseDB(t)
	prefix := "govxtest" + randomSuffix() + "."
	persons := makePersons(t, 80, 5)
	recs := map[string]any{}
	for _, p := range persons {
		recs[p["id_number"].(string)] = map[string]any(p)
	}
	produce(t, brokers, prefix+"population.person", recs)
	dir := t.TempDir()
	te := newTestExchange(t, dir, brokers, prefix, chDB)
	hz := te.client("mz-3301/dibao-review")
	before, _, cursor, err := servertest.Pull(t, hz, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao})
	if err != nil || len(before) == 0 {
		t.Fatalf("first pull: %d rows, %v", len(before), err)
	}
	te.stop()

	// The snapshot now claims another cluster, and holds a row the topic never had.
	os.WriteFile(filepath.Join(te.cfg.DataDir, clusterFile), []byte("another-cluster\n"), 0o600)
	te.start()
	defer te.stop()
	after, _, _, err := servertest.Pull(t, hz, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao})
	if err != nil || rowsKey(after) != rowsKey(before) {
		t.Fatalf("after a rebuild: %d rows (%v), want the %d the topic holds", len(after), err, len(before))
	}
	rows, _, _, err := servertest.Pull(t, hz, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Since: cursor})
	if err != nil || len(rows) != 0 {
		t.Fatalf("changes since a cursor of this cluster, after a rebuild with no change: %d rows, %v", len(rows), err)
	}
}
