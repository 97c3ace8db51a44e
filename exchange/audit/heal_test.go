package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"govx/internal/testenv"
)

// TestSpoolHealsAfterWriteFailure: while the spool cannot be written every append is
// refused and Writable says why; once the directory is back the spool recovers by
// itself within seconds, with no restart, and the chain runs on without a gap.
func TestSpoolHealsAfterWriteFailure(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "spool")
	s, err := OpenSpool(dir, WithInstance("ex-1"), WithSegmentSize(64), WithLogger(quiet), WithFreeSpaceReserve(0)) // every group starts a segment
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := appendN(t, s, 3)
	// Take the directory away (kept aside): nothing can be created where it was.
	if err := os.Rename(dir, dir+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), sampleEvent(9, KindDecision)); err == nil || !strings.Contains(err.Error(), "no access is allowed without audit") {
		t.Fatalf("append into an unwritable spool: err %v, want a refusal", err)
	}
	if s.Writable() == nil {
		t.Fatal("Writable says the spool is writable while appends fail")
	}
	if err := s.Append(context.Background(), sampleEvent(10, KindDecision)); err == nil {
		t.Fatal("a second append into the unwritable spool succeeded")
	}
	// The fault clears.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".aside", dir); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForState(t, 5*time.Second, "spool writable again", func() (bool, string) { return s.Writable() == nil, "" })
	after := appendN(t, s, 3)
	if after[0].Seq != before[2].Seq+1 || after[0].PrevHash != before[2].Hash {
		t.Fatalf("after healing the chain continues at seq %d (prev %s), want seq %d linked to %s", after[0].Seq, after[0].PrevHash, before[2].Seq+1, before[2].Hash)
	}
	s.Close()
	st, _ := OpenSpoolStore(dir)
	it, _ := st.Chain(context.Background())
	res, err := Verify(context.Background(), it, VerifyOptions{})
	if err != nil || !res.OK() || res.Chains[0].Events != 6 {
		t.Fatalf("healed spool does not verify with 6 events: %v\n%s", err, res.Summary())
	}
}

// TestSpoolFreeSpaceReserve: below the free-space reserve appends are refused before the
// disk is full; when space is freed the spool accepts appends again by itself.
func TestSpoolFreeSpaceReserve(t *testing.T) {
	var free atomic.Int64
	free.Store(10 << 30)
	old := diskSpace
	diskSpace = func(string) (int64, int64, error) { return free.Load(), 100 << 30, nil }
	t.Cleanup(func() { diskSpace = old })

	s, err := OpenSpool(t.TempDir(), WithInstance("ex-1"), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.reserve != 1<<30 {
		t.Fatalf("default reserve on a 100 GiB file system is %d, want 1 GiB", s.reserve)
	}
	appendN(t, s, 2)
	free.Store(1<<30 - 1)
	err = s.Append(context.Background(), sampleEvent(3, KindDecision))
	if !errors.Is(err, ErrReserve) {
		t.Fatalf("append below the reserve: err %v, want ErrReserve", err)
	}
	if s.Writable() == nil || s.FreeSpaceMargin() >= 0 {
		t.Fatalf("below the reserve: writable %v, margin %d", s.Writable(), s.FreeSpaceMargin())
	}
	free.Store(2 << 30)
	testenv.WaitForState(t, 5*time.Second, "spool writable after space was freed", func() (bool, string) { return s.Writable() == nil, "" })
	if err := s.Append(context.Background(), sampleEvent(4, KindDecision)); err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	if s.Committed() != 3 {
		t.Fatalf("chain head at seq %d, want 3 (the refused append took no seq)", s.Committed())
	}
	if s.SpoolBytes() <= int64(len(segMagic)) {
		t.Fatalf("spool bytes %d: the metric does not count the events", s.SpoolBytes())
	}
}
