package main

import (
	"fmt"
	"io"
	"os"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"govx/bench/bareflight"
)

// serveBare is bench/peer run as the bare Go Flight server (`-serve-bare FILE`), in its
// own process as the C++ peer is: arrow-go's stock server (bench/bareflight) serving the
// peer's table from memory in the batches it was written in. Like peer.py it prints
// "listening PORT" and serves until stdin closes.
func serveBare(table string) error {
	f, err := os.Open(table)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f, ipc.WithAllocator(memory.DefaultAllocator))
	if err != nil {
		return err
	}
	// Every batch is read into memory (as peer.py reads its table), not left in the file.
	var batches []arrow.Record
	for i := range r.NumRecords() {
		rec, err := r.RecordAt(i)
		if err != nil {
			return err
		}
		batches = append(batches, rec)
	}
	schema := r.Schema()
	r.Close()
	srv, err := bareflight.Start(schema, batches)
	if err != nil {
		return err
	}
	fmt.Printf("listening %d\n", srv.Addr().Port)
	io.Copy(io.Discard, os.Stdin)
	srv.Shutdown()
	return nil
}
