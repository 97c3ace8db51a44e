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
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/flight/flightsql"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"govx/exchange"
	"govx/exchange/auth"
	"govx/exchange/netopt"
	"govx/exchange/service"
)

// MaxMessageSize is the largest gRPC message the server sends or accepts: a 64k-row
// batch of persons is about 11.5 MB, over gRPC's 4 MiB default. Clients must raise
// their receive limit to match.
const MaxMessageSize = 64 << 20

// Defaults of the connection limits (see WithAuthTimeout, WithMaxUnauthenticated).
const (
	DefaultAuthTimeout        = 10 * time.Second
	DefaultMaxUnauthenticated = 512
	// maxStreamsPerConn bounds the calls one connection runs at once.
	maxStreamsPerConn = 256
)

// Server is the exchange's Flight service.
type Server struct {
	flight.BaseFlightServer
	svc    *service.Service
	tokens *auth.Tokens
	mem    memory.Allocator
	srv    flight.Server
	guard  *guard
	// location names this replica in FlightInfo endpoints (WithAdvertise).
	location string
	// sql serves Flight SQL commands, tickets and actions (flightsql.go).
	sql flight.FlightServer
}

// Option configures a Server.
type Option func(*options)

type options struct {
	authTimeout time.Duration
	maxUnauth   int
	log         *slog.Logger
	location    string
	onHandshake func(remote net.Addr, err error)
}

// WithAuthTimeout sets how long a connection may stay open before it carries its first
// authenticated call, TLS handshake included (default DefaultAuthTimeout).
func WithAuthTimeout(d time.Duration) Option { return func(o *options) { o.authTimeout = d } }

// WithMaxUnauthenticated sets how many connections may be open at once that have not
// carried an authenticated call yet (default DefaultMaxUnauthenticated); connections
// beyond are closed as they arrive.
func WithMaxUnauthenticated(n int) Option { return func(o *options) { o.maxUnauth = n } }

// WithAdvertise names this replica's Flight address (host:port) in every FlightInfo
// endpoint, as a grpc+tls or grpc+tcp location: its tickets are redeemed only here.
// Empty: no location, and clients redeem where they asked.
func WithAdvertise(hostport string, tls bool) Option {
	return func(o *options) {
		switch {
		case hostport == "":
			o.location = ""
		case tls:
			o.location = "grpc+tls://" + hostport
		default:
			o.location = "grpc+tcp://" + hostport
		}
	}
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithHandshakeErrors calls fn with every failed TLS handshake (a refused client
// certificate among them), which gRPC itself only drops.
func WithHandshakeErrors(fn func(remote net.Addr, err error)) Option {
	return func(o *options) { o.onHandshake = fn }
}

// observedCreds reports the server handshakes' errors of the TLS credentials it wraps.
type observedCreds struct {
	credentials.TransportCredentials
	fn func(remote net.Addr, err error)
}

func (c observedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.fn(conn.RemoteAddr(), err)
	}
	return out, info, err
}

func (c observedCreds) Clone() credentials.TransportCredentials {
	return observedCreds{c.TransportCredentials.Clone(), c.fn}
}

// New returns a Flight server over svc that authenticates with tokens (and, when
// tlsConfig asks for client certificates, with those).
func New(svc *service.Service, tokens *auth.Tokens, tlsConfig *tls.Config, mem memory.Allocator, opts ...Option) *Server {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	o := options{authTimeout: DefaultAuthTimeout, maxUnauth: DefaultMaxUnauthenticated, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{svc: svc, tokens: tokens, mem: mem, guard: newGuard(o.authTimeout, o.maxUnauth, o.log), location: o.location}
	gopts := []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		// A connection that does not finish its handshake in time is dropped by gRPC
		// too; the guard bounds the time until the first authenticated call.
		grpc.ConnectionTimeout(o.authTimeout),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		// Pings find peers that vanished mid-stream (a pull blocked on a dead client
		// would otherwise hold its snapshot, and its complete event, forever); idle
		// connections are closed and clients reconnect on their next call.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute, Time: time.Minute, Timeout: 20 * time.Second}),
		// Clients may ping as often as govx's own does (every 30 s of silence in a
		// call, exchange/client) to find a dead connection; more often is refused.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second}),
		// DoGet's batches go out as their Arrow buffers, not marshalled copies (wire.go).
		grpc.ForceServerCodecV2(newWireCodec()),
		// gRPC flushes its write buffer to the socket when full: at the default 32 KB a
		// pull of 14 MB took 453 write calls, at 256 KB 72 (BenchmarkPull's writes/op).
		// gRPC takes the buffer from a pool while a connection writes and gives it back
		// when it is idle, so idle connections hold none.
		grpc.WriteBufferSize(256 << 10),
	}
	if tlsConfig != nil {
		creds := credentials.NewTLS(tlsConfig)
		if o.onHandshake != nil {
			creds = observedCreds{creds, o.onHandshake}
		}
		gopts = append(gopts, grpc.Creds(creds))
	}
	s.sql = newSQLServer(s)
	s.srv = flight.NewServerWithMiddleware([]flight.ServerMiddleware{{Unary: s.unaryAuth, Stream: s.streamAuth}}, gopts...)
	s.srv.RegisterFlightService(s)
	return s
}

// Serve serves on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	s.srv.InitListener(s.guard.listener(netopt.Listener(lis)))
	return s.srv.Serve()
}

// Shutdown stops accepting calls and waits for running ones. Connections that never
// authenticated are closed first: nothing of theirs is worth waiting for.
func (s *Server) Shutdown() {
	s.guard.closeUnauthenticated()
	s.srv.Shutdown()
}

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
	if err == nil && c.ClientAddr != "" {
		s.guard.authenticated(c.ClientAddr)
	}
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
			TotalRecords:     -1, // unknown: the caller may only aggregate it
			TotalBytes:       -1,
		}
		if d.Rows != nil {
			info.TotalRecords = *d.Rows
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
	if isFlightSQL(desc.GetCmd()) {
		return s.sql.GetFlightInfo(ctx, desc)
	}
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
		s.svc.Fail(ctx, g, err) // the allowed decision must not read as a stream never finished
		return nil, toStatus(err)
	}
	ticket, err := s.svc.Ticket(g)
	if err != nil {
		s.svc.Fail(ctx, g, err)
		return nil, toStatus(err)
	}
	ep := &flight.FlightEndpoint{Ticket: &flight.Ticket{Ticket: ticket}}
	if s.location != "" {
		ep.Location = []*flight.Location{{Uri: s.location}}
	}
	return &flight.FlightInfo{
		Schema:           flight.SerializeSchema(schema, s.mem),
		FlightDescriptor: desc,
		Endpoint:         []*flight.FlightEndpoint{ep},
		TotalRecords:     -1,
		TotalBytes:       -1,
	}, nil
}

// GetSchema returns the schema a pull would return, without data.
func (s *Server) GetSchema(ctx context.Context, desc *flight.FlightDescriptor) (*flight.SchemaResult, error) {
	if isFlightSQL(desc.GetCmd()) {
		return s.sql.GetSchema(ctx, desc)
	}
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
	if isFlightSQL(tkt.GetTicket()) {
		if st, err := flightsql.GetStatementQueryTicket(tkt); err == nil {
			return s.doGetStatement(st.GetStatementHandle(), stream)
		}
		return s.sql.DoGet(tkt, stream)
	}
	ctx := stream.Context()
	g, err := s.svc.Redeem(ctx, callerOf(ctx), tkt.GetTicket())
	if err != nil {
		return toStatus(err)
	}
	sink := &flightSink{stream: goneStream{stream}, mem: s.mem, stall: s.svc.PullStallTimeout()}
	_, err = s.svc.Stream(ctx, g, sink)
	if sink.w != nil {
		if cerr := sink.w.Close(); err == nil {
			err = cerr
		}
	}
	return toStatus(err)
}

// goneStream reports a failed send on a stream whose call has ended (the client
// cancelled, or keepalive found it gone) as the client going away, so the pull's
// complete event says aborted rather than error.
type goneStream struct {
	flight.FlightService_DoGetServer
}

func (g goneStream) SendMsg(m any) error {
	err := g.FlightService_DoGetServer.SendMsg(m)
	if err != nil && g.Context().Err() != nil {
		return exchange.ClientGone(err)
	}
	return err
}

// flightSink writes a pull's batches to a DoGet stream, as FlightData messages over
// the batches' own buffers (wire.go).
type flightSink struct {
	stream goneStream
	mem    memory.Allocator
	stall  time.Duration // service.WithPullStallTimeout
	w      *ipc.Writer
	pw     *batchWriter
}

func (f *flightSink) Begin(schema *arrow.Schema) error {
	f.pw = newBatchWriter(f.stream.SendMsg, f.mem, f.stream.Context().Done(), f.stall)
	f.w = ipc.NewWriterWithPayloadWriter(f.pw, ipc.WithSchema(schema), ipc.WithAllocator(f.pw.alloc))
	return nil
}

func (f *flightSink) Write(rec arrow.Record) error {
	return f.pw.write(f.w, rec)
}

// Bytes is what the stream sent: each message's IPC header and body. (The record's
// buffer sizes would count the whole segment a small slice of rows points into.)
func (f *flightSink) Bytes() int64 {
	if f.pw == nil {
		return 0
	}
	return f.pw.sent
}

// Flush ends the IPC stream and waits until gRPC has written out every batch: until
// then the client has not had the pull, and its memory is held for it.
func (f *flightSink) Flush() error {
	if f.w == nil {
		return nil
	}
	err := f.w.Close()
	f.w = nil
	if err != nil {
		return err
	}
	return f.pw.wait()
}

// toStatus maps the exchange's errors to gRPC statuses: the code by the error's kind,
// the stable code and the policy's reasons as ErrorInfo details (see
// exchange.ErrorDomain), and all of it as text in the message for people.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	xe, ok := errors.AsType[*exchange.Error](err)
	code := codes.Internal
	switch {
	case ok:
		code = grpcCode(xe.Kind)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		xe, code = exchange.E(exchange.Other, "cancelled", "the request was cancelled"), codes.Canceled
	default:
		slog.Error("flight: internal error", "err", err)
		xe = exchange.E(exchange.Internal, "internal", "internal error; the exchange logged it")
	}
	// The status travels in trailers, which clients bound (pyarrow's gRPC refuses more
	// than 8 KiB of metadata, and percent-encodes the message: a Chinese character is 9
	// bytes there). Long policy text — a legal basis, say — is clipped so the error
	// always arrives typed; the codes are never clipped, and HTTP carries the full text.
	st := status.New(code, clip(StatusMessage(xe), maxStatusMessage))
	budget := maxDetailText
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: xe.Code, Domain: exchange.ErrorDomain,
		Metadata: map[string]string{"message": clipBudget(xe.Message, &budget)}}}
	for _, r := range xe.Reasons {
		details = append(details, &errdetails.ErrorInfo{Reason: r.Code, Domain: exchange.ReasonDomain,
			Metadata: map[string]string{"message": clipBudget(r.Message, &budget)}})
	}
	withDetails, derr := st.WithDetails(details...)
	if derr != nil {
		// Only a status of code OK refuses details; keep the text rather than lose the error.
		slog.Error("flight: error details not attached", "err", derr)
		return st.Err()
	}
	return withDetails.Err()
}

// Bounds of an error's text on the wire, in bytes of UTF-8.
const (
	maxStatusMessage = 1024
	maxDetailText    = 1536
)

// clip cuts s to at most max bytes at a character boundary, saying that it did.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const mark = "…(cut)"
	cut := max - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:max0(cut)] + mark
}

func max0(n int) int { return max(n, 0) }

// clipBudget clips s to what is left of *budget, and spends it.
func clipBudget(s string, budget *int) string {
	out := clip(s, max(*budget, len("…(cut)")))
	*budget -= len(out)
	return out
}

// grpcCode maps an error kind to its gRPC code; an unclassified error is Internal.
func grpcCode(k exchange.Kind) codes.Code {
	switch k {
	case exchange.Invalid:
		return codes.InvalidArgument
	case exchange.Unauthenticated:
		return codes.Unauthenticated
	case exchange.PermissionDenied:
		return codes.PermissionDenied
	case exchange.NotFound:
		return codes.NotFound
	case exchange.ResourceExhausted:
		return codes.ResourceExhausted
	case exchange.Unavailable:
		return codes.Unavailable
	}
	return codes.Internal
}

// StatusMessage is how an exchange error reads in a gRPC status message, for people and
// for clients that show only the text (pyarrow): "code: message" on the first line and
// one "reason code: message" line per policy reason. Programs read the ErrorInfo
// details instead: a message may hold any character, newlines included.
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
