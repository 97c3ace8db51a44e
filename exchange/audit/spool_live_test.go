package audit

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"govx/internal/testenv"
)

// TestSpoolDirectoryRemovedWhileRunning: a spool directory removed under a running
// exchange is found without a request (readiness goes first), every append is refused,
// and a directory made again in its place is not taken for the spool.
func TestSpoolDirectoryRemovedWhileRunning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet), WithFreeSpaceReserve(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, 3)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForState(t, 5*time.Second, "the spool says it cannot be written", func() (bool, string) { return s.Writable() != nil, "" })
	if err := s.Append(context.Background(), sampleEvent(7, KindDecision)); err == nil || !strings.Contains(err.Error(), "removed or replaced") {
		t.Fatalf("append after the directory was removed: %v, want a refusal naming the removal", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Heal would have made a segment in the new directory by its next attempt or two.
	tries := s.heals.Load()
	testenv.WaitForState(t, 5*time.Second, "three more heal attempts", func() (bool, string) { return s.heals.Load() >= tries+3, "" })
	if err := s.Append(context.Background(), sampleEvent(8, KindDecision)); err == nil {
		t.Fatal("an append was acknowledged into a directory made in the removed spool's place")
	}
	if segs, _ := listSegments(dir); len(segs) != 0 {
		t.Fatalf("the spool wrote segments %v into a directory that is not its own", segs)
	}
}

// TestSpoolSegmentRemovedWhileRunning: a segment deleted under a running exchange takes
// no acknowledged event; the spool heals into a new segment, and the restart refuses the
// log with the removed events named.
func TestSpoolSegmentRemovedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet), WithFreeSpaceReserve(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, 3)
	if err := os.Remove(filepath.Join(dir, segName(1))); err != nil {
		t.Fatal(err)
	}
	// Whether the tick or this append finds it first, the append is refused or, once
	// healed, lands in a new segment: never in the removed file.
	ev := sampleEvent(3, KindDecision)
	if err := s.Append(context.Background(), ev); err == nil && ev.Seq != 4 {
		t.Fatalf("append after the segment was removed: seq %d", ev.Seq)
	}
	testenv.WaitForState(t, 5*time.Second, "the spool healed into a new segment", func() (bool, string) { return s.Writable() == nil, "" })
	after := appendN(t, s, 2)
	s.Close()
	found := map[string]bool{}
	for _, e := range chainOf(t, dir) {
		found[e.EventID] = true
	}
	if !found[after[0].EventID] || !found[after[1].EventID] {
		t.Fatal("events acknowledged after healing are not in the spool directory")
	}
	_, err = OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet))
	var de *DamagedError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "seq 1 was expected") {
		t.Fatalf("restart after a segment was removed: %v, want the log refused for the missing events", err)
	}
}

// TestSpoolOpensDrainedAfterHeal: everything shipped and trimmed leaves a spool of one
// empty segment named for the next event (what a healed write leaves): it opens and the
// chain runs on. An empty newest segment under any other name is refused, named, and
// `govx audit repair` sets it aside without recording a loss.
func TestSpoolOpensDrainedAfterHeal(t *testing.T) {
	dir := t.TempDir()
	sink := newMemSink()
	s, err := OpenSpool(dir, WithInstance("ex-1"), WithSink(sink), WithShipInterval(10*time.Millisecond), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	before := appendN(t, s, 6)
	testenv.WaitForState(t, 10*time.Second, "all six shipped", func() (bool, string) { return s.Shipped() == 6, "" })
	s.Close()
	// The state a write failure healed after seq 6 leaves once the shipper trimmed
	// the segment before it.
	if err := os.WriteFile(filepath.Join(dir, segName(7)), []byte(segMagic), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, segName(1))); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet))
	if err != nil {
		t.Fatalf("a drained spool was refused: %v", err)
	}
	ev := appendN(t, s, 1)[0]
	s.Close()
	if ev.Seq != 7 || ev.PrevHash != before[5].Hash {
		t.Fatalf("after the drained spool the chain runs on at seq %d (prev %s), want 7 linked to %s", ev.Seq, ev.PrevHash, before[5].Hash)
	}

	// An empty newest segment the spool did not make.
	if err := os.WriteFile(filepath.Join(dir, segName(20)), []byte(segMagic), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet))
	if err == nil || !strings.Contains(err.Error(), "named for seq 20, while the next event is seq 8") {
		t.Fatalf("a misnamed empty segment: %v, want a refusal naming it", err)
	}
	st, _ := OpenSpoolStore(dir)
	it, _ := st.Chain(context.Background())
	if _, err := Collect(it); err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(it.(Warner).Warnings(), "\n"); !strings.Contains(w, "named for seq 20") {
		t.Fatalf("verify's reader gave no warning of the misnamed segment: %q", w)
	}
	res, err := Repair(dir, RepairOptions{})
	if err != nil || !res.Repaired || res.Gap != nil || res.LostTo != 0 {
		t.Fatalf("repair of a misnamed empty segment: %+v, %v; want it set aside with nothing lost", res, err)
	}
	if _, err := os.Stat(filepath.Join(res.MovedTo, segName(20))); err != nil {
		t.Fatalf("the segment was not set aside: %v", err)
	}
	runsOn(t, dir, 8)
}

// TestSpoolWithoutInstanceFile: a spool whose instance file is lost opens again under
// the instance its events name, and is refused to any other name, so that no instance
// continues another's chain.
func TestSpoolWithoutInstanceFile(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 2)
	s.Close()
	if err := os.Remove(filepath.Join(dir, instanceName)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSpool(dir, WithInstance("ex-2"), WithLogger(quiet)); err == nil || !strings.Contains(err.Error(), `holds the chain of instance "ex-1"`) {
		t.Fatalf("opened under another instance: %v, want a refusal naming ex-1", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, instanceName)); err == nil {
		t.Fatalf("the refusal wrote an instance file: %q", b)
	}
	// Nor under a name written into the instance file by hand.
	if err := os.WriteFile(filepath.Join(dir, instanceName), []byte("ex-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSpool(dir, WithInstance("ex-2"), WithLogger(quiet)); err == nil || !strings.Contains(err.Error(), `holds the chain of instance "ex-1"`) {
		t.Fatalf("opened under an edited instance file: %v, want a refusal naming ex-1", err)
	}
	if err := os.Remove(filepath.Join(dir, instanceName)); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet))
	if err != nil {
		t.Fatalf("reopened under its own instance: %v", err)
	}
	if ev := appendN(t, s, 1)[0]; ev.Seq != 3 || ev.Instance != "ex-1" {
		t.Fatalf("chain runs on at seq %d as %q, want 3 as ex-1", ev.Seq, ev.Instance)
	}
	s.Close()
}

// TestSpoolWarnsOnMemoryFileSystem: a spool on tmpfs opens (tests and trials use it) but
// says at once that its events do not survive the machine.
func TestSpoolWarnsOnMemoryFileSystem(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "govx-spool-")
	if err != nil {
		t.Fatalf("/dev/shm (tmpfs on Linux): %v", err)
	}
	defer os.RemoveAll(dir)
	var log strings.Builder
	s, err := OpenSpool(dir, WithInstance("ex-1"), WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !strings.Contains(log.String(), "the spool is on tmpfs") {
		t.Fatalf("no warning for a spool on tmpfs; log:\n%s", log.String())
	}
	if disk := t.TempDir(); inMemory(disk) == "" {
		log.Reset()
		s, err := OpenSpool(disk, WithInstance("ex-1"), WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if strings.Contains(log.String(), "keeps files in memory") {
			t.Fatalf("a spool on disk was warned about:\n%s", log.String())
		}
	}
}

// TestCheckpointFailuresCounted: a checkpoint file that can no longer be written is
// counted (the exchange exports it as govx_audit_checkpoint_failures_total), not only
// logged, so that an alert can say new events are covered by no signature.
func TestCheckpointFailuresCounted(t *testing.T) {
	priv, _ := testKey(t)
	ckDir := filepath.Join(t.TempDir(), "ck")
	if err := os.Mkdir(ckDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSpool(t.TempDir(), WithInstance("ex-1"), WithCheckpoints(priv, filepath.Join(ckDir, "checkpoints.jsonl"), 10*time.Millisecond), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, 1)
	testenv.WaitForState(t, 5*time.Second, "the moved head checkpointed", func() (bool, string) {
		cps, err := ReadCheckpoints(filepath.Join(ckDir, "checkpoints.jsonl"))
		return err == nil && len(cps) > 0 && cps[len(cps)-1].Seq == 1, ""
	})
	if n := s.CheckpointFailures(); n != 0 {
		t.Fatalf("%d checkpoint failures while the file was writable", n)
	}
	// The checkpoint file's directory is taken away: nothing can be written there.
	if err := os.Rename(ckDir, ckDir+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ckDir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 1)
	testenv.WaitForState(t, 5*time.Second, "a failed checkpoint counted", func() (bool, string) {
		return s.CheckpointFailures() > 0, ""
	})
}

// TestCheckpointSignedWhenSpoolGoes: when the spool stops being writable (its directory
// removed under the running exchange) the head acknowledged so far is signed at once,
// and again at close: the restart then refuses the emptied spool, naming the events that
// were removed, instead of starting a new chain over their seq numbers.
func TestCheckpointSignedWhenSpoolGoes(t *testing.T) {
	priv, _ := testKey(t)
	ck := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	dir := filepath.Join(t.TempDir(), "spool")
	opts := []Option{WithInstance("ex-1"), WithCheckpoints(priv, ck, time.Hour), WithLogger(quiet), WithFreeSpaceReserve(0)}
	s, err := OpenSpool(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 3)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForState(t, 5*time.Second, "the acknowledged head signed", func() (bool, string) {
		cps, err := ReadCheckpoints(ck)
		return err == nil && len(cps) > 0 && cps[len(cps)-1].Seq == 3, ""
	})
	s.Close()
	_, err = OpenSpool(dir, opts...)
	if err == nil || !strings.Contains(err.Error(), "events 1..3 were removed") || !strings.Contains(err.Error(), "--checkpoints "+ck) {
		t.Fatalf("restart on the emptied spool: %v, want a refusal naming events 1..3 and the repair to run with the checkpoint file", err)
	}
}

// TestRepairRenamesMisnamedSegment: a whole segment under another name is refused at
// open, and repair gives it its name back instead of recording its events as lost.
func TestRepairRenamesMisnamedSegment(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 6)
	s.Close()
	if err := os.Rename(filepath.Join(dir, segName(1)), filepath.Join(dir, segName(2))); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet)); err == nil {
		t.Fatal("a misnamed segment was opened")
	}
	res, err := Repair(dir, RepairOptions{})
	if err != nil || !res.Repaired || res.Gap != nil || !strings.Contains(res.Fixed, "renamed") {
		t.Fatalf("repair of a misnamed segment: %+v, %v; want it renamed, nothing lost", res, err)
	}
	runsOn(t, dir, 7)
	st, _ := OpenSpoolStore(dir)
	it, _ := st.Chain(context.Background())
	if res, err := Verify(context.Background(), it, VerifyOptions{}); err != nil || !res.OK() || res.Chains[0].Events != 7 {
		t.Fatalf("verify after the rename: %v\n%s", err, res.Summary())
	}
}

// runsOn reopens the spool in dir as ex-1 and checks that its next event is seq want.
func runsOn(t *testing.T, dir string, want uint64) {
	t.Helper()
	s, err := OpenSpool(dir, WithInstance("ex-1"), WithLogger(quiet))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if ev := appendN(t, s, 1)[0]; ev.Seq != want {
		t.Fatalf("the chain runs on at seq %d, want %d", ev.Seq, want)
	}
}
