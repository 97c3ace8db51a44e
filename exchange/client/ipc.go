package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange"
)

// PullIPC runs a pull as Pull does and writes it to w as one Arrow IPC stream. The
// exchange's Flight messages are IPC messages already: each is written out as it
// arrives, framed as the IPC stream format frames it, so no batch is rebuilt or
// re-encoded and no row is touched. Each message header is still read (the schema as
// Arrow; of a batch, its rows, its field nodes against the schema, each buffer's place
// in the body) so that a malformed stream is an error, not a file no reader opens,
// and so the rows can be counted. progress, when set, hears the rows and body bytes
// written so far after each batch.
//
// A pull served from several endpoints is one stream with the first endpoint's schema;
// every other endpoint must send the same schema.
func (c *Client) PullIPC(ctx context.Context, cmd exchange.PullCmd, w io.Writer, progress func(rows, bytes int64)) (PullResult, error) {
	t := &ipcTee{w: bufio.NewWriterSize(w, 64<<10), progress: progress}
	err := c.doGets(ctx, cmd, true, t.endpoint)
	if err != nil {
		return t.res, err
	}
	if t.schema == nil {
		return t.res, errors.New("the exchange sent no schema")
	}
	// End-of-stream: a continuation marker and a zero length.
	if _, err := t.w.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}); err != nil {
		return t.res, err
	}
	return t.res, t.w.Flush()
}

// ipcTee writes the messages of a pull's DoGet streams to w as one IPC stream.
type ipcTee struct {
	w        *bufio.Writer
	progress func(rows, bytes int64)
	res      PullResult
	schema   []byte // the first endpoint's schema message
	nodes    int    // field nodes of a batch of that schema
	body     int64  // body bytes written
}

// endpoint writes one endpoint's stream: its schema first (written once for the whole
// pull), then its batches. A write error is the caller's (callerError), kept apart
// from the stream's.
func (t *ipcTee) endpoint(stream flight.FlightService_DoGetClient) error {
	sawSchema := false
	for {
		fd, err := stream.Recv()
		if err != nil {
			if err == io.EOF && !sawSchema {
				return errors.New("the exchange sent an endpoint's stream without a schema")
			}
			return err
		}
		if len(fd.DataHeader) == 0 {
			continue // app metadata alone: not an IPC message
		}
		h, err := readIPCHeader(fd.DataHeader)
		if err != nil {
			return err
		}
		if h.bodyLen != int64(len(fd.DataBody)) {
			return fmt.Errorf("the exchange sent an IPC message of %d body bytes that says it has %d", len(fd.DataBody), h.bodyLen)
		}
		switch {
		case h.kind == headerSchema && sawSchema:
			return errors.New("the exchange sent a second schema in one stream")
		case h.kind == headerSchema && t.schema != nil:
			if !bytes.Equal(fd.DataHeader, t.schema) {
				return errors.New("the exchange's endpoints sent different schemas for one pull")
			}
			sawSchema = true
			continue
		case h.kind == headerSchema:
			sc, err := decodeSchema(fd.DataHeader)
			if err != nil {
				return err
			}
			t.schema, t.nodes = bytes.Clone(fd.DataHeader), fieldNodes(sc.Fields())
			t.res.Schema, t.res.Cursor = sc, cursorOf(sc)
			sawSchema = true
		case !sawSchema:
			return errors.New("the exchange sent a batch before its schema")
		case h.kind == headerRecordBatch:
			if h.nodes != t.nodes || !h.inRange {
				return fmt.Errorf("the exchange sent a malformed batch: %d field nodes for a schema of %d, buffers within its body: %v", h.nodes, t.nodes, h.inRange)
			}
		case h.kind != headerDictionary:
			return fmt.Errorf("the exchange sent an IPC message of type %d in a pull", h.kind)
		}
		if err := t.write(fd.DataHeader, fd.DataBody); err != nil {
			return callerError{err}
		}
		if h.kind == headerRecordBatch {
			t.res.Rows += h.rows
			if t.progress != nil {
				t.progress(t.res.Rows, t.body)
			}
		}
	}
}

// decodeSchema reads a schema message as Arrow does.
func decodeSchema(meta []byte) (*arrow.Schema, error) {
	msg := ipc.NewMessage(memory.NewBufferBytes(meta), memory.NewBufferBytes(nil))
	rdr, err := ipc.NewReaderFromMessageReader(&oneMessage{msg: msg})
	if err != nil {
		return nil, fmt.Errorf("the exchange sent a schema Arrow cannot read: %w", err)
	}
	defer rdr.Release()
	return rdr.Schema(), nil
}

// fieldNodes is how many field nodes a batch of fields carries: one per field and
// one per child, depth first.
func fieldNodes(fields []arrow.Field) int {
	n := len(fields)
	for _, f := range fields {
		dt := f.Type
		if e, ok := dt.(arrow.ExtensionType); ok {
			dt = e.StorageType()
		}
		if nt, ok := dt.(arrow.NestedType); ok {
			n += fieldNodes(nt.Fields())
		}
	}
	return n
}

// oneMessage is an ipc.MessageReader of one message.
type oneMessage struct{ msg *ipc.Message }

func (o *oneMessage) Message() (*ipc.Message, error) {
	if o.msg == nil {
		return nil, io.EOF
	}
	m := o.msg
	o.msg = nil
	return m, nil
}

func (o *oneMessage) Retain()  {}
func (o *oneMessage) Release() {}

var pad [8]byte

// write frames one message as the IPC stream format does: continuation marker, the
// metadata length (padded to 8 bytes), the metadata and its padding, the body.
func (t *ipcTee) write(meta, body []byte) error {
	n := (len(meta) + 7) &^ 7
	var prefix [8]byte
	binary.LittleEndian.PutUint32(prefix[0:], 0xffffffff)
	binary.LittleEndian.PutUint32(prefix[4:], uint32(n))
	if _, err := t.w.Write(prefix[:]); err != nil {
		return err
	}
	if _, err := t.w.Write(meta); err != nil {
		return err
	}
	if _, err := t.w.Write(pad[:n-len(meta)]); err != nil {
		return err
	}
	if _, err := t.w.Write(body); err != nil {
		return err
	}
	t.body += int64(len(body))
	return nil
}

var _ ipc.MessageReader = (*oneMessage)(nil)
