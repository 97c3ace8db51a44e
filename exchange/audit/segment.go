package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// A segment file is the magic "GOVXAUD1" followed by frames: a uint32 payload length, a
// uint32 CRC-32C of the payload (both big-endian), and the payload (see
// Event.marshalRecord). A crash can only tear the last frames of the last segment; the
// CRC tells a torn frame from a whole one.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const maxFrame = 16 << 20 // far above any real event; a larger length is damage

func appendFrame(b []byte, ev *Event) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, frameHeaderLen)...)
	b, err := ev.marshalRecord(b)
	if err != nil {
		return b[:start], err
	}
	payload := b[start+frameHeaderLen:]
	if len(payload) > maxFrame {
		return b[:start], fmt.Errorf("audit: event %s is %d bytes, more than the %d a spool record may hold", ev.EventID, len(payload), maxFrame)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b, nil
}

// appendChainedFrame sets ev.Hash from ev.PrevHash and appends ev's frame, encoding the
// event once for both the hash and the record (the writer's hot path).
func appendChainedFrame(b []byte, ev *Event) ([]byte, error) {
	prev, err := hex.DecodeString(ev.PrevHash)
	if err != nil || len(prev) != sha256.Size {
		return b, fmt.Errorf("audit: event %s has a malformed prev_hash", ev.EventID)
	}
	start := len(b)
	b = append(b, make([]byte, frameHeaderLen)...)
	b = ev.appendCanonical(b)
	h := sha256.New()
	h.Write(prev)
	h.Write(b[start+frameHeaderLen:])
	b = append(b, prev...)
	b = h.Sum(b)
	ev.Hash = hex.EncodeToString(b[len(b)-sha256.Size:])
	payload := b[start+frameHeaderLen:]
	if len(payload) > maxFrame {
		return b[:start], fmt.Errorf("audit: event %s is %d bytes, more than the %d a spool record may hold", ev.EventID, len(payload), maxFrame)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b, nil
}

// nextFrame returns the payload of the frame at the start of data and the frame's total
// length, or n == 0 when data does not start with a whole, intact frame.
func nextFrame(data []byte) (payload []byte, n int) {
	if len(data) < frameHeaderLen {
		return nil, 0
	}
	size := binary.BigEndian.Uint32(data)
	if size == 0 || size > maxFrame || int(size) > len(data)-frameHeaderLen {
		return nil, 0
	}
	payload = data[frameHeaderLen : frameHeaderLen+int(size)]
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(data[4:]) {
		return nil, 0
	}
	return payload, frameHeaderLen + int(size)
}

// segReader reads spooled events in sequence order across segments, starting at seq
// want. It never reads beyond a limit the caller gives (the durable sequence number),
// so it can follow a spool that is being written. It reads into one buffer it reuses and
// decodes into events the caller owns, so following the spool allocates one string per
// event (see decodeRecord) and nothing per read.
type segReader struct {
	dir     string
	want    uint64
	first   uint64 // first seq of the open segment
	f       *os.File
	buf     []byte // bytes read from f; buf[lo:hi] are not parsed yet
	lo, hi  int
	off     int64 // offset in f just after buf[:hi]
	scratch []byte
}

func newSegReader(dir string, from uint64) *segReader {
	return &segReader{dir: dir, want: from, buf: make([]byte, 1<<20)}
}

func (r *segReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// seek makes the next event read the one with seq from, e.g. to send a shipment again.
func (r *segReader) seek(from uint64) {
	r.close()
	r.want = from
}

// open opens the segment that holds r.want (or the first one after it).
func (r *segReader) open() (bool, error) {
	segs, err := listSegments(r.dir)
	if err != nil {
		return false, err
	}
	if len(segs) == 0 {
		return false, nil
	}
	pick := segs[0]
	for _, s := range segs {
		if s <= r.want {
			pick = s
		}
	}
	return true, r.openSeg(pick)
}

func (r *segReader) openSeg(first uint64) error {
	r.close()
	p := filepath.Join(r.dir, segName(first))
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("audit: cannot open spool segment %s: %w", p, err)
	}
	var magic [len(segMagic)]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != segMagic {
		f.Close()
		if err == nil {
			return fmt.Errorf("audit: %s is not a govx audit spool segment", p)
		}
		// A segment whose magic is not yet written is empty: read it again later.
		return errSegmentEmpty
	}
	r.f, r.first, r.lo, r.hi, r.off = f, first, 0, 0, int64(len(segMagic))
	return nil
}

var errSegmentEmpty = errors.New("empty segment")

// next decodes the next event with seq <= limit into e (lists from *slab, see
// decodeRecord) and reports whether there was one.
func (r *segReader) next(limit uint64, e *Event, slab *[]string) (bool, error) {
	for {
		if r.want > limit {
			return false, nil
		}
		if r.f == nil {
			ok, err := r.open()
			if errors.Is(err, errSegmentEmpty) {
				return false, nil
			}
			if err != nil || !ok {
				return false, err
			}
		}
		if payload, n := nextFrame(r.buf[r.lo:r.hi]); n > 0 {
			seq, ok := recordSeq(payload)
			if ok && seq > limit {
				return false, nil
			}
			if ok && seq < r.want { // before where reading starts: not decoded
				r.lo += n
				continue
			}
			if !ok || decodeRecord(e, payload, &r.scratch, slab) != nil {
				return false, fmt.Errorf("audit: spool segment %s holds an intact frame at offset %d that is not a valid record (run `govx audit verify`)",
					r.f.Name(), r.off-int64(r.hi-r.lo))
			}
			r.lo += n
			r.want = seq + 1
			return true, nil
		}
		// Not a whole frame in the buffer: keep what is left and read more of the file.
		if r.lo > 0 {
			r.hi = copy(r.buf, r.buf[r.lo:r.hi])
			r.lo = 0
		}
		if r.hi == len(r.buf) { // a frame larger than the buffer
			r.buf = append(r.buf, make([]byte, len(r.buf))...)
		}
		n, err := r.f.ReadAt(r.buf[r.hi:], r.off)
		if n > 0 {
			r.hi += n
			r.off += int64(n)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("audit: cannot read spool segment %s: %w", r.f.Name(), err)
		}
		// End of this segment's data. A newer segment means this one is finished (any
		// bytes left are a torn frame recovery already gave up on).
		segs, err := listSegments(r.dir)
		if err != nil {
			return false, err
		}
		if i := slices.IndexFunc(segs, func(f uint64) bool { return f > r.first }); i >= 0 {
			if err := r.openSeg(segs[i]); err != nil {
				if errors.Is(err, errSegmentEmpty) {
					return false, nil
				}
				return false, err
			}
			continue
		}
		// Bytes left in the buffer are a frame being written right now, or a torn frame of
		// a spool that crashed and was not reopened: either way, nothing more yet.
		return false, nil
	}
}
