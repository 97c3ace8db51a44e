package client

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/apache/arrow/go/v17/arrow/flight"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protolib "google.golang.org/protobuf/proto"
)

// Writing a pull through as Arrow IPC (PullIPC) touches each batch's bytes only to
// copy them out: gRPC gathers a message's frames into one buffer, and the stock codec
// then copies every field out of it again while unmarshalling FlightData, a second
// copy of the whole pull that was a third of `govx pull --format arrow`'s CPU
// (docs/BENCHMARKS.md). aliasCodec decodes FlightData over gRPC's buffer instead: the
// header and body slices point into it, and it is held until the next message of the
// stream is received or the stream is done, by which time the message is written.

// FlightData's fields, as flight.proto numbers them.
const (
	fieldDescriptor protowire.Number = 1
	fieldDataHeader protowire.Number = 2
	fieldAppMeta    protowire.Number = 3
	fieldDataBody   protowire.Number = 1000
)

// aliasCodec is the gRPC codec of one DoGet stream whose messages are each consumed
// before the next is received. It is not safe for concurrent use, and a received
// FlightData's byte slices are valid only until the next Recv or release.
type aliasCodec struct {
	proto encoding.CodecV2
	held  mem.Buffer
}

func newAliasCodec() *aliasCodec {
	c := encoding.GetCodecV2(proto.Name)
	if c == nil {
		panic("client: gRPC's proto codec is not registered")
	}
	return &aliasCodec{proto: c}
}

func (c *aliasCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c *aliasCodec) Unmarshal(data mem.BufferSlice, v any) error {
	fd, ok := v.(*flight.FlightData)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	c.release() // the previous message has been consumed
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	if err := decodeFlightData(buf.ReadOnlyData(), fd); err != nil {
		buf.Free()
		return err
	}
	c.held = buf
	return nil
}

// release gives the last message's buffer back to gRPC's pool.
func (c *aliasCodec) release() {
	if c.held != nil {
		c.held.Free()
		c.held = nil
	}
}

// Name is the stock codec's: the exchange sees application/grpc+proto as ever.
func (*aliasCodec) Name() string { return proto.Name }

// decodeFlightData reads a FlightData message as protobuf does (a repeated scalar field:
// the last wins; a repeated message field: merged; unknown fields skipped), with the
// byte fields aliasing b.
func decodeFlightData(b []byte, fd *flight.FlightData) error {
	*fd = flight.FlightData{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("FlightData: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != fieldDescriptor && num != fieldDataHeader && num != fieldAppMeta && num != fieldDataBody) {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("FlightData field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("FlightData field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case fieldDescriptor:
			if fd.FlightDescriptor == nil {
				fd.FlightDescriptor = &flight.FlightDescriptor{}
			}
			if err := (protolib.UnmarshalOptions{Merge: true}).Unmarshal(v, fd.FlightDescriptor); err != nil {
				return fmt.Errorf("FlightData descriptor: %w", err)
			}
		case fieldDataHeader:
			fd.DataHeader = v
		case fieldAppMeta:
			fd.AppMetadata = v
		case fieldDataBody:
			fd.DataBody = v
		}
	}
	return nil
}

// The IPC message header is a flatbuffer (format/Message.fbs); PullIPC reads from it
// what it needs to count rows and to check that a batch's buffers lie in its body,
// without building the batch's arrays (which Arrow Go's reader does by copying every
// buffer). Every offset is checked against the header's length: the bytes come from
// the network.

// Message header types (MessageHeader in Message.fbs).
const (
	headerSchema      = 1
	headerDictionary  = 2
	headerRecordBatch = 3
)

var errBadHeader = errors.New("malformed IPC message header")

// fbTable is one flatbuffer table: its position in buf and its vtable's.
type fbTable struct {
	buf     []byte
	pos, vt int
	vtLen   int
}

func fbU32(b []byte, at int) (int, bool) {
	if at < 0 || at+4 > len(b) {
		return 0, false
	}
	return int(binary.LittleEndian.Uint32(b[at:])), true
}

// fbTableAt reads the table the uoffset at b[at:] points to.
func fbTableAt(b []byte, at int) (fbTable, bool) {
	off, ok := fbU32(b, at)
	if !ok {
		return fbTable{}, false
	}
	pos := at + off
	so, ok := fbU32(b, pos)
	if !ok {
		return fbTable{}, false
	}
	vt := pos - int(int32(uint32(so)))
	if vt < 0 || vt+4 > len(b) {
		return fbTable{}, false
	}
	vtLen := int(binary.LittleEndian.Uint16(b[vt:]))
	if vtLen < 4 || vt+vtLen > len(b) {
		return fbTable{}, false
	}
	return fbTable{buf: b, pos: pos, vt: vt, vtLen: vtLen}, true
}

// field returns where field i is, or -1 when it is absent.
func (t fbTable) field(i int) int {
	vo := 4 + 2*i
	if vo+2 > t.vtLen {
		return -1
	}
	off := int(binary.LittleEndian.Uint16(t.buf[t.vt+vo:]))
	if off == 0 {
		return -1
	}
	return t.pos + off
}

func (t fbTable) int64(i int) (int64, bool) {
	at := t.field(i)
	if at < 0 {
		return 0, true
	}
	if at+8 > len(t.buf) {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(t.buf[at:])), true
}

func (t fbTable) uint8(i int) (uint8, bool) {
	at := t.field(i)
	if at < 0 {
		return 0, true
	}
	if at >= len(t.buf) {
		return 0, false
	}
	return t.buf[at], true
}

// structs returns a vector of fixed-size structs: its length and first element.
func (t fbTable) structs(i, size int) (n, at int, ok bool) {
	f := t.field(i)
	if f < 0 {
		return 0, 0, true
	}
	off, ok := fbU32(t.buf, f)
	if !ok {
		return 0, 0, false
	}
	v := f + off
	n, ok = fbU32(t.buf, v)
	if !ok || n > (len(t.buf)-v-4)/size {
		return 0, 0, false
	}
	return n, v + 4, true
}

// ipcHeader is what PullIPC reads of a message header.
type ipcHeader struct {
	kind    uint8
	bodyLen int64
	// For a record batch: its rows, how many field nodes it has, and whether each of
	// its buffers lies within the body.
	rows    int64
	nodes   int
	inRange bool
}

// readIPCHeader reads a Message flatbuffer (Message: version 0, header_type 1, header
// 2, bodyLength 3; RecordBatch: length 0, nodes 1 of 16-byte FieldNode, buffers 2 of
// 16-byte Buffer {offset, length}).
func readIPCHeader(meta []byte) (ipcHeader, error) {
	var h ipcHeader
	msg, ok := fbTableAt(meta, 0)
	if !ok {
		return h, errBadHeader
	}
	if h.kind, ok = msg.uint8(1); !ok {
		return h, errBadHeader
	}
	if h.bodyLen, ok = msg.int64(3); !ok || h.bodyLen < 0 {
		return h, errBadHeader
	}
	if h.kind != headerRecordBatch {
		return h, nil
	}
	at := msg.field(2)
	if at < 0 {
		return h, errBadHeader
	}
	rb, ok := fbTableAt(meta, at)
	if !ok {
		return h, errBadHeader
	}
	if h.rows, ok = rb.int64(0); !ok || h.rows < 0 {
		return h, errBadHeader
	}
	var nodes int
	if nodes, _, ok = rb.structs(1, 16); !ok {
		return h, errBadHeader
	}
	h.nodes = nodes
	n, first, ok := rb.structs(2, 16)
	if !ok {
		return h, errBadHeader
	}
	h.inRange = true
	for i := range n {
		e := first + 16*i
		off := int64(binary.LittleEndian.Uint64(meta[e:]))
		ln := int64(binary.LittleEndian.Uint64(meta[e+8:]))
		if off < 0 || ln < 0 || off > h.bodyLen || ln > h.bodyLen-off {
			h.inRange = false
		}
	}
	return h, nil
}
