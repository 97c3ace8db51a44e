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
// so it can follow a spool that is being written.
type segReader struct {
	dir   string
	want  uint64
	first uint64 // first seq of the open segment
	f     *os.File
	buf   []byte // unparsed bytes read from f
	off   int64  // offset in f just after buf
	chunk []byte
	all   bool // return every record in file order, even out-of-order ones (auditing)
}

func newSegReader(dir string, from uint64) *segReader {
	return &segReader{dir: dir, want: from, chunk: make([]byte, 1<<20)}
}

func (r *segReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
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
	magic := make([]byte, len(segMagic))
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != segMagic {
		f.Close()
		if err == nil {
			return fmt.Errorf("audit: %s is not a govx audit spool segment", p)
		}
		// A segment whose magic is not yet written is empty: read it again later.
		return errSegmentEmpty
	}
	r.f, r.first, r.buf, r.off = f, first, r.buf[:0], int64(len(segMagic))
	return nil
}

var errSegmentEmpty = errors.New("empty segment")

// next returns the next event with seq <= limit, or nil when there is none yet.
func (r *segReader) next(limit uint64) (*Event, error) {
	for {
		if r.want > limit {
			return nil, nil
		}
		if r.f == nil {
			ok, err := r.open()
			if errors.Is(err, errSegmentEmpty) {
				return nil, nil
			}
			if err != nil || !ok {
				return nil, err
			}
		}
		if payload, n := nextFrame(r.buf); n > 0 {
			ev, err := unmarshalRecord(payload)
			if err == nil {
				if ev.Seq > limit {
					return nil, nil
				}
				r.buf = r.buf[n:]
				if r.all {
					r.want = max(r.want, ev.Seq+1)
					return ev, nil
				}
				if ev.Seq < r.want {
					continue
				}
				r.want = ev.Seq + 1
				return ev, nil
			}
		}
		// Not a whole frame in the buffer: read more of the file.
		n, err := r.f.ReadAt(r.chunk, r.off)
		if n > 0 {
			r.buf = append(r.buf, r.chunk[:n]...)
			r.off += int64(n)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("audit: cannot read spool segment %s: %w", r.f.Name(), err)
		}
		// End of this segment's data. A newer segment means this one is finished (any
		// bytes left are a torn frame recovery already gave up on).
		segs, err := listSegments(r.dir)
		if err != nil {
			return nil, err
		}
		if i := slices.IndexFunc(segs, func(f uint64) bool { return f > r.first }); i >= 0 {
			if err := r.openSeg(segs[i]); err != nil {
				if errors.Is(err, errSegmentEmpty) {
					return nil, nil
				}
				return nil, err
			}
			continue
		}
		// Bytes left in r.buf are a frame being written right now, or a torn frame of a
		// spool that crashed and was not reopened: either way, nothing more yet.
		return nil, nil
	}
}
