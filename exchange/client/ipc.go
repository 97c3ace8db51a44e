package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/exchange"
)

// PullIPC runs a pull as Pull does and writes it to w as one Arrow IPC stream. The
// exchange's Flight messages are IPC messages already: each is written out as it
// arrives, framed as the IPC stream format frames it, so no batch is rebuilt or
// re-encoded and no row is touched. Each message is still read as Arrow (the schema,
// and every batch's arrays over the very bytes written) so that a malformed stream is
// an error, not a file no reader opens, and so the rows can be counted. progress, when
// set, hears the rows and body bytes written so far after each batch.
//
// A pull served from several endpoints is one stream with the first endpoint's schema;
// every other endpoint must send the same schema.
func (c *Client) PullIPC(ctx context.Context, cmd exchange.PullCmd, w io.Writer, progress func(rows, bytes int64)) (PullResult, error) {
	var res PullResult
	bw := bufio.NewWriterSize(w, 64<<10)
	var firstSchema []byte
	var body int64
	err := c.doGets(ctx, cmd, func(stream flight.FlightService_DoGetClient) error {
		mr := &teeMessages{stream: stream, w: bw, skipSchema: firstSchema != nil, schema: firstSchema, refs: 1}
		rdr, err := ipc.NewReaderFromMessageReader(mr, ipc.WithAllocator(c.mem))
		if err != nil {
			return err
		}
		defer rdr.Release()
		if mr.err != nil {
			return mr.err
		}
		if firstSchema == nil {
			firstSchema = mr.schema
			res.Schema = rdr.Schema()
			res.Cursor = cursorOf(res.Schema)
		}
		for rdr.Next() {
			res.Rows += rdr.Record().NumRows()
			if progress != nil {
				progress(res.Rows, body+mr.body)
			}
		}
		body += mr.body
		if mr.err != nil {
			return callerError{mr.err}
		}
		return rdr.Err()
	})
	if err != nil {
		return res, err
	}
	if firstSchema == nil {
		return res, errors.New("the exchange sent no schema")
	}
	// End-of-stream: a continuation marker and a zero length.
	if _, err := bw.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}); err != nil {
		return res, err
	}
	return res, bw.Flush()
}

// teeMessages is an ipc.MessageReader over a DoGet stream that writes each message it
// hands out to w in the IPC stream framing. With skipSchema, the stream's schema
// message is read (and must equal schema) but not written again.
type teeMessages struct {
	stream     flight.FlightService_DoGetClient
	w          *bufio.Writer
	skipSchema bool
	schema     []byte // the schema message's flatbuffer
	body       int64  // body bytes written
	err        error  // a write error (the caller's side), kept apart from the stream's
	refs       int64  // held by the ipc.Reader: 1 at first
	msg        *ipc.Message
}

var pad [8]byte

func (t *teeMessages) Message() (*ipc.Message, error) {
	for {
		fd, err := t.stream.Recv()
		if err != nil {
			return nil, err
		}
		if len(fd.DataHeader) == 0 {
			continue // app metadata alone: not an IPC message
		}
		msg := ipc.NewMessage(memory.NewBufferBytes(fd.DataHeader), memory.NewBufferBytes(fd.DataBody))
		if msg.Type() == ipc.MessageSchema {
			if t.skipSchema {
				if !bytes.Equal(fd.DataHeader, t.schema) {
					msg.Release()
					return nil, errors.New("the exchange's endpoints sent different schemas for one pull")
				}
				t.skipSchema = false
				if t.msg != nil {
					t.msg.Release()
				}
				t.msg = msg
				return msg, nil
			}
			t.schema = bytes.Clone(fd.DataHeader)
		}
		if msg.BodyLen() != int64(len(fd.DataBody)) {
			msg.Release()
			return nil, fmt.Errorf("the exchange sent an IPC message of %d body bytes that says it has %d", len(fd.DataBody), msg.BodyLen())
		}
		if err := t.write(fd.DataHeader, fd.DataBody); err != nil {
			t.err = err
			msg.Release()
			return nil, err
		}
		if t.msg != nil {
			t.msg.Release()
		}
		t.msg = msg
		return msg, nil
	}
}

// write frames one message as the IPC stream format does: continuation marker, the
// metadata length (padded to 8 bytes), the metadata and its padding, the body.
func (t *teeMessages) write(meta, body []byte) error {
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

func (t *teeMessages) Retain() { t.refs++ }

// Release drops the last message once the reader is done with it.
func (t *teeMessages) Release() {
	if t.refs--; t.refs == 0 && t.msg != nil {
		t.msg.Release()
		t.msg = nil
	}
}

var _ ipc.MessageReader = (*teeMessages)(nil)
