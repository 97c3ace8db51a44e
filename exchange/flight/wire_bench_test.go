package flight

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"govx/exchange"
	"govx/exchange/service/servicetest"
)

// BenchmarkPull: whole pulls of 60,000 persons (about 20 MB of Arrow buffers) through
// the server and gRPC over loopback, a new connection per pull as pyarrow's scripts
// make them, with the server's write calls per pull (each a syscall) reported beside
// the time.
//
//	go test ./exchange/flight -run XXX -bench Pull -count 6
func BenchmarkPull(b *testing.B) {
	f := servicetest.New(b, servicetest.Config{Persons: 60000, NamePad: 100})
	lis := &countingListener{Listener: servicetest.Listen(b, "127.0.0.1:0")}
	serveOn(b, f, lis)
	token := f.Token(b, "rs-33/pension")
	cmd := exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review"}
	pullOnce := func() int64 {
		c, err := flight.NewClientWithMiddleware(lis.Addr().String(), nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		var rows int64
		if err := rawPull(c, token, cmd, func(r arrow.Record) bool { rows += r.NumRows(); return true }); err != nil {
			b.Fatal(err)
		}
		return rows
	}
	pullOnce() // the masked columns filled in, the decision cached
	lis.writes.Store(0)
	lis.bytes.Store(0)
	b.ResetTimer()
	var rows int64
	for range b.N {
		rows += pullOnce()
	}
	b.StopTimer()
	b.ReportMetric(float64(lis.writes.Load())/float64(b.N), "writes/op")
	b.ReportMetric(float64(lis.bytes.Load())/float64(b.N), "wire-bytes/op")
	b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
}

// countingListener counts the writes of the connections it accepted.
type countingListener struct {
	net.Listener
	writes, bytes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

type countingConn struct {
	net.Conn
	l *countingListener
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.l.writes.Add(1)
	c.l.bytes.Add(int64(len(p)))
	return c.Conn.Write(p)
}
