package flight

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcmem "google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"govx/exchange"
	"govx/exchange/service"
	"govx/exchange/service/servicetest"
)

// shapes builds records whose encoding differs in the ways zero-copy can get wrong:
// nulls (validity bitmaps), strings without dictionaries, a column of nulls only,
// booleans, buffers above and below the size sent by reference, no rows, and slices
// whose offsets are not zero (bitmaps shifted, string offsets rebased, fixed-width
// buffers cut), byte-aligned or not.
func shapes(t *testing.T, mem memory.Allocator) (*arrow.Schema, map[string]arrow.Record) {
	t.Helper()
	big := persons(mem, 40000, 40)
	out := map[string]arrow.Record{
		"large buffers":                big,
		"small buffers":                persons(mem, 100, 3),
		"no rows":                      persons(mem, 0, 1),
		"slice at an unaligned offset": big.NewSlice(3, 33003),
		"slice at a byte offset":       big.NewSlice(8, 20008),
		"slice to the end":             big.NewSlice(39001, 40000),
		"slice of no rows":             big.NewSlice(17, 17),
	}
	t.Cleanup(func() {
		for _, r := range out {
			r.Release()
		}
	})
	return personSchema(), out
}

func personSchema() *arrow.Schema {
	return arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "alive", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "none", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
}

// persons builds n rows of personSchema, names up to pad bytes long.
func persons(mem memory.Allocator, n, pad int) arrow.Record {
	b := array.NewRecordBuilder(mem, personSchema())
	defer b.Release()
	for i := range n {
		b.Field(0).(*array.Int64Builder).Append(int64(i) * 7919)
		if i%5 == 3 {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("张%d%s", i, strings.Repeat("x", i%pad)))
		}
		if i%3 == 0 {
			b.Field(2).AppendNull()
		} else {
			b.Field(2).(*array.Float64Builder).Append(float64(i) / 3)
		}
		b.Field(3).(*array.BooleanBuilder).AppendValues([]bool{i%2 == 0}, []bool{i%7 != 0})
		b.Field(4).AppendNull()
	}
	return b.NewRecord()
}

// stockMessages is what arrow/flight's own writer sends for recs: each FlightData
// marshalled by protobuf, as gRPC's stock codec does.
func stockMessages(t *testing.T, mem memory.Allocator, schema *arrow.Schema, recs ...arrow.Record) [][]byte {
	t.Helper()
	var out [][]byte
	w := flight.NewRecordWriter(sendFunc(func(d *flight.FlightData) error {
		b, err := proto.Marshal(d)
		out = append(out, b)
		return err
	}), ipc.WithSchema(schema), ipc.WithAllocator(mem))
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

type sendFunc func(*flight.FlightData) error

func (f sendFunc) Send(d *flight.FlightData) error { return f(d) }

// wireMessages writes recs with DoGet's writer and marshals each message with the
// server's codec, as gRPC does; the buffers are returned unfreed, as gRPC holds them
// until they are written.
func wireMessages(t *testing.T, mem memory.Allocator, schema *arrow.Schema, recs ...arrow.Record) []grpcmem.BufferSlice {
	t.Helper()
	codec := newWireCodec()
	var out []grpcmem.BufferSlice
	pw := newBatchWriter(func(m any) error {
		bufs, err := codec.Marshal(m)
		out = append(out, bufs)
		return err
	}, mem, nil, 0)
	w := ipc.NewWriterWithPayloadWriter(pw, ipc.WithSchema(schema), ipc.WithAllocator(pw.alloc))
	for _, r := range recs {
		if err := pw.write(w, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWireEncoding: every message DoGet's writer sends is byte for byte the message
// arrow/flight's own writer and the stock protobuf codec send, for every shape of
// batch; decoded, it is the batch written.
func TestWireEncoding(t *testing.T) {
	mem := memory.NewCheckedAllocator(poisoned{memory.NewGoAllocator()})
	t.Cleanup(func() { mem.AssertSize(t, 0) }) // after the shapes' release
	schema, recs := shapes(t, mem)
	for name, rec := range recs {
		t.Run(name, func(t *testing.T) {
			want := stockMessages(t, mem, schema, rec, rec)
			got := wireMessages(t, mem, schema, rec, rec)
			if len(got) != len(want) {
				t.Fatalf("%d messages, want %d", len(got), len(want))
			}
			var decoded []*flight.FlightData
			for i := range got {
				b := got[i].Materialize()
				got[i].Free()
				if !bytes.Equal(b, want[i]) {
					t.Fatalf("message %d of %d: %d bytes differ from the stock encoding's %d", i, len(got), len(b), len(want[i]))
				}
				var d flight.FlightData
				if err := proto.Unmarshal(b, &d); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				decoded = append(decoded, &d)
			}
			rdr, err := flight.NewRecordReader(recvFunc(func() (*flight.FlightData, error) {
				if len(decoded) == 0 {
					return nil, io.EOF
				}
				d := decoded[0]
				decoded = decoded[1:]
				return d, nil
			}), ipc.WithAllocator(mem))
			if err != nil {
				t.Fatal(err)
			}
			defer rdr.Release()
			n := 0
			for rdr.Next() {
				if !array.RecordEqual(rdr.Record(), rec) {
					t.Fatalf("batch %d decodes to\n%v\nwant\n%v", n, rdr.Record(), rec)
				}
				n++
			}
			if n != 2 {
				t.Fatalf("%d batches decoded, want 2 (%v)", n, rdr.Err())
			}
		})
	}
}

type recvFunc func() (*flight.FlightData, error)

func (f recvFunc) Recv() (*flight.FlightData, error) { return f() }

// TestWireHoldsBatches: a batch's memory outlives the writer's call until gRPC frees
// the message's buffers, the buffers the IPC encoder allocated for a slice included
// (freed memory is overwritten here, so bytes read too late would show); then every
// byte is released.
func TestWireHoldsBatches(t *testing.T) {
	mem := memory.NewCheckedAllocator(poisoned{memory.NewGoAllocator()})
	defer mem.AssertSize(t, 0)
	schema := personSchema()
	big := persons(mem, 40000, 40)
	slice := big.NewSlice(3, 33003) // rebased offsets and shifted bitmaps: allocated by the encoder
	big.Release()
	want := stockMessages(t, mem, schema, slice)
	got := wireMessages(t, mem, schema, slice)
	slice.Release() // the caller's last reference
	if mem.CurrentAlloc() == 0 {
		t.Fatal("the batch was released before gRPC sent it")
	}
	for i := range got {
		if b := got[i].Materialize(); !bytes.Equal(b, want[i]) {
			t.Fatalf("message %d changed after the writer returned", i)
		}
		got[i].Free()
	}
}

// poisoned overwrites the memory it frees.
type poisoned struct{ memory.Allocator }

func (p poisoned) Free(b []byte) {
	for i := range b {
		b[i] = 0xa5
	}
	p.Allocator.Free(b)
}

// TestPullReleasesBatches pulls through the real server and gRPC: the batches a client
// decodes are those the service wrote, and every batch is released once the stream
// ends, once a client cancels part way, and once a client's connection closes part
// way (gRPC drops what it had queued there without freeing it: the cleanup in share).
func TestPullReleasesBatches(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 6000, NamePad: 200, SegmentRows: 1024})
	_, lis := serve(t, f, "127.0.0.1:0")
	token := f.Token(t, "rs-33/pension")
	cmd := exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"}

	// What the service writes for this pull, batch by batch.
	caller := service.Caller{Subject: exchange.Subject{Department: "rs-33", System: "pension"}, ClientAddr: "127.0.0.1:1"}
	g, err := f.Svc.Open(context.Background(), caller, cmd)
	if err != nil {
		t.Fatal(err)
	}
	var want collect
	if _, err := f.Svc.Stream(context.Background(), g, &want); err != nil {
		t.Fatal(err)
	}
	defer want.release()
	if len(want.recs) < 3 {
		t.Fatalf("the pull has %d batches; the test needs several", len(want.recs))
	}

	c := raw(t, lis.Addr().String())
	got := collect{}
	if err := rawPull(c, token, cmd, func(r arrow.Record) bool { r.Retain(); got.recs = append(got.recs, r); return true }); err != nil {
		t.Fatal(err)
	}
	defer got.release()
	if len(got.recs) != len(want.recs) {
		t.Fatalf("%d batches, want %d", len(got.recs), len(want.recs))
	}
	for i := range got.recs {
		if !array.RecordEqual(got.recs[i], want.recs[i]) {
			t.Fatalf("batch %d differs from what the service wrote", i)
		}
	}
	base := f.Mem.CurrentAlloc() // the tables, and the masked columns the pulls filled in
	settled := func(what string) {
		servicetest.WaitFor(t, what, func() bool {
			runtime.GC() // a connection closed with batches queued lets go of them in a cleanup
			return f.Mem.CurrentAlloc() == base
		})
	}

	if err := rawPull(c, token, cmd, func(arrow.Record) bool { return true }); err != nil {
		t.Fatal(err)
	}
	settled("the batches of a whole pull released")

	// A client that reads one batch and cancels: gRPC drops what it had queued.
	ctx, cancel := context.WithCancel(as(token))
	err = rawPullCtx(ctx, c, cmd, func(arrow.Record) bool { cancel(); return false })
	cancel()
	if err == nil {
		t.Fatal("a cancelled pull ended without error")
	}
	settled("the batches of a cancelled pull released")

	// A client that reads one batch and closes its connection.
	c2, err := flight.NewClientWithMiddleware(lis.Addr().String(), nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)))
	if err != nil {
		t.Fatal(err)
	}
	err = rawPullCtx(as(token), c2, cmd, func(arrow.Record) bool { c2.Close(); return false })
	if err == nil {
		t.Fatal("a pull whose connection closed ended without error")
	}
	// And every connection closed: gRPC (1.85) can keep a finished stream's last
	// message queued on a connection that stays open (rarely, after a cancel; the
	// stock codec's marshalled copy stayed the same way); it lets go with the
	// connection.
	c.Close()
	settled("the batches of a pull whose connection closed released")
}

type collect struct {
	recs []arrow.Record
}

func (c *collect) Begin(*arrow.Schema) error { return nil }
func (c *collect) Write(r arrow.Record) error {
	r.Retain()
	c.recs = append(c.recs, r)
	return nil
}
func (c *collect) Bytes() int64 { return 0 }
func (c *collect) release() {
	for _, r := range c.recs {
		r.Release()
	}
}

func rawPull(c flight.Client, token string, cmd exchange.PullCmd, each func(arrow.Record) bool) error {
	return rawPullCtx(as(token), c, cmd, each)
}

// rawPullCtx pulls cmd, calling each with every batch until it returns false; an
// error of the stream is returned, as is errStopped when each stopped it.
func rawPullCtx(ctx context.Context, c flight.Client, cmd exchange.PullCmd, each func(arrow.Record) bool) error {
	info, err := c.GetFlightInfo(ctx, cmdDesc(cmd))
	if err != nil {
		return err
	}
	stream, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		return err
	}
	rdr, err := flight.NewRecordReader(stream)
	if err != nil {
		return err
	}
	defer rdr.Release()
	for rdr.Next() {
		if !each(rdr.Record()) {
			return errStopped
		}
	}
	if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

var errStopped = errors.New("stopped by the client")
