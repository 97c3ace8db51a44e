// Package client is the Go client of the exchange, used by `govx catalog`, `govx pull`,
// `govx lookup` and `govx verify`, and meant for department systems written in Go:
// bulk and changes pulls over Arrow Flight, catalog, lookup and verify over HTTP, all
// with the department system's bearer token.
//
// It imports only the exchange's core vocabulary, so a department system pulls in no
// server code.
package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/flight"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"govx/exchange"
	"govx/internal/strictyaml"
)

// Config says where the exchange is and who is calling.
type Config struct {
	Flight string `yaml:"flight"` // host:port, default 127.0.0.1:8815
	HTTP   string `yaml:"http"`   // base URL, default http://127.0.0.1:8080
	Token  string `yaml:"token"`
	// TLS, when set, is used for both protocols (with a client certificate for mTLS).
	TLS *tls.Config `yaml:"-"`
}

// LoadProfile reads a profile file (YAML: flight, http, token), as `govx demo` writes
// one per department system.
func LoadProfile(path string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := strictyaml.Decode(path, data, &c); err != nil {
		return c, err
	}
	return c, nil
}

// Client talks to one exchange. It is safe for concurrent use: its calls share one
// Flight connection (gRPC multiplexes them) and one pool of HTTP connections.
type Client struct {
	cfg  Config
	http *http.Client
	mem  memory.Allocator

	mu     sync.Mutex
	fc     flight.Client // made by the first pull
	closed bool
	// at holds connections to the replicas FlightInfo endpoints named (their
	// locations) other than cfg.Flight: a ticket is redeemed where it was issued.
	at map[string]flight.Client
}

// keepaliveTime is how long a call's connection may be silent before the client pings
// the exchange, and keepaliveTimeout how long the ping may go unanswered before the
// connection is taken for broken (variables for tests; gRPC allows a time of no less
// than 10 s).
var keepaliveTime, keepaliveTimeout = 30 * time.Second, 20 * time.Second

// reconnectBackoff paces reconnection to an exchange that went away: quickly at first,
// at most every 3 seconds.
var reconnectBackoff = grpcbackoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second}

// MaxMessageSize is the gRPC receive limit: 64k-row batches are over gRPC's 4 MiB
// default.
const MaxMessageSize = 64 << 20

// New returns a client; the Flight connection is made lazily by the first pull.
func New(cfg Config) (*Client, error) {
	if cfg.Flight == "" {
		cfg.Flight = "127.0.0.1:8815"
	}
	if cfg.HTTP == "" {
		cfg.HTTP = "http://127.0.0.1:8080"
	}
	cfg.HTTP = strings.TrimRight(cfg.HTTP, "/")
	if cfg.Token == "" && cfg.TLS == nil {
		return nil, fmt.Errorf("no credentials: pass --token, set GOVX_TOKEN, or use --profile FILE (govx demo writes one per department)")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.TLS
	return &Client{cfg: cfg, http: &http.Client{Transport: tr, Timeout: 0}, mem: memory.DefaultAllocator}, nil
}

// Close releases the Flight connection and the idle HTTP connections; calls after
// Close fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.http.CloseIdleConnections()
	var errs []error
	for addr, fc := range c.at {
		errs = append(errs, fc.Close())
		delete(c.at, addr)
	}
	if c.fc != nil {
		errs = append(errs, c.fc.Close())
		c.fc = nil
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("govx client: closed")

// Error is an error answered by the exchange: its stable code, message and, for a
// denial, the policy's reasons.
type Error struct {
	Status  string // the protocol's status: an HTTP status text or a gRPC code
	Code    string
	Message string
	Reasons []exchange.Reason
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", e.Code, e.Status, e.Message)
	for _, r := range e.Reasons {
		fmt.Fprintf(&b, "\n  reason %s: %s", r.Code, r.Message)
	}
	return b.String()
}

// flight returns the Flight connection, made on first use: under the lock, so that
// concurrent first pulls make one connection, not one each with all but one leaked.
func (c *Client) flight(ctx context.Context) (flight.Client, context.Context, error) {
	fc, err := c.conn("")
	if err != nil {
		return nil, ctx, err
	}
	if c.cfg.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.cfg.Token)
	}
	return fc, ctx, nil
}

// conn returns the connection to the replica at addr (host:port; "" is cfg.Flight),
// made on first use.
func (c *Client) conn(addr string) (flight.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	fc := c.fc
	if addr != "" && addr != c.cfg.Flight {
		fc = c.at[addr]
	} else {
		addr = c.cfg.Flight
	}
	if fc == nil {
		creds := insecure.NewCredentials()
		if c.cfg.TLS != nil {
			creds = credentials.NewTLS(c.cfg.TLS)
		}
		var err error
		fc, err = flight.NewClientWithMiddleware(addr, nil, nil,
			grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize)),
			// gRPC's default backoff grows to two minutes: a replica restarted after a
			// minute's outage would stay unused by this client for as long again.
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnectBackoff, MinConnectTimeout: 5 * time.Second}),
			// A pull whose connection goes silent (a dead route or a middlebox dropping
			// it) would otherwise wait forever: after 30 s with nothing received a ping
			// must be answered within 20 s, or the pull fails as a broken connection.
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}))
		if err != nil {
			return nil, fmt.Errorf("flight %s: %w", addr, err)
		}
		if addr == c.cfg.Flight {
			c.fc = fc
		} else {
			if c.at == nil {
				c.at = map[string]flight.Client{}
			}
			c.at[addr] = fc
		}
	}
	return fc, nil
}

// endpointAddr returns the host:port of the replica an endpoint names, "" for the one
// asked (no location, or Flight's reuse-connection location). The transport stays the
// client's own: a location never turns TLS off or on.
func endpointAddr(ep *flight.FlightEndpoint) (string, error) {
	for _, loc := range ep.GetLocation() {
		u, err := url.Parse(loc.GetUri())
		if err != nil {
			return "", fmt.Errorf("the exchange named an endpoint location %q that is not a URI: %w", loc.GetUri(), err)
		}
		switch u.Scheme {
		case "grpc", "grpc+tcp", "grpc+tls":
			return u.Host, nil
		case "arrow-flight-reuse-connection":
			return "", nil
		}
	}
	if len(ep.GetLocation()) > 0 {
		return "", fmt.Errorf("the exchange named endpoint locations this client cannot reach (%s); want grpc+tcp:// or grpc+tls://", ep.GetLocation()[0].GetUri())
	}
	return "", nil
}

// fromStatus turns a gRPC error into an *Error from the exchange's ErrorInfo details
// (see exchange.ErrorDomain). A status without them did not come from the exchange's
// code (a proxy, or gRPC itself): it is reported as rpc_error with its text.
func (c *Client) fromStatus(ctx context.Context, err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return err
	}
	if cerr := ctx.Err(); cerr != nil && (st.Code() == codes.Canceled || st.Code() == codes.DeadlineExceeded) {
		return fmt.Errorf("flight: %w", cerr) // the caller's own cancellation, not the exchange's answer
	}
	e := &Error{Status: st.Code().String()}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok {
			continue
		}
		switch info.GetDomain() {
		case exchange.ErrorDomain:
			e.Code, e.Message = info.GetReason(), info.GetMetadata()["message"]
		case exchange.ReasonDomain:
			e.Reasons = append(e.Reasons, exchange.Reason{Code: info.GetReason(), Message: info.GetMetadata()["message"]})
		}
	}
	if e.Code != "" {
		return e
	}
	if st.Code() == codes.Unavailable {
		return fmt.Errorf("cannot reach the exchange's Flight port %s: %s (is `govx exchange serve` or `govx demo` running?)", c.cfg.Flight, st.Message())
	}
	return &Error{Status: st.Code().String(), Code: "rpc_error", Message: st.Message()}
}

// PullResult is what a pull returns besides its batches.
type PullResult struct {
	Schema *arrow.Schema
	Cursor string // pass as Since to get the changes after this pull
	Rows   int64
}

// Pull runs a bulk pull (or a changes pull when cmd.Since is set) over Flight, calling
// fn for every batch; fn must not keep rec after it returns without retaining it.
func (c *Client) Pull(ctx context.Context, cmd exchange.PullCmd, begin func(*arrow.Schema) error, fn func(rec arrow.Record) error) (PullResult, error) {
	var res PullResult
	// Each FlightData is decoded over gRPC's buffer: the IPC reader copies every buffer
	// of a batch out of it to build the record, which is the one copy a record needs.
	err := c.doGets(ctx, cmd, true, func(stream flight.FlightService_DoGetClient) error {
		rdr, err := flight.NewRecordReader(stream, ipc.WithAllocator(c.mem))
		if err != nil {
			return err
		}
		defer rdr.Release()
		res.Schema = rdr.Schema()
		res.Cursor = cursorOf(res.Schema)
		if begin != nil {
			if err := begin(res.Schema); err != nil {
				return callerError{err}
			}
		}
		for rdr.Next() {
			rec := rdr.Record()
			res.Rows += rec.NumRows()
			if err := fn(rec); err != nil {
				return callerError{err}
			}
		}
		return rdr.Err()
	})
	return res, err
}

// callerError carries an error of the caller's callback through doGets unchanged.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }

// doGets asks for the pull's FlightInfo and calls each with the DoGet stream of every
// endpoint in turn, at the replica the endpoint names. Errors from the exchange come
// back as *Error; a callerError as the caller's own error.
//
// With alias, each stream's messages are decoded over gRPC's buffers (aliasCodec):
// each must read a message through before it receives the next.
func (c *Client) doGets(ctx context.Context, cmd exchange.PullCmd, alias bool, each func(flight.FlightService_DoGetClient) error) error {
	fc, ctx, err := c.flight(ctx)
	if err != nil {
		return err
	}
	// A stream left unread holds the exchange's snapshot and a gRPC stream open until
	// its context ends: end it as soon as this pull returns, whether fn failed or not.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, _ := json.Marshal(cmd)
	info, err := fc.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: body})
	if err != nil {
		return c.fromStatus(ctx, err)
	}
	for _, ep := range info.Endpoint {
		// The ticket is valid only at the replica that issued it, which the endpoint
		// names when a load balancer may have sent the next call elsewhere.
		addr, err := endpointAddr(ep)
		if err != nil {
			return err
		}
		at, err := c.conn(addr)
		if err != nil {
			return err
		}
		var opts []grpc.CallOption
		if alias {
			codec := newAliasCodec()
			defer codec.release()
			opts = append(opts, grpc.ForceCodecV2(codec))
		}
		stream, err := at.DoGet(ctx, ep.Ticket, opts...)
		if err != nil {
			return c.fromStatus(ctx, err)
		}
		if err := each(stream); err != nil {
			var ce callerError
			if errors.As(err, &ce) {
				return ce.err
			}
			if err == io.EOF {
				continue
			}
			if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable && ctx.Err() == nil {
				// The exchange was reached (it answered GetFlightInfo and began the
				// stream): the connection broke during the pull.
				return fmt.Errorf("the connection to the exchange's Flight port %s broke during the pull (%s); pull again", cmp.Or(addr, c.cfg.Flight), st.Message())
			}
			return c.fromStatus(ctx, err)
		}
	}
	return nil
}

// cursorOf returns the cursor a pull's schema carries.
func cursorOf(sc *arrow.Schema) string {
	if i := sc.Metadata().FindKey(exchange.MetaCursor); i >= 0 {
		return sc.Metadata().Values()[i]
	}
	return ""
}

// Schema returns the schema a pull of cmd would return, without its rows (Flight
// GetSchema). The exchange decides it as a read of cmd's dataset alone, so asking
// touches no other dataset.
func (c *Client) Schema(ctx context.Context, cmd exchange.PullCmd) (*arrow.Schema, error) {
	fc, ctx, err := c.flight(ctx)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(cmd)
	res, err := fc.GetSchema(ctx, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: body})
	if err != nil {
		return nil, c.fromStatus(ctx, err)
	}
	return flight.DeserializeSchema(res.GetSchema(), c.mem)
}

// Catalog lists the datasets the caller may see.
func (c *Client) Catalog(ctx context.Context) ([]exchange.DatasetInfo, error) {
	var out struct {
		Datasets []exchange.DatasetInfo `json:"datasets"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/catalog", nil, &out)
	return out.Datasets, err
}

// Lookup returns one record by key.
func (c *Client) Lookup(ctx context.Context, dataset string, cmd exchange.LookupCmd) (map[string]any, error) {
	var out struct {
		Record map[string]any `json:"record"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/datasets/"+dataset+"/lookup", cmd, &out)
	return out.Record, err
}

// Verify checks claims about one record and returns whether each matches.
func (c *Client) Verify(ctx context.Context, dataset string, cmd exchange.VerifyCmd) (map[string]bool, error) {
	var out struct {
		Match map[string]bool `json:"match"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/datasets/"+dataset+"/verify", cmd, &out)
	return out.Match, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.HTTP+path, body)
	if err != nil {
		return err
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the exchange at %s: %w (is `govx exchange serve` or `govx demo` running?)", c.cfg.HTTP, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb exchange.ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error.Code == "" {
			return &Error{Status: resp.Status, Code: "http_error", Message: strings.TrimSpace(string(data))}
		}
		return &Error{Status: resp.Status, Code: eb.Error.Code, Message: eb.Error.Message, Reasons: eb.Error.Reasons}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(out)
}
