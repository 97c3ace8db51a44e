package audit

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const tamperEvents = 50

// testKey generates a checkpoint key pair through the files the exchange reads it from.
func testKey(t *testing.T) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	kd := t.TempDir()
	if err := GenerateKey(filepath.Join(kd, "k"), filepath.Join(kd, "k.pub")); err != nil {
		t.Fatal(err)
	}
	priv, err := LoadPrivateKey(filepath.Join(kd, "k"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(filepath.Join(kd, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// signedSpool writes tamperEvents events through a spool that signs checkpoints, and
// returns the events, the checkpoints and the public key.
func signedSpool(t *testing.T, dir string, opts ...Option) ([]*Event, []Checkpoint, ed25519.PublicKey) {
	t.Helper()
	priv, pub := testKey(t)
	ck := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	s, err := OpenSpool(dir, append([]Option{WithInstance("ex-tamper"), WithCheckpoints(priv, ck, 0), WithLogger(quiet)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*Event
	for i := 0; i < tamperEvents; i++ {
		kind := KindDecision
		if i%3 == 2 {
			kind = KindComplete
		}
		e := sampleEvent(i, kind)
		if err := s.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
		if i == 29 {
			if err := s.checkpoint(); err != nil { // a periodic checkpoint mid-way
				t.Fatal(err)
			}
		}
	}
	if s.opts.sink != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cps, err := ReadCheckpoints(ck)
	if err != nil || len(cps) != 3 || cps[0].Seq != 0 || cps[2].Seq != tamperEvents {
		t.Fatalf("checkpoints %+v, err %v: want seq 0 (at open), 30 and %d", cps, err, tamperEvents)
	}
	return evs, cps, pub
}

// forge returns an event that a forger who knows the hash algorithm would insert at
// seq, linked to the event before it.
func forge(evs []*Event, seq int) *Event {
	f := *evs[seq-1]
	f.EventID = NewEventID()
	f.Department, f.Purpose, f.Rows = "mz-3301", "covering-tracks", 1
	f.PrevHash = evs[seq-2].Hash
	f.Hash = f.ComputeHash()
	return &f
}

type tamperCase struct {
	name     string
	kind     string // expected first problem
	seq      uint64 // … at this seq
	eventIdx int    // … naming this event (-1: none)
}

var tamperCases = []tamperCase{
	{"changed", ProblemChanged, 20, 19},
	{"removed", ProblemRemoved, 20, -1},
	{"inserted", ProblemInserted, 20, -2}, // -2: the forged event
	{"cut tail", ProblemCut, 46, -1},
}

func checkVerify(t *testing.T, res *VerifyResult, err error, tc tamperCase, evs []*Event, forged *Event) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() {
		t.Fatalf("%s: verify passed a tampered log:\n%s", tc.name, res.Summary())
	}
	p := res.Problems[0]
	if p.Kind != tc.kind || p.Seq != tc.seq {
		t.Fatalf("%s: first problem %s at seq %d, want %s at seq %d\n%s", tc.name, p.Kind, p.Seq, tc.kind, tc.seq, res.Summary())
	}
	switch tc.eventIdx {
	case -1:
	case -2:
		if p.EventID != forged.EventID || !strings.Contains(p.Message, forged.EventID) {
			t.Fatalf("%s: problem does not name the forged event %s: %s", tc.name, forged.EventID, p)
		}
	default:
		if id := evs[tc.eventIdx].EventID; p.EventID != id || !strings.Contains(p.Message, id) {
			t.Fatalf("%s: problem does not name event %s: %s", tc.name, id, p)
		}
	}
	if len(res.Problems) != 1 {
		t.Fatalf("%s: want exactly one problem, got:\n%s", tc.name, res.Summary())
	}
}

// TestVerifySpoolTampering: changes, removals, insertions and a cut tail in the spool
// each fail verification, naming the event; the untouched spool verifies.
func TestVerifySpoolTampering(t *testing.T) {
	dir := t.TempDir()
	evs, cps, pub := signedSpool(t, dir)
	opt := VerifyOptions{Checkpoints: cps, PublicKey: pub}
	st, _ := OpenSpoolStore(dir)
	it, _ := st.Chain(context.Background())
	res, err := Verify(context.Background(), it, opt)
	if err != nil || !res.OK() || res.Chains[0].Events != tamperEvents || res.Chains[0].Checkpoints != 2 {
		t.Fatalf("untouched spool: %v\n%s", err, res.Summary())
	}
	seg := filepath.Join(dir, segName(1))
	orig, _ := os.ReadFile(seg)
	for _, tc := range tamperCases {
		t.Run(tc.name, func(t *testing.T) {
			defer os.WriteFile(seg, orig, 0o600)
			var out []*Event
			var forged *Event
			for i, e := range evs {
				c := *e
				switch {
				case tc.name == "changed" && i == 19:
					c.Rows = 999999
				case tc.name == "removed" && i == 19:
					continue
				case tc.name == "cut tail" && i >= 45:
					continue
				}
				out = append(out, &c)
				if tc.name == "inserted" && i == 19 {
					forged = forge(evs, 20)
					out = append(out, forged)
				}
			}
			buf := []byte(segMagic)
			for _, e := range out {
				var err error
				if buf, err = appendFrame(buf, e); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(seg, buf, 0o600); err != nil {
				t.Fatal(err)
			}
			it, _ := st.Chain(context.Background())
			res, err := Verify(context.Background(), it, opt)
			checkVerify(t, res, err, tc, evs, forged)
		})
	}
}

// TestVerifyCheckpointFile: a checkpoint altered or signed by another key is reported;
// a log whose every hash was recomputed (a full rewrite) disagrees with the checkpoint.
func TestVerifyCheckpointFile(t *testing.T) {
	dir := t.TempDir()
	evs, cps, pub := signedSpool(t, dir)
	bad := append([]Checkpoint(nil), cps...)
	bad[0].Seq = 29
	res, err := Verify(context.Background(), SliceStore(evs).chainIter(), VerifyOptions{Checkpoints: bad, PublicKey: pub})
	if err != nil || res.OK() || res.Problems[0].Kind != ProblemCheckpoint {
		t.Fatalf("altered checkpoint not reported: %v\n%s", err, res.Summary())
	}
	// Rewrite: change event 10 and rehash the rest so the chain is consistent again.
	re := make([]*Event, len(evs))
	prev := GenesisHash
	for i, e := range evs {
		c := *e
		if i == 9 {
			c.Department = "someone-else"
		}
		c.PrevHash = prev
		c.Hash = c.ComputeHash()
		prev = c.Hash
		re[i] = &c
	}
	res, err = Verify(context.Background(), SliceStore(re).chainIter(), VerifyOptions{Checkpoints: cps, PublicKey: pub})
	if err != nil || res.OK() || res.Problems[0].Kind != ProblemRewritten || res.Problems[0].Seq != 30 {
		t.Fatalf("rewritten chain not caught by the checkpoint: %v\n%s", err, res.Summary())
	}
	res, _ = Verify(context.Background(), SliceStore(re).chainIter(), VerifyOptions{})
	if !res.OK() || len(res.Notes) == 0 {
		t.Fatalf("without checkpoints a consistent chain passes with a note; got\n%s", res.Summary())
	}
}

// TestVerifyReplicaChains: two replicas' chains, each checkpointed with a key of its
// own, verify together when each instance is checked with its key, and a checkpoint
// checked with the other replica's key is refused.
func TestVerifyReplicaChains(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	_, cpA, pubA := signedSpool(t, dirA, WithInstance("exchange-a"))
	_, cpB, pubB := signedSpool(t, dirB, WithInstance("exchange-b"))
	chains := func() Iterator {
		var its []Iterator
		for _, d := range []string{dirA, dirB} {
			st, err := OpenSpoolStore(d)
			if err != nil {
				t.Fatal(err)
			}
			it, err := st.Chain(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			its = append(its, it)
		}
		return MergeChains(its[0], its[1])
	}
	cps := append(append([]Checkpoint{}, cpA...), cpB...)
	res, err := Verify(context.Background(), chains(), VerifyOptions{Checkpoints: cps, CheckpointsGiven: true,
		PublicKey: pubA, Keys: map[string]ed25519.PublicKey{"exchange-a": pubA, "exchange-b": pubB}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Chains) != 2 {
		t.Fatalf("two intact replica chains: %d chains, problems %v", len(res.Chains), res.Problems)
	}
	res, err = Verify(context.Background(), chains(), VerifyOptions{Checkpoints: cps, CheckpointsGiven: true, PublicKey: pubA})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || res.Problems[0].Kind != ProblemCheckpoint || res.Problems[0].Instance != "exchange-b" {
		t.Fatalf("replica b's checkpoints checked with a's key: problems %v, want b's checkpoint refused", res.Problems)
	}
}
