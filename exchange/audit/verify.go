package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Problem kinds reported by Verify.
const (
	ProblemChanged    = "changed"    // an event's content (or the bytes that held it) no longer matches
	ProblemRemoved    = "removed"    // sequence numbers are missing from the chain
	ProblemInserted   = "inserted"   // an event that is not part of the chain
	ProblemDuplicated = "duplicated" // an event stored twice in a spool
	ProblemReordered  = "reordered"  // an event stored out of seq order in a spool
	ProblemCut        = "cut"        // the chain ends before a signed checkpoint
	ProblemRewritten  = "rewritten"  // the chain disagrees with a signed checkpoint
	ProblemUnsigned   = "unsigned"   // an instance no checkpoint vouches for
	ProblemCheckpoint = "checkpoint" // a checkpoint (or shipped marker) whose signature is not valid
	ProblemGap        = "gap"        // events lost to damage, recorded by `govx audit repair`
	ProblemUnverified = "unverified" // events that left the spool for the sink, not checked here
)

// Problem is one finding of Verify.
type Problem struct {
	Kind     string `json:"kind"`
	Instance string `json:"instance"`
	Seq      uint64 `json:"seq"`
	EventID  string `json:"event_id,omitempty"`
	Message  string `json:"message"`
}

func (p Problem) String() string { return p.Kind + ": " + p.Message }

// ChainSummary describes one instance's chain as verified.
type ChainSummary struct {
	Instance    string `json:"instance"`
	First       uint64 `json:"first_seq"`
	Last        uint64 `json:"last_seq"`
	Events      int    `json:"events"`
	Checkpoints int    `json:"checkpoints_checked"` // checkpoints matched against the chain
	Unsigned    uint64 `json:"unsigned_tail"`       // events after the last checkpoint
}

// VerifyResult is the outcome of Verify. The log is intact when Problems is empty.
type VerifyResult struct {
	Chains   []ChainSummary `json:"chains"`
	Problems []Problem      `json:"problems"`
	Notes    []string       `json:"notes"`
}

// OK reports whether no problem was found.
func (r *VerifyResult) OK() bool { return len(r.Problems) == 0 }

// SpoolSource says that the chain comes from one instance's spool, alone or merged with
// the sink's copy ([MergeChains]).
type SpoolSource struct {
	Instance string
	// Shipped is the spool's marker: events up to Shipped.Seq may have left the spool
	// for the sink. Without the sink's copy they are reported as unverified.
	Shipped *ShippedMarker
	// WithSink reports that the sink's events are part of the chain (every instance
	// the checkpoints name is then expected in it).
	WithSink bool
}

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	// Checkpoints to check the chains against; with none, only the chains' inner
	// consistency is checked (a clean cut of the tail goes unnoticed).
	Checkpoints []Checkpoint
	// CheckpointsGiven says a checkpoint file was given, even if it held none: an
	// exchange signs one as soon as it opens its spool, so an empty file was emptied.
	CheckpointsGiven bool
	PublicKey        ed25519.PublicKey
	// Keys, when set, names the key that signs each instance's checkpoints (replicas
	// signing with keys of their own); an instance not in it is checked with PublicKey.
	Keys map[string]ed25519.PublicKey
	// Spool is set when the chain comes from a spool (see SpoolSource).
	Spool *SpoolSource
	// AllowUnverifiedShipped turns the events a spool shipped to its sink, when the sink
	// is not part of the chain, from a problem into a note.
	AllowUnverifiedShipped bool
}

const maxProblems = 1000

// Verify walks the events of it, which must be ordered by instance and seq (a Store's
// Chain, or [MergeChains] of two), recomputes every hash and link, and checks the chain
// heads against the signed checkpoints. Problems are reported in chain order: the first
// names the first event that was changed, removed, inserted, duplicated or reordered.
func Verify(ctx context.Context, it Iterator, opt VerifyOptions) (*VerifyResult, error) {
	defer it.Close()
	res := &VerifyResult{}
	add := func(p Problem) {
		if len(res.Problems) < maxProblems {
			res.Problems = append(res.Problems, p)
		}
	}
	cps := map[string]map[uint64]Checkpoint{}
	for _, c := range opt.Checkpoints {
		key := opt.PublicKey
		if k, ok := opt.Keys[c.Instance]; ok {
			key = k
		}
		if key == nil {
			return nil, fmt.Errorf("audit: checkpoints given without the public key that signed them (--pubkey)")
		}
		if !c.Valid(key) {
			add(Problem{Kind: ProblemCheckpoint, Instance: c.Instance, Seq: c.Seq,
				Message: fmt.Sprintf("checkpoint of instance %s at seq %d has no valid signature: the checkpoint file was altered or signed with another key", c.Instance, c.Seq)})
			continue
		}
		if cps[c.Instance] == nil {
			cps[c.Instance] = map[uint64]Checkpoint{}
		}
		cps[c.Instance][c.Seq] = c
	}
	if opt.CheckpointsGiven && len(opt.Checkpoints) == 0 {
		add(Problem{Kind: ProblemCheckpoint, Message: "the checkpoint file holds no checkpoint: an exchange signs one as soon as it opens its spool, so the file was emptied or is not this log's; nothing can be vouched for"})
	}
	if !opt.CheckpointsGiven && len(opt.Checkpoints) == 0 {
		res.Notes = append(res.Notes, "no checkpoints given: every change, removal, insertion and reordering inside the chain is checked, "+
			"but a clean cut of the tail (the newest events removed) can only be detected with the signed checkpoints (--checkpoints, --pubkey)")
	}
	maxCheckpoint := func(inst string) uint64 {
		var m uint64
		for s := range cps[inst] {
			m = max(m, s)
		}
		return m
	}
	var shipped *ShippedMarker
	if sp := opt.Spool; sp != nil && sp.Shipped != nil && sp.Shipped.Instance == sp.Instance {
		shipped = sp.Shipped
		if opt.PublicKey != nil && !shipped.Valid(opt.PublicKey) {
			add(Problem{Kind: ProblemCheckpoint, Instance: shipped.Instance, Seq: shipped.Seq,
				Message: fmt.Sprintf("the spool's shipped marker (events up to seq %d) has no valid signature: it was written by someone else than the exchange", shipped.Seq)})
			shipped = nil
		}
	}
	// shippedBefore accounts for events 1..upTo of inst that are not in the chain
	// because they left the spool for the sink; it reports whether the marker covers them.
	shippedBefore := func(inst string, upTo uint64) bool {
		if opt.Spool == nil || opt.Spool.WithSink || shipped == nil || inst != opt.Spool.Instance || shipped.Seq < upTo {
			return false
		}
		msg := fmt.Sprintf("instance %s: events seq 1..%d left the spool for the audit store (shipped marker of %s); they were not verified here: verify them with --clickhouse",
			inst, upTo, shipped.Time.Format(time.RFC3339))
		if opt.AllowUnverifiedShipped {
			res.Notes = append(res.Notes, msg)
		} else {
			add(Problem{Kind: ProblemUnverified, Instance: inst, Seq: 1, Message: msg + ", or accept that with --allow-unverified-shipped"})
		}
		return true
	}

	var (
		cur     *ChainSummary
		prev    string // hash the next event must link to
		lastID  string
		group   []*Event // events sharing one (instance, seq)
		seen    = map[string]bool{}
		started bool
		resync  bool // after damage: take the next event's link as given
	)
	finish := func() {
		if cur == nil {
			return
		}
		maxCp := maxCheckpoint(cur.Instance)
		if maxCp > cur.Last {
			add(Problem{Kind: ProblemCut, Instance: cur.Instance, Seq: cur.Last + 1,
				Message: fmt.Sprintf("chain of instance %s ends at seq %d (event %s) but a signed checkpoint covers seq %d: events %d..%d were cut from the log (or are not shipped yet)",
					cur.Instance, cur.Last, lastID, maxCp, cur.Last+1, maxCp)})
		}
		if (opt.CheckpointsGiven || len(opt.Checkpoints) > 0) && len(cps[cur.Instance]) == 0 {
			add(Problem{Kind: ProblemUnsigned, Instance: cur.Instance, Seq: cur.First,
				Message: fmt.Sprintf("instance %s (%d events) appears in no signed checkpoint: its events cannot be vouched for (a forged instance, or checkpoints from another key)", cur.Instance, cur.Events)})
		} else if len(opt.Checkpoints) > 0 && cur.Last > maxCp {
			cur.Unsigned = cur.Last - maxCp
		}
		res.Chains = append(res.Chains, *cur)
	}
	enter := func(inst string, seq uint64) {
		if cur == nil || cur.Instance != inst {
			finish()
			seen[inst] = true
			cur = &ChainSummary{Instance: inst, First: seq}
			started, resync, prev, lastID = false, false, "", ""
		}
	}
	damaged := func(e *Event) {
		d := e.damage
		if e.EventID != "" {
			add(Problem{Kind: ProblemChanged, Instance: e.Instance, Seq: e.Seq, EventID: e.EventID,
				Message: fmt.Sprintf("instance %s seq %d: event %s was changed: %s", e.Instance, e.Seq, e.EventID, d)})
			return
		}
		add(Problem{Kind: ProblemChanged, Instance: e.Instance, Seq: d.AfterSeq + 1,
			Message: fmt.Sprintf("instance %s: %s, so the event(s) stored there after seq %d were changed", e.Instance, d, d.AfterSeq)})
	}
	process := func(group, next []*Event) {
		first := group[0]
		enter(first.Instance, first.Seq)
		seq := first.Seq
		gap := first.Kind == KindGap && first.Rows > 0 && first.Rows < seq
		switch {
		case gap:
			lost := seq - first.Rows
			if !started && lost > 1 && !shippedBefore(first.Instance, lost-1) {
				add(Problem{Kind: ProblemRemoved, Instance: first.Instance, Seq: 1, EventID: first.EventID,
					Message: fmt.Sprintf("instance %s: events seq 1..%d are missing (removed) before event %s", first.Instance, lost-1, first.EventID)})
			} else if started && lost > cur.Last+1 {
				add(Problem{Kind: ProblemRemoved, Instance: first.Instance, Seq: cur.Last + 1,
					Message: fmt.Sprintf("instance %s: events seq %d..%d are missing (removed) before the repair record %s", first.Instance, cur.Last+1, lost-1, first.EventID)})
			}
			add(Problem{Kind: ProblemGap, Instance: first.Instance, Seq: lost, EventID: first.EventID,
				Message: fmt.Sprintf("instance %s: events seq %d..%d were lost to damage and set aside by `govx audit repair` at %s (event %s): %s",
					first.Instance, lost, seq-1, first.Time.Format(time.RFC3339), first.EventID, strings.Join(first.Reasons, "; "))})
			if !started {
				prev = first.PrevHash
			}
		case !started && resync:
		case !started && seq != 1:
			if !shippedBefore(first.Instance, seq-1) {
				add(Problem{Kind: ProblemRemoved, Instance: first.Instance, Seq: 1, EventID: first.EventID,
					Message: fmt.Sprintf("instance %s: events seq 1..%d are missing (removed) before event %s", first.Instance, seq-1, first.EventID)})
			}
			prev = first.PrevHash
			if shipped != nil && shipped.Seq == seq-1 && first.Instance == shipped.Instance {
				prev = shipped.Hash // the first spooled event must link to the last shipped one
			}
		case !started:
			prev = GenesisHash
		case seq > cur.Last+1 && !resync:
			add(Problem{Kind: ProblemRemoved, Instance: first.Instance, Seq: cur.Last + 1,
				Message: fmt.Sprintf("instance %s: events seq %d..%d are missing (removed) between event %s (seq %d) and event %s (seq %d)",
					first.Instance, cur.Last+1, seq-1, lastID, cur.Last, first.EventID, seq)})
			prev = first.PrevHash // resynchronise so only the gap is reported
		}
		if resync {
			prev, resync = first.PrevHash, false
		}
		if !started {
			started = true
			cur.First = seq
		}
		for _, e := range group {
			if e.misplaced != "" {
				add(Problem{Kind: ProblemReordered, Instance: e.Instance, Seq: e.Seq, EventID: e.EventID,
					Message: fmt.Sprintf("instance %s seq %d: event %s is stored out of order (%s): events were reordered", e.Instance, e.Seq, e.EventID, e.misplaced)})
			}
		}
		var good []*Event
		for _, e := range group {
			if e.damage == nil && e.PrevHash == prev && e.ComputeHash() == e.Hash {
				good = append(good, e)
			}
		}
		var chosen *Event
		if len(good) > 0 {
			chosen = good[0]
		}
		if len(good) > 1 {
			// A forger who linked an extra event to the chain is exposed by what follows:
			// the next event (or a checkpoint) links to the original only.
			for _, g := range good {
				if c, ok := cps[g.Instance][g.Seq]; ok && c.Hash == g.Hash {
					chosen = g
				}
				for _, n := range next {
					if n.Instance == g.Instance && n.PrevHash == g.Hash {
						chosen = g
					}
				}
			}
		}
		if chosen != nil {
			for _, e := range group {
				switch {
				case e == chosen:
				case e.damage != nil:
					damaged(e)
				case e.EventID == chosen.EventID && e.Hash == chosen.Hash:
					add(Problem{Kind: ProblemDuplicated, Instance: e.Instance, Seq: e.Seq, EventID: e.EventID,
						Message: fmt.Sprintf("instance %s seq %d: event %s is stored twice: a copy was inserted", e.Instance, e.Seq, e.EventID)})
				default:
					add(Problem{Kind: ProblemInserted, Instance: e.Instance, Seq: e.Seq, EventID: e.EventID,
						Message: fmt.Sprintf("instance %s seq %d: event %s is not part of the chain (event %s is): it was inserted", e.Instance, e.Seq, e.EventID, chosen.EventID)})
				}
			}
		} else {
			for _, e := range group {
				switch {
				case e.damage != nil:
					damaged(e)
					resync = true
				case e.ComputeHash() != e.Hash:
					add(Problem{Kind: ProblemChanged, Instance: e.Instance, Seq: e.Seq, EventID: e.EventID,
						Message: fmt.Sprintf("instance %s seq %d: event %s does not match its hash: its content was changed", e.Instance, e.Seq, e.EventID)})
				case len(group) > 1:
					add(Problem{Kind: ProblemInserted, Instance: e.Instance, Seq: e.Seq, EventID: e.EventID,
						Message: fmt.Sprintf("instance %s seq %d: event %s does not link to the chain: it was inserted", e.Instance, e.Seq, e.EventID)})
				default:
					add(Problem{Kind: ProblemChanged, Instance: e.Instance, Seq: e.Seq, EventID: e.EventID,
						Message: fmt.Sprintf("instance %s seq %d: event %s does not link to the event before it: it replaced the original event, or the one before it was changed and rehashed", e.Instance, e.Seq, e.EventID)})
				}
			}
			chosen = group[0]
		}
		if c, ok := cps[chosen.Instance][seq]; ok {
			if c.Hash != chosen.Hash {
				add(Problem{Kind: ProblemRewritten, Instance: chosen.Instance, Seq: seq, EventID: chosen.EventID,
					Message: fmt.Sprintf("instance %s seq %d: event %s has hash %s but the checkpoint signed at %s says %s: the log up to here was rewritten",
						chosen.Instance, seq, chosen.EventID, short(chosen.Hash), c.Time.Format("2006-01-02 15:04:05Z07:00"), short(c.Hash))})
			}
			cur.Checkpoints++
		}
		prev = chosen.Hash
		lastID = chosen.EventID
		cur.Last = seq
		cur.Events++
	}
	var held []*Event // the group before group: processed once its successor is known
	flush := func() {
		if held != nil {
			process(held, group)
		}
		if len(group) > 0 {
			process(group, nil)
		}
		held, group = nil, nil
	}
	for it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := it.Event()
		if e.damage != nil && e.EventID == "" {
			// Bytes that hold no readable event: everything before them is settled.
			flush()
			enter(e.Instance, e.damage.AfterSeq+1)
			if e.damage.Torn {
				// A crash in the middle of a write: that event was never acknowledged. Had
				// it been, a checkpoint covers it and the chain is reported cut.
				res.Notes = append(res.Notes, fmt.Sprintf("instance %s: %s; the exchange cuts it (keeping the bytes aside) when it opens the spool", e.Instance, e.damage))
				continue
			}
			damaged(e)
			resync = true
			continue
		}
		if len(group) > 0 && (group[0].Instance != e.Instance || group[0].Seq != e.Seq) {
			if group[0].Instance > e.Instance || (group[0].Instance == e.Instance && group[0].Seq > e.Seq) {
				// Further out of place than a spool reader's window: still a finding, not
				// a reason to stop.
				add(Problem{Kind: ProblemReordered, Instance: e.Instance, Seq: e.Seq, EventID: e.EventID,
					Message: fmt.Sprintf("instance %s seq %d: event %s is stored far out of order (after seq %d): events were reordered", e.Instance, e.Seq, e.EventID, group[0].Seq)})
				continue
			}
			if held != nil {
				process(held, group)
			}
			held, group = group, nil
		}
		group = append(group, e)
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	flush()
	finish()
	// Instances expected in the chain but absent from it.
	expected := map[string]bool{}
	for inst := range cps {
		// A spool whose instance file is gone cannot say which chain it held: every
		// checkpointed instance is expected then.
		if opt.Spool == nil || opt.Spool.WithSink || inst == opt.Spool.Instance || opt.Spool.Instance == "" {
			expected[inst] = true
		}
	}
	if opt.Spool != nil && opt.Spool.Instance != "" {
		expected[opt.Spool.Instance] = true
	}
	var missing []string
	for inst := range expected {
		if !seen[inst] {
			missing = append(missing, inst)
		}
	}
	sort.Strings(missing)
	for _, inst := range missing {
		maxCp := maxCheckpoint(inst)
		var from uint64 = 1
		if shipped != nil && shipped.Instance == inst && shipped.Seq > 0 && shippedBefore(inst, shipped.Seq) {
			from = shipped.Seq + 1
		}
		if maxCp >= from {
			add(Problem{Kind: ProblemCut, Instance: inst, Seq: from,
				Message: fmt.Sprintf("instance %s has signed checkpoints up to seq %d but events %d..%d are not in the log: they were removed", inst, maxCp, from, maxCp)})
		}
	}
	return res, nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// Summary returns a one-paragraph human summary of the result.
func (r *VerifyResult) Summary() string {
	var b strings.Builder
	if r.OK() {
		b.WriteString("OK: the audit log is intact\n")
	} else {
		fmt.Fprintf(&b, "FAILED: %d problem(s); the first:\n  %s\n", len(r.Problems), r.Problems[0])
	}
	for _, c := range r.Chains {
		fmt.Fprintf(&b, "instance %s: %d events, seq %d..%d, %d checkpoint(s) matched", c.Instance, c.Events, c.First, c.Last, c.Checkpoints)
		if c.Unsigned > 0 {
			fmt.Fprintf(&b, ", %d event(s) after the last checkpoint", c.Unsigned)
		}
		b.WriteString("\n")
	}
	if len(r.Problems) > 1 {
		b.WriteString("all problems:\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  %s\n", p)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}
