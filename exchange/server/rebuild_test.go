package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"govx/exchange"
	"govx/exchange/server/servertest"
	"govx/internal/testenv"
)

// TestIntegrationClusterChangeRebuilds: a store snapshot taken from another Kafka
// cluster is not trusted (its offsets mean nothing here): the exchange rebuilds from the
// topics, serves what they hold, and refuses cursors issued before the rebuild.
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
	// A cursor from before the rebuild names offsets of the other cluster: refused.
	if _, _, _, err := servertest.Pull(t, hz, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao, Since: cursor}); !strings.HasPrefix(codeOf(err), "invalid_cursor") {
		t.Fatalf("a cursor from before the rebuild: %v, want invalid_cursor", err)
	}
}
