package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sort"
	"strings"
)

// Problem kinds reported by Verify.
const (
	ProblemChanged    = "changed"    // an event's content no longer matches its hash
	ProblemRemoved    = "removed"    // sequence numbers are missing from the chain
	ProblemInserted   = "inserted"   // an event that is not part of the chain
	ProblemCut        = "cut"        // the chain ends before a signed checkpoint
	ProblemRewritten  = "rewritten"  // the chain disagrees with a signed checkpoint
	ProblemUnsigned   = "unsigned"   // an instance no checkpoint vouches for
	ProblemCheckpoint = "checkpoint" // a checkpoint whose signature is not valid
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

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	// Checkpoints to check the chains against; with none, only the chains' inner
	// consistency is checked (a cut tail or a wholly rewritten table go unnoticed).
	Checkpoints []Checkpoint
	PublicKey   ed25519.PublicKey
	// TrimmedStart accepts a chain that starts after seq 1: a spool deletes what was
	// shipped, so its chain starts wherever shipping left it.
	TrimmedStart bool
}

const maxProblems = 1000

// Verify walks the events of it, which must be ordered by instance and seq (a Store's
// Chain), recomputes every hash and link, and checks the chain heads against the
// signed checkpoints. Problems are reported in chain order: the first names the first
// event that was changed, removed or inserted.
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
		if opt.PublicKey == nil {
			return nil, fmt.Errorf("audit: checkpoints given without the public key that signed them (--pubkey)")
		}
		if !c.Valid(opt.PublicKey) {
			add(Problem{Kind: ProblemCheckpoint, Instance: c.Instance, Seq: c.Seq,
				Message: fmt.Sprintf("checkpoint of instance %s at seq %d has no valid signature: the checkpoint file was altered or signed with another key", c.Instance, c.Seq)})
			continue
		}
		if cps[c.Instance] == nil {
			cps[c.Instance] = map[uint64]Checkpoint{}
		}
		cps[c.Instance][c.Seq] = c
	}
	if len(opt.Checkpoints) == 0 {
		res.Notes = append(res.Notes, "no checkpoints given: only the chain's inner consistency was checked; a cut tail or a rewritten table would not be noticed")
	}

	var (
		cur     *ChainSummary
		prev    string // hash the next event must link to
		lastID  string
		group   []*Event // events sharing one (instance, seq)
		seen    = map[string]bool{}
		started bool
	)
	finish := func() {
		if cur == nil {
			return
		}
		var maxCp uint64
		for s := range cps[cur.Instance] {
			maxCp = max(maxCp, s)
		}
		if maxCp > cur.Last {
			add(Problem{Kind: ProblemCut, Instance: cur.Instance, Seq: cur.Last + 1,
				Message: fmt.Sprintf("chain of instance %s ends at seq %d (event %s) but a signed checkpoint covers seq %d: events %d..%d were cut from the log (or are not shipped yet)",
					cur.Instance, cur.Last, lastID, maxCp, cur.Last+1, maxCp)})
		}
		if len(opt.Checkpoints) > 0 && len(cps[cur.Instance]) == 0 {
			add(Problem{Kind: ProblemUnsigned, Instance: cur.Instance, Seq: cur.First,
				Message: fmt.Sprintf("instance %s (%d events) appears in no signed checkpoint: its events cannot be vouched for (a forged instance, or checkpoints from another key)", cur.Instance, cur.Events)})
		} else if len(opt.Checkpoints) > 0 && cur.Last > maxCp {
			cur.Unsigned = cur.Last - maxCp
		}
		res.Chains = append(res.Chains, *cur)
	}
	process := func(group, next []*Event) {
		first := group[0]
		if cur == nil || cur.Instance != first.Instance {
			finish()
			seen[first.Instance] = true
			cur = &ChainSummary{Instance: first.Instance, First: first.Seq}
			started = false
		}
		seq := first.Seq
		if !started {
			started = true
			switch {
			case opt.TrimmedStart:
				prev = first.PrevHash
				for _, e := range group {
					if e.ComputeHash() == e.Hash {
						prev = e.PrevHash
						break
					}
				}
				if seq > 1 {
					res.Notes = append(res.Notes, fmt.Sprintf("instance %s: the spool starts at seq %d; earlier events were shipped and are verified where they were shipped to", first.Instance, seq))
				}
			case seq != 1:
				add(Problem{Kind: ProblemRemoved, Instance: first.Instance, Seq: 1, EventID: first.EventID,
					Message: fmt.Sprintf("instance %s: events seq 1..%d are missing (removed) before event %s", first.Instance, seq-1, first.EventID)})
				prev = first.PrevHash
			default:
				prev = GenesisHash
			}
		} else if seq > cur.Last+1 {
			add(Problem{Kind: ProblemRemoved, Instance: first.Instance, Seq: cur.Last + 1,
				Message: fmt.Sprintf("instance %s: events seq %d..%d are missing (removed) between event %s (seq %d) and event %s (seq %d)",
					first.Instance, cur.Last+1, seq-1, lastID, cur.Last, first.EventID, seq)})
			prev = first.PrevHash // resynchronise so only the gap is reported
		}
		var good []*Event
		for _, e := range group {
			if e.PrevHash == prev && e.ComputeHash() == e.Hash {
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
				if e != chosen {
					add(Problem{Kind: ProblemInserted, Instance: e.Instance, Seq: e.Seq, EventID: e.EventID,
						Message: fmt.Sprintf("instance %s seq %d: event %s is not part of the chain (event %s is): it was inserted", e.Instance, e.Seq, e.EventID, chosen.EventID)})
				}
			}
		} else {
			for _, e := range group {
				switch {
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
	for it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := it.Event()
		if len(group) > 0 && (group[0].Instance != e.Instance || group[0].Seq != e.Seq) {
			if group[0].Instance > e.Instance || (group[0].Instance == e.Instance && group[0].Seq > e.Seq) {
				return nil, fmt.Errorf("audit: events are not ordered by instance and seq (at instance %s seq %d)", e.Instance, e.Seq)
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
	if held != nil {
		process(held, group)
	}
	if len(group) > 0 {
		process(group, nil)
	}
	finish()
	var missing []string
	for inst := range cps {
		if !seen[inst] {
			missing = append(missing, inst)
		}
	}
	sort.Strings(missing)
	for _, inst := range missing {
		if opt.TrimmedStart {
			continue // another instance's spool
		}
		var maxCp uint64
		for s := range cps[inst] {
			maxCp = max(maxCp, s)
		}
		add(Problem{Kind: ProblemCut, Instance: inst, Seq: 1,
			Message: fmt.Sprintf("instance %s has signed checkpoints up to seq %d but no events in the log: its events were removed", inst, maxCp)})
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
