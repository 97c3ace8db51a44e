package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange"
	"govx/exchange/client"
	xflight "govx/exchange/flight"
	"govx/exchange/httpapi"
	"govx/exchange/service/servicetest"
)

const dibao = "minimum-living-allowance-review"

type exchangeAt struct {
	f      *servicetest.Fixture
	flight *servicetest.Listener
	http   string
}

// start runs the Flight and HTTP edges over a fixture, in this process.
func start(t *testing.T, f *servicetest.Fixture) *exchangeAt {
	t.Helper()
	hln := servicetest.Listen(t, "127.0.0.1:0")
	x := &exchangeAt{f: f, flight: servicetest.Listen(t, "127.0.0.1:0"), http: "http://" + hln.Addr().String()}
	fs := xflight.New(f.Svc, f.Tokens, nil, f.Mem)
	hs := &http.Server{Handler: httpapi.New(f.Svc, f.Tokens, func() error { return nil }, prometheus.NewRegistry(), nil)}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); fs.Serve(x.flight) }()
	go func() { defer wg.Done(); hs.Serve(hln) }()
	t.Cleanup(func() {
		fs.Shutdown()
		hs.Close()
		wg.Wait()
	})
	return x
}

func (x *exchangeAt) client(t *testing.T, subject string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Flight: x.flight.Addr().String(), HTTP: x.http, Token: x.f.Token(t, subject)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rowsOf(c *client.Client, cmd exchange.PullCmd) (client.PullResult, error) {
	return c.Pull(context.Background(), cmd, nil, func(arrow.Record) error { return nil })
}

// TestConcurrentUse: many goroutines share one client, its first pull included; each
// gets its own complete answer, and the client makes one Flight connection, not one per
// goroutine that raced to make it (run with -race).
func TestConcurrentUse(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{SegmentRows: 8})
	x := start(t, f)
	c := x.client(t, "mz-3301/dibao-review")
	want := int64(len(f.IDs["3301"]))
	key, _ := json.Marshal(f.IDs["3301"][0])
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				res, err := rowsOf(c, exchange.PullCmd{Dataset: "population.person", Purpose: dibao})
				if err == nil && (res.Rows != want || res.Cursor == "") {
					err = errors.New("short or cursorless pull")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			if g%4 == 0 {
				if rec, err := c.Lookup(context.Background(), "population.person", exchange.LookupCmd{Key: key, Purpose: dibao}); err != nil || rec["household_region"] != "330106" {
					errs <- errors.Join(err, errors.New("lookup"))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := x.flight.Accepted.Load(); n != 1 {
		t.Fatalf("one client made %d Flight connections, want 1", n)
	}
}

// TestTypedErrors: the client reads the exchange's error from the status details, so a
// policy reason's message arrives whole whatever it holds.
func TestTypedErrors(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{})
	x := start(t, f)
	_, err := rowsOf(x.client(t, "mz-3301/newline"), exchange.PullCmd{Dataset: "population.person", Purpose: dibao})
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("denial: %v (%T), want *client.Error", err, err)
	}
	want := []exchange.Reason{{Code: "no_agreement", Message: "line one\nreason forged: line two"}, {Code: "unknown_purpose", Message: "second: reason"}}
	if ce.Code != "permission_denied" || ce.Status != "PermissionDenied" || ce.Message != "the sharing policy denied the request" || !slices.Equal(ce.Reasons, want) {
		t.Fatalf("denial decoded as %+v, want permission_denied with %v", ce, want)
	}
	hz := x.client(t, "mz-3301/dibao-review")
	res, err := rowsOf(hz, exchange.PullCmd{Dataset: "population.person", Purpose: dibao})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rowsOf(x.client(t, "rs-33/pension"), exchange.PullCmd{Dataset: "population.person", Purpose: "pension-qualification-review", Since: res.Cursor})
	if !errors.As(err, &ce) || ce.Code != "foreign_cursor" || ce.Status != "PermissionDenied" {
		t.Fatalf("another department's cursor: %v", err)
	}
	// Over HTTP the same JSON body decodes into the same error.
	_, err = hz.Lookup(context.Background(), "population.person", exchange.LookupCmd{Key: json.RawMessage(`330106`), Purpose: dibao})
	if !errors.As(err, &ce) || ce.Code != "bad_key" || !strings.HasPrefix(ce.Status, "400") {
		t.Fatalf("a numeric key: %v", err)
	}
}

// TestStatusWithoutDetails: an answer that is not the exchange's (here a bare Flight
// server) is rpc_error with its text, never split into a made-up code.
func TestStatusWithoutDetails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := bareFlight(t, ln, &flight.BaseFlightServer{})
	_, err = rowsOf(c, exchange.PullCmd{Dataset: "population.person"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != "rpc_error" || ce.Status != "Unimplemented" || !strings.Contains(ce.Message, "GetFlightInfo") {
		t.Fatalf("a bare Flight server's answer: %v", err)
	}
}

// TestCancelAndClose: the caller's own cancellation is reported as such; a closed
// client refuses calls instead of reconnecting behind the caller's back.
func TestCancelAndClose(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{})
	x := start(t, f)
	c := x.client(t, "mz-3301/dibao-review")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Pull(ctx, exchange.PullCmd{Dataset: "population.person", Purpose: dibao}, nil, func(arrow.Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("a pull with a cancelled context: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rowsOf(c, exchange.PullCmd{Dataset: "population.person", Purpose: dibao}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("pull after Close: %v", err)
	}
	if _, err := c.Catalog(context.Background()); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("catalog after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// breakingServer answers GetFlightInfo with one endpoint, then, in DoGet, sends a
// schema and cuts every connection: a connection broken during a pull.
type breakingServer struct {
	flight.BaseFlightServer
	lis *connsListener
}

func (s *breakingServer) GetFlightInfo(context.Context, *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	return &flight.FlightInfo{Endpoint: []*flight.FlightEndpoint{{Ticket: &flight.Ticket{Ticket: []byte("t")}}}}, nil
}

func (s *breakingServer) DoGet(_ *flight.Ticket, stream flight.FlightService_DoGetServer) error {
	w := flight.NewRecordWriter(stream, ipc.WithSchema(arrow.NewSchema([]arrow.Field{{Name: "name", Type: arrow.BinaryTypes.String}}, nil)))
	w.Close()
	s.lis.cut()
	<-stream.Context().Done()
	return nil
}

// connsListener remembers its connections so that cut can close them all.
type connsListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *connsListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// TestConnectionBrokenMidPull: a connection that breaks after the stream began is
// reported as that, not as an exchange that cannot be reached.
func TestConnectionBrokenMidPull(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &connsListener{Listener: ln}
	c := bareFlight(t, cl, &breakingServer{lis: cl})
	_, err = c.PullIPC(context.Background(), exchange.PullCmd{Dataset: "population.person"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "port "+ln.Addr().String()+" broke during the pull") || strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("a connection cut mid-pull: %v", err)
	}
}

// bareFlight serves svc, a Flight server that is not the exchange, on ln until the test
// ends, and returns a client of it.
func bareFlight(t *testing.T, ln net.Listener, svc flight.FlightServer) *client.Client {
	t.Helper()
	srv := flight.NewServerWithMiddleware(nil)
	srv.RegisterFlightService(svc)
	srv.InitListener(ln)
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	c, err := client.New(client.Config{Flight: ln.Addr().String(), Token: "govx_x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Shutdown()
		<-done
	})
	return c
}

// TestSilentRouteEndsThePull: a pull whose route goes silent (the exchange's bytes stop
// arriving while the connection stays open: a middlebox dropping it) fails as a broken
// connection once a ping goes unanswered, instead of waiting forever.
func TestSilentRouteEndsThePull(t *testing.T) {
	defer client.SetKeepalive(10*time.Second, time.Second)() // gRPC's least silence
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := flight.NewServerWithMiddleware(nil)
	srv.RegisterFlightService(&breakingServer{lis: &connsListener{}})
	srv.InitListener(ln)
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	// The route passes what the exchange sends first (its HTTP/2 settings), then
	// nothing more.
	route := servicetest.SlowProxy(t, ln.Addr().String(), 1<<10, time.Hour)
	c, err := client.New(client.Config{Flight: route, Token: "govx_x"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ended := make(chan error, 1)
	go func() {
		_, err := c.PullIPC(context.Background(), exchange.PullCmd{Dataset: "population.person"}, io.Discard, nil)
		ended <- err
	}()
	select {
	case err := <-ended:
		if err == nil || !strings.Contains(err.Error(), "keepalive ping failed") {
			t.Fatalf("a pull over a silent route: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a pull over a silent route was still waiting after a minute")
	}
}
