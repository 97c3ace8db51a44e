package audit

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RepairOptions configures Repair.
type RepairOptions struct {
	// Key signs a checkpoint at the gap event (the exchange's checkpoint key), appended
	// to CheckpointFile. Checkpoints already in that file also bound the lost range: a
	// checkpoint names a seq that existed.
	Key            ed25519.PrivateKey
	CheckpointFile string
	Now            time.Time // default time.Now()
}

// RepairResult says what Repair did. Repaired is false when the spool needed nothing.
type RepairResult struct {
	Repaired bool
	Problem  string // the first damage or gap found
	LostFrom uint64 // the first seq no longer in the live chain
	LostTo   uint64 // the last one
	MovedTo  string // directory holding the set-aside segments, untouched
	Gap      *Event // the gap event written; nil when nothing was lost
	Fixed    string // when nothing was lost: what was done instead of recording a gap
}

// Repair makes a spool that OpenSpool refuses usable again without destroying anything:
// the segment holding the first damage or gap, and every segment after it, are moved
// (renamed, byte for byte) into a new directory beside the segments; the intact frames
// before the damage are copied back as the live segment; and a gap event, linked to the
// last intact event and numbered after every seq that may have existed (the highest seq
// set aside or named by a checkpoint), records the lost range in the chain, so that
// verify reports the repair from then on. The exchange must not be running.
func Repair(dir string, opt RepairOptions) (*RepairResult, error) {
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	b, err := os.ReadFile(filepath.Join(dir, instanceName))
	if err != nil {
		return nil, fmt.Errorf("audit: %s is not an audit spool (no %s file): %w", dir, instanceName, err)
	}
	instance := strings.TrimSpace(string(b))
	lock, err := lockSpool(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	m, err := ReadShippedMarker(dir)
	if err != nil {
		return nil, err
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	// Walk the live chain until the first problem, remembering where it is.
	var (
		badSeg      = -1
		badOff      int64
		problem     string
		highest     uint64 // highest seq seen anywhere, intact or set aside
		want        uint64 = 1
		lastHash           = GenesisHash
		shippedSeq  uint64
		shippedHash string
	)
	if m != nil {
		shippedSeq, shippedHash = m.Seq, m.Hash
		want, lastHash = m.Seq+1, m.Hash
	}
	if len(segs) > 0 && segs[0] < want {
		want, lastHash = segs[0], ""
		if want == 1 {
			lastHash = GenesisHash
		}
	}
	newestEmpty := false    // the newest segment holds no event
	var misnamed *[2]uint64 // a segment's name and the seq it starts with
	for i, first := range segs {
		p := filepath.Join(dir, segName(first))
		firstInSeg := true
		newestEmpty = i == len(segs)-1
		err := walkSegment(p, want-1, func(it segItem) error {
			newestEmpty = false
			if it.ev != nil {
				highest = max(highest, it.ev.Seq)
			}
			if badSeg >= 0 {
				return nil // set aside: only the highest seq matters
			}
			if it.damage != nil {
				if it.damage.Torn && i == len(segs)-1 {
					return nil // OpenSpool cuts a torn final frame itself
				}
				badSeg, badOff = i, it.damage.Offset
				problem = it.damage.String()
				return nil
			}
			ev := it.ev
			named := !firstInSeg || ev.Seq == first
			firstInSeg = false
			if !named && misnamed == nil && continues(ev, want, lastHash) {
				// Whole and in order, only under another name: the name is put back below,
				// nothing is recorded as lost.
				misnamed = &[2]uint64{first, ev.Seq}
				named = true
			}
			if !named || !continues(ev, want, lastHash) || (ev.Seq == shippedSeq && ev.Hash != shippedHash) {
				badSeg, badOff = i, it.off
				problem = fmt.Sprintf("%s offset %d holds seq %d where seq %d, linked to the event before it, was expected", p, it.off, ev.Seq, want)
				return nil
			}
			want, lastHash = ev.Seq+1, ev.Hash
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if badSeg < 0 && shippedSeq > 0 && want-1 < shippedSeq {
		problem = fmt.Sprintf("the shipped marker says events up to seq %d were shipped, but the spool ends at seq %d", shippedSeq, want-1)
		badSeg, badOff = len(segs), 0
	}
	// Checkpoints name seqs that existed: one beyond the spool's end means events were
	// removed from the end, which the exchange refuses just as it refuses damage.
	var signed uint64
	if opt.CheckpointFile != "" {
		if cps, err := ReadCheckpoints(opt.CheckpointFile); err == nil {
			for _, c := range cps {
				if c.Instance == instance && (opt.Key == nil || c.Valid(opt.Key.Public().(ed25519.PublicKey))) {
					signed = max(signed, c.Seq)
				}
			}
		} else if _, serr := os.Stat(opt.CheckpointFile); serr == nil {
			return nil, err // there, but unreadable: do not guess the lost range
		}
	}
	highest = max(highest, signed)
	if badSeg < 0 && signed > want-1 {
		problem = fmt.Sprintf("the spool ends at seq %d but a checkpoint covers seq %d", want-1, signed)
		badSeg, badOff = len(segs), 0
	}
	if badSeg < 0 && misnamed != nil {
		from, to := filepath.Join(dir, segName(misnamed[0])), filepath.Join(dir, segName(misnamed[1]))
		if _, err := os.Lstat(to); err == nil {
			return nil, fmt.Errorf("audit: segment %s starts with seq %d, but %s exists too: move one of them out of the spool and run repair again", from, misnamed[1], to)
		}
		if err := os.Rename(from, to); err != nil {
			return nil, fmt.Errorf("audit: cannot give %s its name back: %w", from, err)
		}
		if err := syncDir(dir); err != nil {
			return nil, err
		}
		return &RepairResult{Repaired: true, Fixed: "its events are whole and in order; renamed " + filepath.Base(from) + " to " + filepath.Base(to),
			Problem: fmt.Sprintf("segment %s is named for seq %d but starts with seq %d", from, misnamed[0], misnamed[1])}, nil
	}
	if badSeg < 0 && newestEmpty && segs[len(segs)-1] != want {
		// An empty segment the spool did not make (it names every segment for the event
		// it starts with): the next event would go into it under the wrong name. It
		// holds nothing, so nothing is lost: it is only set aside.
		name := segName(segs[len(segs)-1])
		aside, err := setAside(dir, opt.Now, []string{name})
		if err != nil {
			return nil, err
		}
		return &RepairResult{Repaired: true, MovedTo: aside, Fixed: "the segment held no event; set aside in " + aside,
			Problem: fmt.Sprintf("segment %s holds no event but is named for seq %d, while the next event is seq %d", name, segs[len(segs)-1], want)}, nil
	}
	if badSeg < 0 {
		return &RepairResult{}, nil
	}
	lastSeq, prevHash := want-1, lastHash
	if lastHash == "" {
		return nil, fmt.Errorf("audit: spool %s: %s, before any event whose hash is known; move the spool aside and start a new one", dir, problem)
	}
	highest = max(highest, lastSeq, shippedSeq)
	res := &RepairResult{Repaired: true, Problem: problem, LostFrom: lastSeq + 1, LostTo: highest}

	// Set aside the damaged segment and everything after it, renamed, never rewritten.
	aside := "(nothing left in the spool to set aside)"
	if badSeg < len(segs) {
		var names []string
		for _, first := range segs[badSeg:] {
			names = append(names, segName(first))
		}
		if aside, err = setAside(dir, opt.Now, names); err != nil {
			return nil, err
		}
		res.MovedTo = aside
	}
	// The intact frames before the damage stay in the live chain: copy them back.
	if badSeg < len(segs) && badOff > int64(len(segMagic)) {
		name := segName(segs[badSeg])
		data, err := os.ReadFile(filepath.Join(aside, name))
		if err != nil {
			return nil, err
		}
		if err := writeFileSync(dir, name, data[:badOff]); err != nil {
			return nil, fmt.Errorf("audit: cannot copy the intact part of %s back: %w", name, err)
		}
	}
	gap := &Event{
		EventID:  NewEventID(),
		Kind:     KindGap,
		Time:     opt.Now.UTC().Truncate(time.Millisecond),
		Instance: instance,
		Seq:      highest + 1,
		Action:   "repair",
		Rows:     highest - lastSeq,
		Status:   StatusError,
		Error:    "spool_damaged",
		Reasons: []string{
			"damage: " + problem,
			fmt.Sprintf("lost from the live chain: seq %d..%d", lastSeq+1, highest),
			"set aside intact in " + aside,
		},
		PrevHash: prevHash,
	}
	buf, err := appendChainedFrame([]byte(segMagic), gap)
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(dir, segName(gap.Seq), buf); err != nil {
		return nil, fmt.Errorf("audit: cannot write the gap event: %w", err)
	}
	res.Gap = gap
	if opt.Key != nil && opt.CheckpointFile != "" {
		c := Checkpoint{Instance: instance, Seq: gap.Seq, Hash: gap.Hash, Time: opt.Now.UTC().Truncate(time.Millisecond)}
		c.Sign(opt.Key)
		if err := appendCheckpoint(opt.CheckpointFile, &c); err != nil {
			return nil, fmt.Errorf("audit: gap event written, but its checkpoint could not be: %w", err)
		}
	}
	return res, nil
}

// continues reports whether ev is the event that may follow the chain whose next seq is
// want and whose last hash is prev ("" when unknown): the next seq, linked, or a gap
// event of a repair that accounts for the seqs in between.
func continues(ev *Event, want uint64, prev string) bool {
	if prev != "" && ev.PrevHash != prev {
		return false
	}
	if ev.Seq == want {
		return true
	}
	return ev.Kind == KindGap && ev.Rows > 0 && ev.Rows < ev.Seq && ev.Seq-ev.Rows == want
}

// setAside moves the named segments of dir, renamed and never rewritten, into a new
// directory damaged-<now> beside them, and returns it.
func setAside(dir string, now time.Time, names []string) (string, error) {
	aside := filepath.Join(dir, "damaged-"+now.UTC().Format("20060102T150405Z"))
	if err := os.Mkdir(aside, 0o700); err != nil {
		return "", fmt.Errorf("audit: cannot create %s to set segments aside: %w", aside, err)
	}
	for _, name := range names {
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(aside, name)); err != nil {
			return "", fmt.Errorf("audit: cannot move %s aside: %w", name, err)
		}
	}
	return aside, syncDir(dir)
}
