package connectors_test

import (
	"crypto/ed25519"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"govx/connectors"
	"govx/connectors/synth"
	"govx/internal/testenv"
	"govx/schemas"
	"govx/schemas/license"
)

var catalog = schemas.MustLoad()

// TestIntegrationSnapshotRegisters snapshots all five registers — four from PostgreSQL,
// market regulation from MariaDB — through the example configs and checks that every
// valid row is in its topic with the value the reference mapping gives, every planted
// invalid row in the dead-letter topic with reasons, the counts reconcile, and every
// published licence's issuer signature holds under its issuer's key.
func TestIntegrationSnapshotRegisters(t *testing.T) {
	pg := newPostgresDB(t)
	const scale = 3000
	gPG := generate(t, pg, scale, synth.DeptPopulation, synth.DeptLand, synth.DeptStatistics, synth.DeptLicence)

	my := testenv.Require(t, testenv.MySQL)
	myPrefix := "t" + randID() + "_"
	gMy := generate(t, strings.TrimSuffix(my, "/")+"/?prefix="+myPrefix, scale, synth.DeptMarket)
	t.Cleanup(func() { dropMySQL(t, my, myPrefix+"scjgj") })

	prefix := "t" + randID() + "."
	cases := []struct {
		dept, example, dsn string
		g                  *synth.Generator
		table              string
	}{
		{synth.DeptPopulation, "gab.postgres.yaml", pg, gPG, ""},
		{synth.DeptLand, "zrzyb.postgres.yaml", pg, gPG, ""},
		{synth.DeptStatistics, "tjj.postgres.yaml", pg, gPG, ""},
		{synth.DeptLicence, "zwfw.postgres.yaml", pg, gPG, ""},
		{synth.DeptMarket, "scjgj.mysql.yaml", my, gMy, myPrefix + "scjgj.scztdj"},
	}
	var cfgs []*connectors.Config
	var runs []*running
	for _, c := range cases {
		cfg := exampleConfig(t, c.example, c.dsn)
		// Each connector reads its DSN when it starts; give each its own variable.
		env := "GOVX_TEST_DSN_" + strings.ToUpper(c.dept)
		t.Setenv(env, c.dsn)
		cfg.Source.DSNEnv = env
		if c.table != "" {
			cfg.Source.Table = c.table
		}
		cfg.Snapshot.PageSize = 700 // several pages per register
		cfgs = append(cfgs, cfg)
		runs = append(runs, start(t, cfg, prefix))
	}
	for _, r := range runs {
		r.waitReady(t, 3*time.Minute)
	}
	dlq := dlqRecords(t, prefix+"dlq")
	for i, c := range cases {
		p := runs[i].c.Progress()
		if p.Snapshots != 1 || p.Resumed {
			t.Errorf("%s: snapshots=%d resumed=%v, want one fresh snapshot", c.dept, p.Snapshots, p.Resumed)
		}
		if p.Published+p.Invalid != int64(c.g.Count(c.dept)) || p.SnapshotRows != int64(c.g.Count(c.dept)) {
			t.Errorf("%s: progress %+v does not add up to %d source rows", c.dept, p, c.g.Count(c.dept))
		}
		got, _ := readTopic(t, prefix+cfgs[i].Dataset)
		for k, r := range got {
			h := r.headers
			if h["govx-op"] != "upsert" || h["govx-dataset"] != cfgs[i].Dataset || h["govx-schema-version"] != "1" ||
				h["govx-source"] != c.dept || h["govx-event-time"] == "" {
				t.Errorf("%s: record %s has headers %v", c.dept, k, h)
				break
			}
		}
		expectSynth(t, c.g, c.dept, cfgs[i], got, dlq)
		if c.dept == synth.DeptLicence {
			expectSignatures(t, c.g.Options().Seed, got)
		}
	}
	cp, err := connectors.ReadCheckpoint(t.Context(), withPrefix(cfgs[0], prefix))
	if err != nil || cp == nil || cp.Phase != connectors.PhaseIncremental || cp.Snapshots != 1 || cp.SnapshotRows != int64(scale) {
		t.Errorf("checkpoint after the snapshot: %+v, %v", cp, err)
	}
}

func withPrefix(cfg *connectors.Config, prefix string) *connectors.Config {
	c := *cfg
	c.SetTopicPrefix(prefix)
	return &c
}

func dropMySQL(t *testing.T, admin, db string) {
	u, _ := url.Parse(admin)
	pw, _ := u.User.Password()
	conn, err := sqlOpenMySQL(u.User.Username(), pw, u.Host)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Exec("DROP DATABASE IF EXISTS `" + db + "`")
}

// TestIntegrationIncremental changes the source after the snapshot — an insert, an
// update, a row committed late with an older timestamp inside the look-back window, a
// soft delete and a hard delete — and waits for each to reach the topic.
func TestIntegrationIncremental(t *testing.T) {
	pg := newPostgresDB(t)
	g := generate(t, pg, 50, synth.DeptPopulation)
	db, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`ALTER TABLE gab.rk_jbxx ADD COLUMN scbz varchar(1) NOT NULL DEFAULT '0'`); err != nil {
		t.Fatal(err)
	}
	cfg := exampleConfig(t, "gab.postgres.yaml", pg)
	cfg.LookBack = connectors.Duration(time.Hour)
	cfg.Deletes = connectors.DeleteConfig{Column: "scbz", Value: "1", CompareEvery: connectors.Duration(300 * time.Millisecond)}
	prefix := "t" + randID() + "."
	topic := prefix + cfg.Dataset
	r := start(t, cfg, prefix)
	r.waitReady(t, time.Minute)

	// New persons: rows past the loaded scale of the same seed are new, unique people.
	big, err := synth.New(synth.Options{Scale: 80, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	cols := synth.TableOf(synth.DeptPopulation).ColumnNames()
	insert := func(i int, at time.Time) string {
		row := big.Row(synth.DeptPopulation, i)
		row[len(row)-1] = at
		ph := make([]string, len(row))
		for j := range ph {
			ph[j] = fmt.Sprintf("$%d", j+1)
		}
		q := "INSERT INTO gab.rk_jbxx (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")"
		if _, err := db.Exec(q, row...); err != nil {
			t.Fatal(err)
		}
		return row[0].(string)
	}
	state := func() map[string]record { m, _ := readTopic(t, topic); return m }
	waitKey := func(what, key string, ok func(record) bool) {
		testenv.WaitFor(t, 30*time.Second, what, func() bool {
			r, found := state()[key]
			return found && ok(r)
		})
	}
	now := time.Now().UTC().Truncate(time.Second)

	inserted := insert(60, now)
	waitKey("the inserted row", inserted, func(r record) bool { return r.value != nil })

	victim := g.Row(synth.DeptPopulation, 1)[0].(string)
	if _, err := db.Exec(`UPDATE gab.rk_jbxx SET xm = $1, gxsj = $2 WHERE sfzh = $3`, "更新后", now.Add(time.Second), victim); err != nil {
		t.Fatal(err)
	}
	waitKey("the update", victim, func(r record) bool { return r.value != nil && r.value["name"] == "更新后" })

	// Committed late: its timestamp is ten minutes older than rows already published.
	late := insert(61, now.Add(-10*time.Minute))
	waitKey("the row committed late with an older timestamp", late, func(r record) bool { return r.value != nil })

	soft := g.Row(synth.DeptPopulation, 2)[0].(string)
	if _, err := db.Exec(`UPDATE gab.rk_jbxx SET scbz = '1', gxsj = $1 WHERE sfzh = $2`, now.Add(2*time.Second), soft); err != nil {
		t.Fatal(err)
	}
	waitKey("the soft delete's tombstone", soft, func(r record) bool { return r.value == nil && r.headers["govx-op"] == "delete" })

	hard := g.Row(synth.DeptPopulation, 3)[0].(string)
	if _, err := db.Exec(`DELETE FROM gab.rk_jbxx WHERE sfzh = $1`, hard); err != nil {
		t.Fatal(err)
	}
	waitKey("the hard delete's tombstone", hard, func(r record) bool { return r.value == nil && r.headers["govx-op"] == "delete" })

	p := r.c.Progress()
	if p.Deleted < 2 || p.Snapshots != 1 {
		t.Errorf("progress %+v: want two deletes and one snapshot", p)
	}
	if p.Unchanged == 0 {
		t.Errorf("rows re-read in the look-back window were published again (unchanged=0): %+v", p)
	}
}

// expectSignatures checks that the licences published from the source still carry a
// signature that holds under their issuer's key for the generator's seed: what the
// issuer signed survives the database types and the connector's normalization.
func expectSignatures(t *testing.T, seed uint64, got map[string]record) {
	t.Helper()
	keys := map[string]ed25519.PublicKey{}
	for _, is := range synth.Issuers() {
		keys[is.Code] = synth.IssuerKey(seed, is.Code).Public().(ed25519.PublicKey)
	}
	ring, err := license.NewKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for k, r := range got {
		l, err := license.FromRecord(r.value)
		if err == nil {
			err = ring.Verify(l)
		}
		if err != nil {
			t.Fatalf("licence %s from the topic: %v", k, err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no licences published")
	}
}
