package client

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"google.golang.org/protobuf/proto"
)

// messages returns the IPC messages (header, body) Arrow Go writes for a schema of a
// string, a list of int32 and a struct of a date, and one batch of rows.
func messages(t *testing.T, rows int) (sc *arrow.Schema, msgs [][2][]byte) {
	t.Helper()
	sc = arrow.NewSchema([]arrow.Field{
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "codes", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)},
		{Name: "born", Type: arrow.StructOf(arrow.Field{Name: "day", Type: arrow.FixedWidthTypes.Date32})},
	}, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer rb.Release()
	for i := range rows {
		rb.Field(0).(*array.StringBuilder).Append("张三")
		lb := rb.Field(1).(*array.ListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.Int32Builder).Append(int32(i))
		sb := rb.Field(2).(*array.StructBuilder)
		sb.Append(true)
		sb.FieldBuilder(0).(*array.Date32Builder).Append(arrow.Date32(i))
	}
	rec := rb.NewRecord()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(sc))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// The stream framing: continuation marker, metadata length, metadata, body.
	b := buf.Bytes()
	for len(b) >= 8 {
		n := int(binary.LittleEndian.Uint32(b[4:]))
		if n == 0 {
			break // end of stream
		}
		meta := b[8 : 8+n]
		body := int(ipc.NewMessage(memory.NewBufferBytes(meta), memory.NewBufferBytes(nil)).BodyLen())
		msgs = append(msgs, [2][]byte{meta, b[8+n : 8+n+body]})
		b = b[8+n+body:]
	}
	if len(msgs) != 2 {
		t.Fatalf("Arrow wrote %d messages, want a schema and a batch", len(msgs))
	}
	return sc, msgs
}

// TestIPCHeader: the header reader finds what Arrow wrote (kind, body length, rows,
// one node per field and child), and a header cut short or pointing outside itself,
// or a batch whose buffers leave its body, is refused, never a panic.
func TestIPCHeader(t *testing.T) {
	sc, msgs := messages(t, 37)
	h, err := readIPCHeader(msgs[0][0])
	if err != nil || h.kind != headerSchema {
		t.Fatalf("schema message: %+v, %v", h, err)
	}
	if got, err := decodeSchema(msgs[0][0]); err != nil || !got.Equal(sc) {
		t.Fatalf("schema decoded as %v, %v", got, err)
	}
	meta, body := msgs[1][0], msgs[1][1]
	h, err = readIPCHeader(meta)
	if err != nil || h.kind != headerRecordBatch || h.rows != 37 || h.bodyLen != int64(len(body)) || !h.inRange {
		t.Fatalf("batch message: %+v, %v (body %d bytes)", h, err, len(body))
	}
	if want := fieldNodes(sc.Fields()); h.nodes != want || want != 5 {
		t.Fatalf("batch has %d field nodes, the schema %d; want 5", h.nodes, want)
	}

	// Every prefix of the header is refused or read without a panic.
	for n := range len(meta) {
		readIPCHeader(meta[:n])
	}
	for _, n := range []int{0, 3, 7} {
		if _, err := readIPCHeader(meta[:n]); err == nil {
			t.Errorf("a header cut to %d bytes was read", n)
		}
	}
	// A root offset past the end.
	bad := bytes.Clone(meta)
	binary.LittleEndian.PutUint32(bad, uint32(len(bad)+64))
	if _, err := readIPCHeader(bad); err == nil {
		t.Error("a root offset past the header was read")
	}
	// Every byte flipped in turn: never a panic.
	for i := range meta {
		bad := bytes.Clone(meta)
		bad[i] ^= 0xff
		readIPCHeader(bad)
	}
	// The same batch claiming a shorter body: its buffers leave it.
	short, err := readIPCHeader(withBodyLen(t, meta, 8))
	if err != nil || short.inRange {
		t.Errorf("a body of 8 bytes for buffers of %d: %+v, %v", len(body), short, err)
	}
}

// withBodyLen rewrites a message header's bodyLength (field 3 of Message).
func withBodyLen(t *testing.T, meta []byte, n int64) []byte {
	t.Helper()
	out := bytes.Clone(meta)
	msg, ok := fbTableAt(out, 0)
	at := msg.field(3)
	if !ok || at < 0 {
		t.Fatal("the header has no bodyLength")
	}
	binary.LittleEndian.PutUint64(out[at:], uint64(n))
	return out
}

// TestDecodeFlightData: the aliasing decoder reads what protobuf encodes, fields in
// any order, unknown ones skipped.
func TestDecodeFlightData(t *testing.T) {
	want := &flight.FlightData{
		FlightDescriptor: &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"a", "b"}},
		DataHeader:       []byte("header"), AppMetadata: []byte("meta"), DataBody: bytes.Repeat([]byte{7}, 100_000),
	}
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, 0x28, 0x05) // field 5, varint 5: unknown
	var got flight.FlightData
	if err := decodeFlightData(b, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, want) {
		t.Errorf("decoded %v, want %v", &got, want)
	}
	for _, n := range []int{1, 2, len(b) / 2, len(b) - 3} { // inside a field
		if err := decodeFlightData(b[:n], &got); err == nil {
			t.Errorf("a message cut to %d bytes decoded", n)
		}
	}
}
