package flight

import (
	"errors"
	"govx/exchange"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Batches leave without being copied into a message: the stock Flight writer gathers
// each IPC body into a bytes.Buffer, protobuf marshals FlightData into another (which
// gRPC's pool hands out zeroed), and gRPC copies that into its write buffer — three
// copies of every batch, most of a bulk pull's serving CPU (docs/BENCHMARKS.md). Here
// a FlightData message is a mem.BufferSlice: the
// protobuf framing and the IPC header, then the record's own Arrow buffers (small
// ones and the padding copied beside them), which gRPC writes straight into its
// frames. The bytes are the stock encoding's, byte for byte (TestWireEncoding).
//
// gRPC writes a message after SendMsg returns, so a batch's memory must outlive the
// call: the record is retained, and the buffers the IPC encoder allocates for it
// (offsets rebased to zero for a slice, bitmaps shifted) are freed only when gRPC
// frees the last buffer that references the batch.

// FlightData's fields, as flight.proto numbers them.
const (
	fieldDataHeader protowire.Number = 2
	fieldDataBody   protowire.Number = 1000
)

// minShared is the smallest body buffer sent by reference; smaller ones are copied
// beside the framing, where a reference would cost more than the copy. It must stay
// above gRPC's pooling threshold, below which mem.NewBuffer would not call back when
// the buffer is freed (gather.Write checks it too).
const minShared = 16 << 10

// wireCodec is the Flight server's gRPC codec: the stock protobuf codec for every
// message but a batch, whose buffers it hands to gRPC as they are.
type wireCodec struct{ proto encoding.CodecV2 }

func newWireCodec() wireCodec {
	c := encoding.GetCodecV2(proto.Name)
	if c == nil {
		panic("flight: gRPC's proto codec is not registered")
	}
	return wireCodec{proto: c}
}

var errSentTwice = errors.New("flight: a batch message was marshalled twice")

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*batchMessage); ok {
		if m.bufs == nil {
			return nil, errSentTwice
		}
		out := m.bufs
		m.bufs = nil // gRPC owns the references now
		return out, nil
	}
	return c.proto.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

// Name is the stock codec's: clients see application/grpc+proto as ever.
func (wireCodec) Name() string { return proto.Name }

// batchMessage is one FlightData message, already in its wire form.
type batchMessage struct{ bufs mem.BufferSlice }

// batchWriter is the ipc.PayloadWriter of DoGet: it sends each IPC payload (the
// schema, dictionaries, record batches) as one FlightData message with the header
// and body of the payload.
type batchWriter struct {
	send  func(any) error // the stream's SendMsg
	alloc *heldAllocator  // what the IPC encoder allocates with
	// queued holds a token for each batch gRPC has not yet written out; nil: no bound.
	queued chan struct{}
	done   <-chan struct{} // the stream's end
	// stall is how long the client may take nothing before the pull is ended
	// (service.WithPullStallTimeout).
	stall time.Duration
	// progress is when gRPC last took a piece of a batch (UnixNano): a client that
	// reads slowly takes pieces while a whole batch is still on its way. Its own
	// allocation, shared with the batches' holds: a hold must not reach the writer
	// (and through its send the stream and the buffers queued on it), or the cleanup
	// that lets go of a dropped buffer would never run.
	progress *atomic.Int64
	// sent counts the bytes of the messages handed to gRPC: IPC headers and bodies.
	sent int64
}

// maxQueued is how many batches of one stream gRPC may hold unwritten. gRPC's SendMsg
// returns once a message is queued, whether or not the client's flow-control window
// lets it out, so a client that stops reading would otherwise have every batch of its
// pull queued in the exchange's memory (the whole result, tens of megabytes at 1M
// rows), and its pull would end, as far as the exchange knows, at once. One: the next
// batch is handed to gRPC only once the last has left, so SendMsg never waits on the
// stream's write quota (64 KB, which it would, out of reach of the stall timeout, with
// two queued); the connection stays busy meanwhile with what its write buffer and the
// socket hold. A stalled pull holds one batch, and its place among its department's
// pulls in progress (service.WithPullsInProgress), until it reads again, goes, or has
// taken less than a piece (maxPiece) for the stall timeout.
const maxQueued = 1

// maxPiece bounds the bytes of one buffer given to gRPC: each piece gRPC has written
// out is progress (batchWriter.progress), so a client that reads slowly is not taken
// for one that stopped while a batch of megabytes is on its way.
const maxPiece = 256 << 10

// newBatchWriter returns the writer of one stream; done is the stream's end, stall how
// long its client may take nothing. With done nil, nothing bounds the batches queued
// (for tests that hold every message).
func newBatchWriter(send func(any) error, mem memory.Allocator, done <-chan struct{}, stall time.Duration) *batchWriter {
	w := &batchWriter{send: send, alloc: &heldAllocator{Allocator: mem}, done: done, stall: stall}
	w.progress = new(atomic.Int64)
	w.progress.Store(time.Now().UnixNano())
	if done != nil {
		w.queued = make(chan struct{}, maxQueued)
	}
	return w
}

var errStreamEnded = errors.New("flight: the stream ended while its batches waited for the client")

// wait returns once gRPC has written out every batch given to it, or the stream ended.
// Nothing may be written after.
func (w *batchWriter) wait() error {
	if w.queued == nil {
		return nil
	}
	for range cap(w.queued) {
		if err := w.room(); err != nil {
			return err
		}
	}
	return nil
}

// room waits until gRPC holds fewer than maxQueued unwritten batches of the stream and
// takes a place for one more. It fails when the stream ends first, or when gRPC took no
// piece of the stream's batches for the stall timeout (counted from the wait's start at
// the earliest): the client took nothing in that time.
func (w *batchWriter) room() error {
	select {
	case w.queued <- struct{}{}:
		return nil
	default:
	}
	start := time.Now().UnixNano()
	var stalled <-chan time.Time
	if w.stall > 0 {
		t := time.NewTimer(w.stall)
		defer t.Stop()
		stalled = t.C
	}
	for {
		select {
		case w.queued <- struct{}{}:
			return nil
		case <-w.done:
			return exchange.ClientGone(errStreamEnded)
		case <-stalled:
			idle := time.Duration(time.Now().UnixNano() - max(start, w.progress.Load()))
			if idle >= w.stall {
				return exchange.ClientStalled(w.stall)
			}
			stalled = time.After(w.stall - idle)
		}
	}
}

// write writes rec with enc, holding rec's memory until gRPC has sent it.
func (w *batchWriter) write(enc *ipc.Writer, rec arrow.Record) error {
	if w.queued != nil {
		if err := w.room(); err != nil {
			return err
		}
	}
	rec.Retain()
	h := &held{rec: rec, mem: w.alloc.Allocator, queued: w.queued, progress: w.progress}
	h.refs.Store(1) // write's own, dropped once the encoder is done with rec
	w.alloc.to = h
	err := enc.Write(rec)
	w.alloc.to = nil
	h.release()
	return err
}

func (w *batchWriter) Start() error { return nil }
func (w *batchWriter) Close() error { return nil }

func (w *batchWriter) WritePayload(p ipc.Payload) error {
	body := gather{h: w.alloc.to}
	if err := p.SerializeBody(&body); err != nil {
		body.pieces.Free()
		return err
	}
	body.flush()
	var header []byte
	if meta := p.Meta(); meta != nil {
		header = meta.Bytes()
		defer meta.Release()
	}
	frame := make([]byte, 0, len(header)+maxFraming)
	if len(header) > 0 {
		frame = protowire.AppendTag(frame, fieldDataHeader, protowire.BytesType)
		frame = protowire.AppendBytes(frame, header)
	}
	if body.n > 0 {
		frame = protowire.AppendTag(frame, fieldDataBody, protowire.BytesType)
		frame = protowire.AppendVarint(frame, uint64(body.n))
	}
	m := &batchMessage{bufs: append(mem.BufferSlice{mem.SliceBuffer(frame)}, body.pieces...)}
	w.sent += int64(len(header) + body.n)
	err := w.send(m)
	m.bufs.Free() // nil once the codec took them; not when the send failed before
	return err
}

// maxFraming bounds the bytes of two field tags (two bytes each at most for fields 2
// and 1000) and two length varints (ten bytes each at most).
const maxFraming = 2 * (2 + 10)

// gather is the io.Writer an IPC payload serializes its body into: large buffers are
// referenced, held by h, and everything else is copied.
type gather struct {
	h      *held
	pieces mem.BufferSlice
	small  []byte
	n      int
}

func (g *gather) Write(p []byte) (int, error) {
	g.n += len(p)
	if g.h == nil || len(p) < minShared || mem.IsBelowBufferPoolingThreshold(len(p)) {
		g.small = append(g.small, p...)
		return len(p), nil
	}
	g.flush()
	for rest := p; len(rest) > 0; {
		n := min(len(rest), maxPiece)
		if len(rest)-n < minShared { // no piece too small to share: it would never be given back
			n = len(rest)
		}
		g.pieces = append(g.pieces, g.h.share(rest[:n]))
		rest = rest[n:]
	}
	return len(p), nil
}

// flush makes the bytes copied so far a piece of the body.
func (g *gather) flush() {
	if len(g.small) > 0 {
		g.pieces = append(g.pieces, mem.SliceBuffer(g.small))
		g.small = nil
	}
}

// held keeps one batch's memory alive while gRPC holds buffers that reference it: the
// record, and the buffers the IPC encoder allocated for it, whose frees wait here.
type held struct {
	refs   atomic.Int64
	rec    arrow.Record
	mem    memory.Allocator
	frees  [][]byte
	queued chan struct{} // its writer's, which holds a token for it; nil: none
	// progress is its writer's: when gRPC last took a piece (UnixNano).
	progress *atomic.Int64
}

func (h *held) release() {
	if h.refs.Add(-1) != 0 {
		return
	}
	h.rec.Release()
	for _, b := range h.frees {
		h.mem.Free(b)
	}
	if h.queued != nil {
		<-h.queued
	}
}

// share returns a gRPC buffer over b that releases its hold on h when gRPC frees it.
func (h *held) share(b []byte) mem.Buffer {
	h.refs.Add(1)
	s := &sharedBytes{b: b[:len(b):len(b)], h: h}
	// gRPC drops the buffers queued on a connection that closes without freeing
	// them (grpc-go 1.85: loopy's per-stream queues are not drained when it exits),
	// which would hold the batch forever; the cleanup lets go of it once nothing
	// references the buffer any more (TestPullReleasesBatches). A message queued for
	// a stream that ended while its client neither reads nor resets it stays until
	// the connection closes, as the stock codec's marshalled copy did.
	s.cleanup = runtime.AddCleanup(s, (*held).release, h)
	return mem.NewBuffer(&s.b, s)
}

// sharedBytes is one referenced body buffer; it is its own mem.BufferPool, which
// gRPC calls with Put once the buffer was written (or dropped with its stream).
type sharedBytes struct {
	b       []byte
	h       *held
	cleanup runtime.Cleanup
}

// Get is never called: gRPC asks a buffer's pool only to take it back.
func (s *sharedBytes) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

func (s *sharedBytes) Put(*[]byte) {
	s.cleanup.Stop()
	s.h.progress.Store(time.Now().UnixNano())
	s.h.release()
}

// heldAllocator is the IPC encoder's allocator: while a batch is written (to is
// set), frees wait until gRPC has sent the buffers that may reference them.
type heldAllocator struct {
	memory.Allocator
	to *held
}

func (a *heldAllocator) Free(b []byte) {
	if a.to != nil {
		a.to.frees = append(a.to.frees, b)
		return
	}
	a.Allocator.Free(b)
}
