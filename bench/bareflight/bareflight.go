// Package bareflight is the benchmarks' bare Go Flight server: arrow-go's stock Flight
// server and record writer streaming batches held in memory, with no auth, policy or
// audit. It is the baseline that tells what Go's Flight and gRPC stack costs by itself,
// so that what the exchange adds on top of it can be told apart.
package bareflight

import (
	"context"
	"net"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"google.golang.org/grpc"

	xflight "govx/exchange/flight"
)

// Server streams the same batches for every DoGet, whatever the ticket says;
// GetFlightInfo answers any descriptor with one endpoint.
type Server struct {
	flight.BaseFlightServer
	schema  *arrow.Schema
	batches []arrow.Record
	srv     flight.Server
	ln      net.Listener
}

// Start serves batches (of schema) on a free loopback port. The caller keeps the
// batches alive until Shutdown.
func Start(schema *arrow.Schema, batches []arrow.Record) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Server{schema: schema, batches: batches, ln: ln}
	b.srv = flight.NewServerWithMiddleware(nil, grpc.MaxSendMsgSize(xflight.MaxMessageSize))
	b.srv.RegisterFlightService(b)
	b.srv.InitListener(ln)
	go b.srv.Serve()
	return b, nil
}

// Addr is the address the server listens on.
func (b *Server) Addr() *net.TCPAddr { return b.ln.Addr().(*net.TCPAddr) }

// Shutdown stops the server.
func (b *Server) Shutdown() { b.srv.Shutdown() }

func (b *Server) GetFlightInfo(_ context.Context, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	return &flight.FlightInfo{FlightDescriptor: desc, Schema: flight.SerializeSchema(b.schema, memory.DefaultAllocator),
		TotalRecords: -1, TotalBytes: -1, Endpoint: []*flight.FlightEndpoint{{Ticket: &flight.Ticket{Ticket: []byte("all")}}}}, nil
}

func (b *Server) DoGet(_ *flight.Ticket, stream flight.FlightService_DoGetServer) error {
	w := flight.NewRecordWriter(stream, ipc.WithSchema(b.schema))
	for _, r := range b.batches {
		if err := w.Write(r); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}
