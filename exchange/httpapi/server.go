// Package httpapi serves the exchange over HTTP: the catalog, pulls as an Arrow IPC
// stream (or CSV / NDJSON by Accept), lookups and verifies with keys in bodies, and the
// operator's /healthz, /readyz and /metrics. Errors are JSON with a stable code (all
// listed in docs/errors.md). Authentication is a bearer token or a client
// certificate; everything else is exchange/service.
//
// Only the wiring (cmd/govx, the demo) imports it.
package httpapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/csv"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange"
	"govx/exchange/arrowtext"
	"govx/exchange/auth"
	"govx/exchange/service"
)

// Content types of a pull's response.
const (
	ContentArrow  = "application/vnd.apache.arrow.stream"
	ContentCSV    = "text/csv"
	ContentNDJSON = "application/x-ndjson"
)

// Handler is the exchange's HTTP API.
type Handler struct {
	svc      *service.Service
	tokens   *auth.Tokens
	ready    func() error
	mem      memory.Allocator
	log      *slog.Logger
	mux      *http.ServeMux
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New returns the HTTP API over svc. ready reports readiness for /readyz (nil: ready;
// otherwise why not, which /readyz answers with 503 not_ready); reg receives
// the API's metrics and is served at /metrics together with whatever else it holds
// (unless WithoutOps: then Ops serves those three on a listener of their own).
func New(svc *service.Service, tokens *auth.Tokens, ready func() error, reg *prometheus.Registry, log *slog.Logger, opts ...Option) *Handler {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{svc: svc, tokens: tokens, ready: ready, mem: memory.DefaultAllocator, log: log, mux: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govx_http_requests_total", Help: "HTTP API requests by route and status."}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "govx_http_request_seconds", Help: "HTTP API latency by route.",
			Buckets: []float64{.0001, .0005, .001, .002, .005, .01, .05, .1, .5, 1, 5, 30}}, []string{"route"}),
	}
	reg.MustRegister(h.requests, h.latency)
	if !o.noOps {
		registerOps(h.mux, ready, reg)
	}
	h.route("GET /v1/catalog", "catalog", exchange.ActionDiscover, h.catalog)
	h.route("GET /v1/datasets/{id}", "dataset", exchange.ActionDiscover, h.dataset)
	h.route("POST /v1/datasets/{id}/pull", "pull", exchange.ActionRead, h.pull)
	h.route("POST /v1/datasets/{id}/lookup", "lookup", exchange.ActionLookup, h.lookup)
	h.route("POST /v1/datasets/{id}/verify", "verify", exchange.ActionVerify, h.verify)
	h.route("POST /v1/datasets/{id}/aggregate", "aggregate", exchange.ActionAggregate, h.aggregate)
	h.route("POST /v1/subjects/person", "subject", exchange.ActionLookup, h.subject(exchange.SubjectPerson))
	h.route("POST /v1/subjects/organization", "subject", exchange.ActionLookup, h.subject(exchange.SubjectOrganization))
	h.route("POST /v1/licenses/verify", "license_verify", exchange.ActionVerify, h.licenceVerify)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, exchange.E(exchange.NotFound, "no_route", "no such endpoint: "+r.Method+" "+r.URL.Path+"; see docs/errors.md and the README"))
	})
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// StatusClientClosedRequest is what the metrics count for a request whose client went
// away before its response was complete (nginx's 499): not the exchange's failure, so
// never a 500.
const StatusClientClosedRequest = 499

type statusWriter struct {
	http.ResponseWriter
	status int
	// outcome, when set, is what the request counts as although status went out: a
	// pull cut short after its 200.
	outcome int
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// FlushError flushes and says whether the connection took the bytes
// (http.ResponseController uses it).
func (s *statusWriter) FlushError() error {
	return http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the connection's own writer: a pull bounds
// each write by a deadline (countWriter).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// route authenticates every API call before its handler runs: no anonymous access.
func (h *Handler) route(pattern, name string, action exchange.Action, fn func(http.ResponseWriter, *http.Request, service.Caller)) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			outcome := sw.status
			if sw.outcome != 0 {
				outcome = sw.outcome
			}
			if r.Context().Err() != nil {
				// The request's context ends before the handler returns only when the
				// client goes away: whatever was written did not all reach it.
				outcome = StatusClientClosedRequest
			}
			h.requests.WithLabelValues(name, strconv.Itoa(outcome)).Inc()
			h.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
		}()
		c, err := h.caller(r)
		if err != nil {
			// A failed authentication is an access attempt too: audited, then refused.
			writeError(sw, h.svc.Unauthenticated(r.Context(), c, action, r.PathValue("id"), err))
			return
		}
		fn(sw, r, c)
	})
}

func (h *Handler) caller(r *http.Request) (service.Caller, error) {
	c := service.Caller{ClientAddr: r.RemoteAddr}
	var verified [][]*x509.Certificate
	if r.TLS != nil {
		verified = r.TLS.VerifiedChains
	}
	subj, err := h.tokens.Subject(r.Header.Get("Authorization"), verified)
	c.Subject = subj
	return c, err
}

// body reads a request body, which must be JSON and say so: a form post (what curl -d
// and an HTML form send) or a body of no declared type is refused rather than guessed.
func (h *Handler) body(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := checkJSONType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.svc.MaxBody()))
	if err != nil {
		return nil, exchange.E(exchange.Invalid, "body_too_large", "the request body is larger than 1 MiB or could not be read")
	}
	return b, nil
}

// checkJSONType accepts application/json with at most a charset parameter, which
// must be UTF-8 (JSON is UTF-8; RFC 8259).
func checkJSONType(ctype string) error {
	refuse := func(why string) error {
		return exchange.E(exchange.Invalid, "unsupported_media_type",
			why+"; send the body as JSON with the header Content-Type: application/json (curl: -H 'Content-Type: application/json')")
	}
	if ctype == "" {
		return refuse("the request has no Content-Type")
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil || mt != "application/json" {
		return refuse("the Content-Type " + strconv.Quote(ctype) + " is not application/json")
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return refuse("the Content-Type parameter " + k + "=" + v + " is not accepted; JSON is UTF-8")
		}
	}
	return nil
}

func (h *Handler) catalog(w http.ResponseWriter, r *http.Request, c service.Caller) {
	list, err := h.svc.Catalog(r.Context(), c)
	if err != nil {
		writeError(w, err)
		return
	}
	if list == nil {
		list = []exchange.DatasetInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"datasets": list})
}

func (h *Handler) dataset(w http.ResponseWriter, r *http.Request, c service.Caller) {
	info, err := h.svc.Describe(r.Context(), c, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (h *Handler) pull(w http.ResponseWriter, r *http.Request, c service.Caller) {
	ctx := r.Context()
	id := r.PathValue("id")
	b, err := h.body(w, r)
	var cmd exchange.PullCmd
	if err == nil {
		cmd, err = service.ParseCmd(b)
	}
	if err == nil && cmd.Dataset != "" && cmd.Dataset != id {
		err = exchange.E(exchange.Invalid, "dataset_mismatch", "the body names dataset "+strconv.Quote(cmd.Dataset)+" but the URL "+strconv.Quote(id))
	}
	if err != nil {
		writeError(w, h.svc.Rejected(ctx, c, exchange.ActionRead, id, err))
		return
	}
	cmd.Dataset = id
	format, ctype := negotiate(r.Header.Get("Accept"))
	g, err := h.svc.Open(ctx, c, cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	sink := &httpSink{w: w, format: format, ctype: ctype, mem: h.mem, stall: h.svc.PullStallTimeout()}
	_, err = h.svc.Stream(ctx, g, sink)
	if err != nil {
		if !sink.started {
			writeError(w, err)
			return
		}
		// Headers are gone; cutting the stream short is the only signal left, and the
		// complete event records the error.
		sw, _ := w.(*statusWriter)
		if clientGone(r, err) {
			h.log.Info("client went away during a pull", "request_id", g.RequestID, "rows", sink.rows, "err", err)
			if sw != nil {
				sw.outcome = StatusClientClosedRequest
			}
		} else {
			h.log.Warn("pull ended with an error mid-stream", "request_id", g.RequestID, "err", err)
			if sw != nil {
				sw.outcome = statusOf(err)
			}
		}
		panic(http.ErrAbortHandler)
	}
}

// negotiate picks a pull's format from Accept: of the types the exchange serves, the
// one with the highest q-value (the first listed among equals; q=0 means "not this").
// With no Accept, or none the exchange serves, the answer is an Arrow IPC stream.
func negotiate(accept string) (format, ctype string) {
	format, best := "arrow", -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		var f string
		switch mt {
		case ContentArrow, "application/*", "*/*":
			f = "arrow"
		case ContentCSV, "text/*":
			f = "csv"
		case ContentNDJSON, "application/jsonl":
			f = "ndjson"
		default:
			continue
		}
		if q > 0 && q > best {
			format, best = f, q
		}
	}
	switch format {
	case "csv":
		return "csv", ContentCSV + "; charset=utf-8"
	case "ndjson":
		return "ndjson", ContentNDJSON
	}
	return "arrow", ContentArrow
}

type httpSink struct {
	w       http.ResponseWriter
	format  string
	ctype   string
	mem     memory.Allocator
	stall   time.Duration // service.WithPullStallTimeout
	started bool
	rows    int64
	cw      *countWriter
	ipcw    *ipc.Writer
	csvw    *csv.Writer
}

// countWriter counts the bytes sent. A write fails only when the connection does: the
// client went away, or took too little for the stall timeout, which the audit log
// records as aborted. A write is cut into pieces, each given the stall timeout to leave:
// a client that reads slowly is not taken for one that stopped while a batch of
// megabytes is on its way. A piece leaves once the client has taken about the piece and
// what the kernel held unsent before it (netopt.Listener: 64 KB), 192 KB at most: under the
// 512 KB docs/configuration.md promises (Flight's pieces pass through gRPC's 256 KB write
// buffer as well).
type countWriter struct {
	w     io.Writer
	rc    *http.ResponseController
	stall time.Duration
	n     int64
}

// maxPiece is the most one deadline covers.
const maxPiece = 128 << 10

func (c *countWriter) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		piece := p[written:]
		if c.stall > 0 {
			piece = piece[:min(len(piece), maxPiece)]
			// Not every ResponseWriter has a connection to bound (tests' recorders):
			// then nothing is.
			_ = c.rc.SetWriteDeadline(time.Now().Add(c.stall))
		}
		n, err := c.w.Write(piece)
		written += n
		c.n += int64(n)
		if err != nil {
			return written, c.gone(err)
		}
	}
	return written, nil
}

func (c *countWriter) gone(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return exchange.ClientStalled(c.stall)
	}
	return exchange.ClientGone(err)
}

// end pushes out what the response still buffers, under the stall bound, then lifts
// the bound: the connection may serve other requests after this one.
func (c *countWriter) end() error {
	if c.stall > 0 {
		_ = c.rc.SetWriteDeadline(time.Now().Add(c.stall))
	}
	err := c.rc.Flush()
	if c.stall > 0 {
		_ = c.rc.SetWriteDeadline(time.Time{})
	}
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		return c.gone(err)
	}
	return nil
}

func (s *httpSink) Begin(schema *arrow.Schema) error {
	md := schema.Metadata()
	if i := md.FindKey(exchange.MetaCursor); i >= 0 {
		s.w.Header().Set("Govx-Cursor", md.Values()[i])
	}
	if i := md.FindKey(exchange.MetaRequestID); i >= 0 {
		s.w.Header().Set("Govx-Request-Id", md.Values()[i])
	}
	s.w.Header().Set("Content-Type", s.ctype)
	s.w.WriteHeader(http.StatusOK)
	s.started = true
	s.cw = &countWriter{w: s.w, rc: http.NewResponseController(s.w), stall: s.stall}
	switch s.format {
	case "arrow":
		s.ipcw = ipc.NewWriter(s.cw, ipc.WithSchema(schema), ipc.WithAllocator(s.mem))
	case "csv":
		schema = arrowtext.Schema(schema)
		s.csvw = csv.NewWriter(s.cw, schema, csv.WithHeader(true), csv.WithNullWriter(""))
		// The header goes out with no row yet: an empty result (a changes pull with
		// nothing new) still names its columns.
		b := array.NewRecordBuilder(s.mem, schema)
		defer b.Release()
		empty := b.NewRecord()
		defer empty.Release()
		return s.csvw.Write(empty)
	}
	return nil
}

func (s *httpSink) Write(rec arrow.Record) error {
	s.rows += rec.NumRows()
	switch s.format {
	case "arrow":
		return s.ipcw.Write(rec)
	}
	exact := arrowtext.Record(rec, s.mem) // decimals and timestamps as their exact text
	defer exact.Release()
	if s.format == "csv" {
		return s.csvw.Write(exact)
	}
	return array.RecordToJSON(exact, s.cw)
}

func (s *httpSink) Bytes() int64 {
	if s.cw == nil {
		return 0
	}
	return s.cw.n
}

// Flush ends the stream (the IPC end marker, the CSV writer's buffer) and pushes out
// what the response still buffers: the pull's complete event waits for it.
func (s *httpSink) Flush() error {
	var err error
	switch {
	case s.ipcw != nil:
		err = s.ipcw.Close()
	case s.csvw != nil:
		s.csvw.Flush()
		err = s.csvw.Error()
	}
	if s.cw != nil {
		if eerr := s.cw.end(); err == nil {
			err = eerr
		}
	}
	return err
}

func (h *Handler) lookup(w http.ResponseWriter, r *http.Request, c service.Caller) {
	id := r.PathValue("id")
	b, err := h.body(w, r)
	var cmd exchange.LookupCmd
	if err == nil {
		cmd, err = service.ParseLookup(b)
	}
	if err != nil {
		writeError(w, h.svc.Rejected(r.Context(), c, exchange.ActionLookup, id, err))
		return
	}
	replied := false
	err = h.svc.Lookup(r.Context(), c, id, cmd, func(rec map[string]any) (int64, error) {
		replied = true
		return sendJSON(w, map[string]any{"record": rec})
	})
	if err != nil && !replied {
		writeError(w, err)
	}
}

// sendJSON writes v as a 200 response and pushes it onto the connection, returning the
// bytes written and whether the connection took them: the audit log records a lookup
// whose record never left as aborted, not as read.
func sendJSON(w http.ResponseWriter, v any) (int64, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return 0, err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	n, err := w.Write(b.Bytes())
	if err == nil {
		err = http.NewResponseController(w).Flush()
	}
	if err != nil {
		return int64(n), exchange.ClientGone(err)
	}
	return int64(n), nil
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request, c service.Caller) {
	id := r.PathValue("id")
	b, err := h.body(w, r)
	var cmd exchange.VerifyCmd
	if err == nil {
		cmd, err = service.ParseVerify(b)
	}
	if err != nil {
		writeError(w, h.svc.Rejected(r.Context(), c, exchange.ActionVerify, id, err))
		return
	}
	match, err := h.svc.Verify(r.Context(), c, id, cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"match": match})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// StatusOf maps an error kind to its HTTP status.
func StatusOf(k exchange.Kind) int {
	switch k {
	case exchange.Invalid:
		return http.StatusBadRequest
	case exchange.Unauthenticated:
		return http.StatusUnauthorized
	case exchange.PermissionDenied:
		return http.StatusForbidden
	case exchange.NotFound:
		return http.StatusNotFound
	case exchange.ResourceExhausted:
		return http.StatusTooManyRequests
	case exchange.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// statusOf is the HTTP status of err: by its kind, except where HTTP has a more exact
// status than the kind's.
func statusOf(err error) int {
	if xe, ok := errors.AsType[*exchange.Error](err); ok {
		if xe.Code == "unsupported_media_type" {
			return http.StatusUnsupportedMediaType
		}
		return StatusOf(xe.Kind)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return StatusClientClosedRequest
	}
	return http.StatusInternalServerError
}

// clientGone reports whether a request failed because its client went away.
func clientGone(r *http.Request, err error) bool {
	return r.Context().Err() != nil || errors.Is(err, context.Canceled)
}

func writeError(w http.ResponseWriter, err error) {
	var body exchange.ErrorBody
	var xe *exchange.Error
	if errors.As(err, &xe) {
		body.Error.Code, body.Error.Message, body.Error.Reasons = xe.Code, xe.Message, xe.Reasons
	} else if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		body.Error.Code, body.Error.Message = "cancelled", "the request was cancelled"
	} else {
		slog.Error("http: internal error", "err", err)
		body.Error.Code, body.Error.Message = "internal", "internal error; the exchange logged it"
	}
	switch body.Error.Code {
	case "unauthenticated":
		w.Header().Set("WWW-Authenticate", `Bearer realm="govx"`)
	case "rate_limited", "pulls_in_progress":
		// Both clear within a second or so (a token of the rate, a pull ending); a key
		// budget's window is an hour and says so in its message instead.
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, statusOf(err), body)
}
