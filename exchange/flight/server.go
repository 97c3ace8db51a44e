// Package flight serves the exchange over Arrow Flight (gRPC): ListFlights (the
// caller's catalog), GetFlightInfo (the decision, audited, and a signed short-lived
// ticket bound to the caller), DoGet (the batches, already projected, filtered and
// masked) and GetSchema. It embeds flight.BaseFlightServer, so every other Flight
// method answers Unimplemented. Authentication happens once per call in a gRPC
// interceptor; everything else is exchange/service.
//
// Only the wiring (cmd/govx, the demo) imports it.
package flight

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/arrow/util"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"govx/exchange"
	"govx/exchange/auth"
	"govx/exchange/service"
)

// MaxMessageSize is the largest gRPC message the server sends or accepts: a 64k-row
// batch of persons is about 11.5 MB, over gRPC's 4 MiB default. Clients must raise
// their receive limit to match.
const MaxMessageSize = 64 << 20

// Server is the exchange's Flight service.
type Server struct {
	flight.BaseFlightServer
	svc    *service.Service
	tokens *auth.Tokens
	mem    memory.Allocator
	srv    flight.Server
}

// New returns a Flight server over svc that authenticates with tokens (and, when
// tlsConfig asks for client certificates, with those).
func New(svc *service.Service, tokens *auth.Tokens, tlsConfig *tls.Config, mem memory.Allocator) *Server {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	s := &Server{svc: svc, tokens: tokens, mem: mem}
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize)}
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	s.srv = flight.NewServerWithMiddleware([]flight.ServerMiddleware{{Unary: s.unaryAuth, Stream: s.streamAuth}}, opts...)
	s.srv.RegisterFlightService(s)
	return s
}

// Serve serves on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	s.srv.InitListener(lis)
	return s.srv.Serve()
}

// Shutdown stops accepting calls and waits for running ones.
func (s *Server) Shutdown() { s.srv.Shutdown() }

type callerKey struct{}

func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	c := service.Caller{}
	var verified [][]*x509.Certificate
	if p, ok := peer.FromContext(ctx); ok {
		c.ClientAddr = p.Addr.String()
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			verified = ti.State.VerifiedChains
		}
	}
	var authorization string
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("authorization")) == 1 {
		authorization = md.Get("authorization")[0]
	}
	subj, err := s.tokens.Subject(authorization, verified)
	if err != nil {
		// A failed authentication is an access attempt too: audited, then refused.
		action := exchange.ActionRead
		if strings.HasSuffix(method, "/ListFlights") {
			action = exchange.ActionDiscover
		}
		return nil, toStatus(s.svc.Unauthenticated(ctx, c, action, "", err))
	}
	c.Subject = subj
	return context.WithValue(ctx, callerKey{}, c), nil
}

func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a authedStream) Context() context.Context { return a.ctx }

func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, authedStream{ss, ctx})
}

func callerOf(ctx context.Context) service.Caller {
	c, _ := ctx.Value(callerKey{}).(service.Caller)
	return c
}

// ListFlights lists the datasets the caller may discover.
func (s *Server) ListFlights(_ *flight.Criteria, stream flight.FlightService_ListFlightsServer) error {
	ctx := stream.Context()
	list, err := s.svc.Catalog(ctx, callerOf(ctx))
	if err != nil {
		return toStatus(err)
	}
	for _, d := range list {
		cmd, _ := json.Marshal(map[string]string{"dataset": d.ID})
		schema, err := s.svc.DatasetSchema(d.ID)
		if err != nil {
			return toStatus(err)
		}
		info := &flight.FlightInfo{
			Schema:           flight.SerializeSchema(schema, s.mem),
			FlightDescriptor: &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: cmd},
			TotalRecords:     d.Rows,
			TotalBytes:       -1,
		}
		if err := stream.Send(info); err != nil {
			return err
		}
	}
	return nil
}

func parseDescriptor(desc *flight.FlightDescriptor) (exchange.PullCmd, error) {
	if desc == nil || desc.Type != flight.DescriptorCMD {
		return exchange.PullCmd{}, exchange.E(exchange.Invalid, "malformed_request",
			`use a CMD descriptor whose cmd is JSON: {"dataset":…, "purpose":…, "columns":[…], "filter":[…]}`)
	}
	return service.ParseCmd(desc.Cmd)
}

// GetFlightInfo decides the pull (audited) and returns a ticket bound to the caller.
func (s *Server) GetFlightInfo(ctx context.Context, desc *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	c := callerOf(ctx)
	cmd, err := parseDescriptor(desc)
	if err != nil {
		return nil, toStatus(s.svc.Rejected(ctx, c, exchange.ActionRead, cmd.Dataset, err))
	}
	g, err := s.svc.Open(ctx, c, cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	schema, err := s.svc.GrantSchema(g)
	if err != nil {
		return nil, toStatus(err)
	}
	ticket, err := s.svc.Ticket(g)
	if err != nil {
		return nil, toStatus(err)
	}
	return &flight.FlightInfo{
		Schema:           flight.SerializeSchema(schema, s.mem),
		FlightDescriptor: desc,
		Endpoint:         []*flight.FlightEndpoint{{Ticket: &flight.Ticket{Ticket: ticket}}},
		TotalRecords:     -1,
		TotalBytes:       -1,
	}, nil
}

// GetSchema returns the schema a pull would return, without data.
func (s *Server) GetSchema(ctx context.Context, desc *flight.FlightDescriptor) (*flight.SchemaResult, error) {
	c := callerOf(ctx)
	cmd, err := parseDescriptor(desc)
	if err != nil {
		return nil, toStatus(s.svc.Rejected(ctx, c, exchange.ActionRead, cmd.Dataset, err))
	}
	schema, err := s.svc.Schema(ctx, c, cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	return &flight.SchemaResult{Schema: flight.SerializeSchema(schema, s.mem)}, nil
}

// DoGet streams the batches of a ticket's grant.
func (s *Server) DoGet(tkt *flight.Ticket, stream flight.FlightService_DoGetServer) error {
	ctx := stream.Context()
	g, err := s.svc.Redeem(ctx, callerOf(ctx), tkt.GetTicket())
	if err != nil {
		return toStatus(err)
	}
	sink := &flightSink{stream: stream, mem: s.mem}
	_, err = s.svc.Stream(ctx, g, sink)
	if sink.w != nil {
		if cerr := sink.w.Close(); err == nil {
			err = cerr
		}
	}
	return toStatus(err)
}

type flightSink struct {
	stream flight.FlightService_DoGetServer
	mem    memory.Allocator
	w      *flight.Writer
	bytes  int64
}

func (f *flightSink) Begin(schema *arrow.Schema) error {
	f.w = flight.NewRecordWriter(f.stream, ipc.WithSchema(schema), ipc.WithAllocator(f.mem))
	return nil
}

func (f *flightSink) Write(rec arrow.Record) error {
	f.bytes += util.TotalRecordSize(rec) // buffer sizes: close to what goes on the wire
	return f.w.Write(rec)
}

func (f *flightSink) Bytes() int64 { return f.bytes }

// toStatus maps the exchange's errors to gRPC codes. The message carries the stable
// code and, for denials, every policy reason with its code.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isExchangeError(err) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "cancelled")
	}
	var xe *exchange.Error
	if !errors.As(err, &xe) {
		slog.Error("flight: internal error", "err", err)
		return status.Error(codes.Internal, "internal error; the exchange logged it")
	}
	code := codes.Internal
	switch xe.Kind {
	case exchange.Invalid:
		code = codes.InvalidArgument
	case exchange.Unauthenticated:
		code = codes.Unauthenticated
	case exchange.PermissionDenied:
		code = codes.PermissionDenied
	case exchange.NotFound:
		code = codes.NotFound
	case exchange.ResourceExhausted:
		code = codes.ResourceExhausted
	case exchange.Unavailable:
		code = codes.Unavailable
	}
	return status.Error(code, StatusMessage(xe))
}

// StatusMessage is how an exchange error reads in a gRPC status: "code: message" on the
// first line and one "reason code: message" line per policy reason, so clients in any
// language can split it without guessing at punctuation inside messages.
func StatusMessage(xe *exchange.Error) string {
	var b strings.Builder
	b.WriteString(xe.Code)
	b.WriteString(": ")
	b.WriteString(xe.Message)
	for _, r := range xe.Reasons {
		b.WriteString("\nreason ")
		b.WriteString(r.Code)
		b.WriteString(": ")
		b.WriteString(r.Message)
	}
	return b.String()
}

func isExchangeError(err error) bool {
	var xe *exchange.Error
	return errors.As(err, &xe)
}
