package flight

import (
	"testing"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/service/servicetest"
)

// TestCompleteCountsSentBytes: a pull's complete event says how many bytes went out —
// its messages' IPC headers and bodies, within the bytes the connection carried — and
// a pull of ten rows out of a large segment counts ten rows' worth, not the segment's
// buffers its batch is a slice of.
func TestCompleteCountsSentBytes(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Persons: 60000})
	lis := &countingListener{Listener: servicetest.Listen(t, "127.0.0.1:0")}
	serveOn(t, f, lis)
	tok := f.Token(t, "rs-33/pension")
	sent := func(cmd exchange.PullCmd) (recorded, wire int64) {
		t.Helper()
		before := lis.bytes.Load()
		c := raw(t, lis.Addr().String())
		if _, _, err := pull(c, tok, cmd); err != nil {
			t.Fatal(err)
		}
		c.Close()
		wire = lis.bytes.Load() - before
		evs := f.Events(t)
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Kind == audit.KindComplete {
				return int64(evs[i].Bytes), wire
			}
		}
		t.Fatal("no complete event")
		return 0, 0
	}
	all := exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"}
	rec, wire := sent(all)
	if rec <= 0 || rec > wire || rec < wire*9/10 {
		t.Errorf("a whole pull: the complete event says %d bytes, the connection carried %d", rec, wire)
	}
	ten := all
	ten.Limit = 10
	if rec, wire := sent(ten); rec <= 0 || rec > wire || rec > 16<<10 {
		t.Errorf("a pull of 10 rows: the complete event says %d bytes, the connection carried %d", rec, wire)
	}
}
