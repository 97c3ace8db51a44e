package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"

	"govx/exchange"
	"govx/exchange/service/servicetest"
	"govx/internal/testenv"
)

// TestPullIPCIsThePull: PullIPC writes an Arrow IPC stream holding exactly what Pull
// decodes (schema with its cursor, every batch, the row count), which Arrow Go and
// pyarrow both read; and a failing writer is the pull's error.
func TestPullIPCIsThePull(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{SegmentRows: 8}) // several batches
	c := start(t, f).client(t, "mz-3301/dibao-review")
	ctx := context.Background()
	cmd := exchange.PullCmd{Dataset: "population.person", Purpose: dibao}

	var want []arrow.Record
	res, err := c.Pull(ctx, cmd, nil, func(rec arrow.Record) error {
		rec.Retain()
		want = append(want, rec)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, r := range want {
			r.Release()
		}
	}()
	if res.Rows == 0 {
		t.Fatal("the fixture's pull returned no rows; the comparison would mean nothing")
	}

	var buf bytes.Buffer
	var progressed int64
	got, err := c.PullIPC(ctx, cmd, &buf, func(rows, _ int64) { progressed = rows })
	if err != nil {
		t.Fatal(err)
	}
	if got.Rows != res.Rows || progressed != res.Rows || got.Cursor != res.Cursor || got.Cursor == "" {
		t.Errorf("PullIPC: %d rows (progress %d), cursor %q; Pull: %d rows, cursor %q", got.Rows, progressed, got.Cursor, res.Rows, res.Cursor)
	}
	rdr, err := ipc.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("the stream PullIPC wrote does not open: %v", err)
	}
	defer rdr.Release()
	// Each request has its own id in the metadata; the fields and the cursor agree.
	if md := rdr.Schema().Metadata(); !rdr.Schema().Equal(res.Schema) || md.Values()[md.FindKey(exchange.MetaCursor)] != got.Cursor {
		t.Errorf("schema written %v, pulled %v", rdr.Schema(), res.Schema)
	}
	i := 0
	for rdr.Next() {
		if i >= len(want) || !array.RecordEqual(rdr.Record(), want[i]) {
			t.Fatalf("batch %d of the stream differs from the pulled one", i)
		}
		i++
	}
	if rdr.Err() != nil || i != len(want) {
		t.Fatalf("read %d of %d batches: %v", i, len(want), rdr.Err())
	}

	python := testenv.Require(t, testenv.Python)
	path := filepath.Join(t.TempDir(), "pull.arrows")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "-c", `import sys, pyarrow as pa
t = pa.ipc.open_stream(pa.OSFile(sys.argv[1])).read_all()
print(t.num_rows, t.schema.metadata[b"`+exchange.MetaCursor+`"].decode())`, path).CombinedOutput()
	if err != nil {
		t.Fatalf("pyarrow cannot read the stream: %v\n%s", err, out)
	}
	if w := strings.Fields(string(out)); len(w) != 2 || w[0] != strconv.FormatInt(res.Rows, 10) || w[1] != res.Cursor {
		t.Errorf("pyarrow read %q, want %d rows and cursor %s", out, res.Rows, res.Cursor)
	}

	full := errors.New("disk full")
	if _, err := c.PullIPC(ctx, cmd, failingWriter{full}, nil); !errors.Is(err, full) {
		t.Errorf("a failing writer: err %v, want the writer's error", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }
