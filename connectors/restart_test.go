package connectors_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"govx/connectors"
	"govx/connectors/synth"
	"govx/internal/testenv"
)

// restartScale is big enough that a rate-limited snapshot runs for several seconds.
const (
	restartScale = 20000
	restartRate  = 5000 // rows per second
)

func restartConfig(t testing.TB, dsn string) *connectors.Config {
	cfg := exampleConfig(t, "gab.postgres.yaml", dsn)
	cfg.Snapshot.PageSize = 500
	return cfg
}

// expectAllKeys checks that every valid person of g is in the topic.
func expectAllKeys(t *testing.T, g *synth.Generator, topic string) {
	t.Helper()
	got, n := readTopic(t, topic)
	missing := 0
	for i, row := range g.Rows(synth.DeptPopulation) {
		if g.IsPlantedInvalid(synth.DeptPopulation, i) {
			continue
		}
		if r, ok := got[row[0].(string)]; !ok || r.value == nil {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d valid keys missing from %s after the restart", missing, topic)
	}
	t.Logf("%s: %d keys, %d records (duplicates from re-sent chunks are allowed)", topic, len(got), n)
}

// TestIntegrationBrokerKilledMidSnapshot kills the broker's JVM with SIGKILL while a
// snapshot runs and starts it again: the connector waits it out and every key arrives,
// in one snapshot, with the checkpoint never ahead of what Kafka acknowledged.
func TestIntegrationBrokerKilledMidSnapshot(t *testing.T) {
	ctl := testenv.Require(t, "GOVX_TEST_KAFKA_CTL")
	home := testenv.Require(t, "GOVX_TEST_KAFKA_HOME")
	pg := newPostgresDB(t)
	g := generate(t, pg, restartScale, synth.DeptPopulation)
	cfg := restartConfig(t, pg)
	prefix := "t" + randID() + "."
	r := start(t, cfg, prefix, connectors.WithRateLimit(restartRate))
	testenv.WaitFor(t, time.Minute, "a third of the snapshot", func() bool { return r.c.Progress().SnapshotRows >= restartScale/3 })

	b, err := os.ReadFile(filepath.Join(home, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(trimNL(b)))
	if err != nil {
		t.Fatal(err)
	}
	// Whatever happens below, the broker must be running again when the test ends.
	t.Cleanup(func() { exec.Command(ctl, "up").Run() })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the broker (pid %d): %v", pid, err)
	}
	killedAt := r.c.Progress().SnapshotRows
	t.Logf("broker killed at %d of %d rows", killedAt, restartScale)
	testenv.WaitFor(t, 10*time.Second, "the broker to die", func() bool { return syscall.Kill(pid, 0) != nil })
	if out, err := exec.Command(ctl, "up").CombinedOutput(); err != nil {
		t.Fatalf("restarting the broker: %v\n%s", err, out)
	}
	r.waitReady(t, 3*time.Minute)
	p := r.c.Progress()
	if p.Snapshots != 1 || p.Retries == 0 || p.SnapshotRows != restartScale {
		t.Errorf("progress %+v: want one snapshot of %d rows, with retries while the broker was down", p, restartScale)
	}
	expectAllKeys(t, g, prefix+cfg.Dataset)
	cp, err := connectors.ReadCheckpoint(context.Background(), withPrefix(cfg, prefix))
	if err != nil || cp == nil || cp.Snapshots != 1 || cp.Phase != connectors.PhaseIncremental {
		t.Errorf("checkpoint %+v, %v: want one snapshot, now incremental", cp, err)
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// TestIntegrationConnectorKilledMidSnapshot runs the connector in a child process, kills
// it with SIGKILL mid-snapshot, and runs it again: it resumes from its checkpoint (no
// second full snapshot, fewer rows read than the table holds) and every key arrives.
func TestIntegrationConnectorKilledMidSnapshot(t *testing.T) {
	pg := newPostgresDB(t)
	g := generate(t, pg, restartScale, synth.DeptPopulation)
	cfg := restartConfig(t, pg)
	prefix := "t" + randID() + "."

	child := exec.Command(os.Args[0], "-test.run=^TestHelperConnectorChild$", "-test.v")
	child.Env = append(os.Environ(), "GOVX_CONNECTOR_CHILD=1", "GOVX_CONNECTOR_CHILD_DSN="+pg, "GOVX_CONNECTOR_CHILD_PREFIX="+prefix)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	pcfg := withPrefix(cfg, prefix)
	var before *connectors.Checkpoint
	testenv.WaitFor(t, time.Minute, "the child to checkpoint a third of the snapshot", func() bool {
		cp, err := connectors.ReadCheckpoint(context.Background(), pcfg)
		if err == nil && cp != nil && cp.SnapshotRows >= restartScale/3 {
			before = cp
			return true
		}
		return false
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	if before.Phase != connectors.PhaseSnapshot {
		t.Fatalf("child finished its snapshot before it was killed; raise restartScale")
	}

	r := start(t, cfg, prefix)
	r.waitReady(t, 2*time.Minute)
	p := r.c.Progress()
	if !p.Resumed || p.Snapshots != 1 {
		t.Errorf("restarted connector: resumed=%v snapshots=%d, want a resumed first snapshot", p.Resumed, p.Snapshots)
	}
	if p.Read >= restartScale {
		t.Errorf("restarted connector read %d rows, the whole table has %d: it snapshotted again instead of resuming", p.Read, restartScale)
	}
	if p.SnapshotRows != restartScale {
		t.Errorf("snapshot rows %d, want %d", p.SnapshotRows, restartScale)
	}
	t.Logf("killed after %d checkpointed rows; the restart read %d rows", before.SnapshotRows, p.Read)
	expectAllKeys(t, g, prefix+cfg.Dataset)
}

// TestHelperConnectorChild is the child process of TestIntegrationConnectorKilledMidSnapshot;
// it does nothing in a normal run.
func TestHelperConnectorChild(t *testing.T) {
	if os.Getenv("GOVX_CONNECTOR_CHILD") != "1" {
		return
	}
	cfg := restartConfig(t, os.Getenv("GOVX_CONNECTOR_CHILD_DSN"))
	c, err := connectors.New(cfg, connectors.WithTopicPrefix(os.Getenv("GOVX_CONNECTOR_CHILD_PREFIX")),
		connectors.WithRateLimit(restartRate), connectors.WithLogger(quietLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}
