package audit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"
)

// This file reads segment files the way an auditor and a careful opener must: every byte
// is accounted for. A frame is either whole and intact, or part of a damaged stretch that
// is named (file, offset, the last intact seq before it) — never silently taken for the
// end of the log. Reading resumes at the next intact frame after damage, which is found
// by the prefix every record payload starts with.

// recordPrefix starts every record payload: the length of canonicalVersion as a varint
// (one byte), then canonicalVersion itself.
var recordPrefix = append([]byte{byte(len(canonicalVersion))}, canonicalVersion...)

// Damage is a stretch of a segment file that does not hold whole, intact frames.
type Damage struct {
	File     string `json:"file"`
	Offset   int64  `json:"offset"`    // first damaged byte
	End      int64  `json:"end"`       // where intact frames start again (the file size when none do)
	AfterSeq uint64 `json:"after_seq"` // seq of the last intact event before it; 0 when none
	What     string `json:"what"`
	// Torn reports a final frame that runs past the end of the file with nothing after
	// it: what a crash in the middle of a write leaves, and the only damage an opener may
	// cut (the event was never acknowledged).
	Torn bool `json:"torn"`
}

func (d Damage) String() string {
	return fmt.Sprintf("%s bytes %d..%d (after seq %d): %s", d.File, d.Offset, d.End, d.AfterSeq, d.What)
}

// segItem is one thing found in a segment: an intact event, or damage (with the event
// the damaged frame still decodes to, when its length field held).
type segItem struct {
	ev     *Event
	off    int64 // offset of the frame in the file
	end    int64 // offset just after it
	damage *Damage
}

// walkSegment reads the segment file at path and calls fn for each item in file order.
// afterSeq is the seq of the last intact event before this file (for damage reports).
// A file whose magic is wrong or missing is reported as damage at offset 0.
func walkSegment(path string, afterSeq uint64, fn func(segItem) error) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("audit: cannot read spool segment %s: %w", path, err)
	}
	return walkSegmentBytes(path, data, afterSeq, fn)
}

func walkSegmentBytes(path string, data []byte, afterSeq uint64, fn func(segItem) error) error {
	if len(data) < len(segMagic) || string(data[:len(segMagic)]) != segMagic {
		d := &Damage{File: path, Offset: 0, End: int64(len(data)), AfterSeq: afterSeq}
		switch {
		case len(data) < len(segMagic) && bytes.HasPrefix([]byte(segMagic), data):
			// A rotation that crashed before its magic was durable: nothing was ever in it.
			d.What, d.Torn = "segment header not yet written (a crash while starting the segment)", true
			return fn(segItem{damage: d})
		default:
			d.What = "segment header is damaged (not a govx audit spool segment header)"
		}
		if r := resync(data, 1); r >= 0 {
			d.End = int64(r)
			if err := fn(segItem{damage: d}); err != nil {
				return err
			}
			return walkFrames(path, data, r, afterSeq, fn)
		}
		return fn(segItem{damage: d})
	}
	return walkFrames(path, data, len(segMagic), afterSeq, fn)
}

func walkFrames(path string, data []byte, off int, afterSeq uint64, fn func(segItem) error) error {
	for off < len(data) {
		if payload, n := nextFrame(data[off:]); n > 0 {
			if ev, err := unmarshalRecord(payload); err == nil {
				if err := fn(segItem{ev: ev, off: int64(off), end: int64(off + n)}); err != nil {
					return err
				}
				afterSeq = ev.Seq
				off += n
				continue
			}
		}
		d := &Damage{File: path, Offset: int64(off), AfterSeq: afterSeq}
		item := segItem{damage: d, off: int64(off)}
		rest := data[off:]
		next := resync(data, off+1)
		size := -1
		if len(rest) >= frameHeaderLen {
			size = int(binary.BigEndian.Uint32(rest))
		}
		switch {
		case next < 0 && (len(rest) < frameHeaderLen || size > len(rest)-frameHeaderLen):
			d.What, d.Torn = "a final frame that runs past the end of the file (a crash while writing it)", true
		case next < 0 && allZero(rest):
			d.What, d.Torn = "zero bytes after the last frame (a crash while writing it)", true
		case next < 0 && size == len(rest)-frameHeaderLen && len(rest) > 16 && allZero(rest[len(rest)-16:]):
			// The file system extended the file but the data never reached the disk: the
			// final frame ends in zeros where its hash should be.
			d.What, d.Torn = "a final frame whose content never reached the disk (a crash while writing it)", true
		case size > 0 && size <= maxFrame && len(rest) >= frameHeaderLen+size &&
			(off+frameHeaderLen+size == next || (next < 0 && off+frameHeaderLen+size == len(data))):
			// The length field held: exactly one frame's content is wrong. Decode it
			// anyway, so that verification can name the changed event.
			payload := rest[frameHeaderLen : frameHeaderLen+size]
			if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(rest[4:]) {
				d.What = "a frame whose CRC does not match its content"
			} else {
				d.What = "a frame whose content is not a valid record"
			}
			if ev, err := unmarshalRecord(payload); err == nil {
				item.ev = ev
			}
		default:
			d.What = "bytes that are not a whole frame (a damaged length field or header)"
		}
		if next < 0 {
			next = len(data)
		}
		d.End = int64(next)
		if err := fn(item); err != nil {
			return err
		}
		if item.ev != nil {
			afterSeq = item.ev.Seq
		}
		off = next
	}
	return nil
}

// resync returns the offset of the first intact frame that starts at or after from, or -1.
func resync(data []byte, from int) int {
	for from < len(data) {
		i := bytes.Index(data[from:], recordPrefix)
		if i < 0 {
			return -1
		}
		start := from + i - frameHeaderLen
		if start >= 0 {
			if payload, n := nextFrame(data[start:]); n > 0 {
				if _, err := unmarshalRecord(payload); err == nil {
					return start
				}
			}
		}
		from += i + 1
	}
	return -1
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// spoolState is what a full read of a spool directory found.
type spoolState struct {
	segs     []uint64 // first seq of each segment, in order
	last     *Event   // last intact event
	instance string   // the instance of the first intact event
	good     int64    // offset just after the last intact frame of the last segment
	damage   []Damage // every damaged stretch, in order
	gaps     []string // seq discontinuities between intact events
}

// readSpoolState reads every segment of dir, checking that frames are intact and that
// seq numbers run on without a gap from after (the shipped marker's seq, whose event has
// hash afterHash; "" when unknown).
func readSpoolState(dir string, after uint64, afterHash string, ck *Checkpoint) (*spoolState, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	st := &spoolState{segs: segs, good: int64(len(segMagic))}
	want, wantPrev := after+1, afterHash
	if len(segs) > 0 && segs[0] < want {
		// The spool still holds shipped events (only whole segments are trimmed): start
		// where it starts, and check the marker against the event it names on the way.
		want, wantPrev = segs[0], ""
		if want == 1 {
			wantPrev = GenesisHash
		}
	}
	for i, first := range segs {
		p := filepath.Join(dir, segName(first))
		lastSeg := i == len(segs)-1
		lastEnd := int64(len(segMagic))
		firstInSeg := true
		err := walkSegment(p, want-1, func(it segItem) error {
			if it.damage != nil {
				if !lastSeg {
					// Only the very end of the log can be torn by a crash.
					it.damage.Torn = false
				}
				st.damage = append(st.damage, *it.damage)
				return nil
			}
			ev := it.ev
			switch {
			case firstInSeg && ev.Seq != first:
				st.gaps = append(st.gaps, fmt.Sprintf("segment %s is named for seq %d but starts with seq %d", p, first, ev.Seq))
			case !continues(ev, want, wantPrev) && ev.Seq != want:
				st.gaps = append(st.gaps, fmt.Sprintf("%s offset %d holds seq %d where seq %d was expected (events are missing or out of order)", p, it.off, ev.Seq, want))
			case !continues(ev, want, wantPrev):
				st.gaps = append(st.gaps, fmt.Sprintf("%s offset %d: seq %d does not link to the event before it", p, it.off, ev.Seq))
			}
			firstInSeg = false
			if ck != nil && ev.Seq == ck.Seq && ev.Hash != ck.Hash {
				st.gaps = append(st.gaps, fmt.Sprintf("%s offset %d: seq %d is not the event this exchange signed a checkpoint for (%s): the spool was rewritten", p, it.off, ev.Seq, ck.Time.Format(time.RFC3339)))
			}
			if ev.Seq == after && afterHash != "" && ev.Hash != afterHash {
				st.gaps = append(st.gaps, fmt.Sprintf("%s offset %d: seq %d is not the event the shipped marker names", p, it.off, ev.Seq))
			}
			if st.last == nil {
				st.instance = ev.Instance
			}
			st.last = ev
			want, wantPrev = ev.Seq+1, ev.Hash
			lastEnd = it.end
			return nil
		})
		if err != nil {
			return nil, err
		}
		if lastSeg {
			st.good = lastEnd
		}
	}
	// Everything shipped and trimmed leaves one segment, with no event yet, named for the
	// event after the marker's: the segment a healed write or a new spool opened.
	drained := st.last == nil && len(segs) > 0 && segs[len(segs)-1] == after+1
	if after > 0 && !drained && (st.last == nil || st.last.Seq < after) {
		st.gaps = append(st.gaps, fmt.Sprintf("the shipped marker says events up to seq %d were shipped, but the spool ends before it (at seq %d): spool segments were removed", after, want-1))
	}
	if n := len(segs); n > 0 && st.good == int64(len(segMagic)) && len(st.damage) == 0 && segs[n-1] != want {
		// The newest segment holds no event, so the next one would be written into it;
		// the spool only ever names a segment for the event it starts with.
		st.gaps = append(st.gaps, fmt.Sprintf("segment %s holds no event but is named for seq %d, while the next event is seq %d: the spool did not make it; move it out of %s",
			filepath.Join(dir, segName(segs[n-1])), segs[n-1], want, dir))
	}
	return st, nil
}
