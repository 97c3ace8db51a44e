// Package service is the one place where a request to the exchange is decided, audited
// and answered. Flight and HTTP are thin edges over it: they authenticate the caller
// into an exchange.Subject, hand the request here, and map the *exchange.Error they get
// back to their protocol's codes. Here the policy input is built once per request, the
// decision applied once (columns, row filter ANDed with the caller's, masks, max rows),
// and the audit decision event written durably before any data leaves; if the audit
// spool refuses, so does the request.
//
// Only the edges (exchange/flight, exchange/httpapi) and the wiring import it.
package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/auth"
	"govx/exchange/store"
	"govx/schemas"
	"govx/schemas/license"
)

// Decider makes policy decisions; exchange/policy's engine is the real one.
type Decider interface {
	Decide(ctx context.Context, req exchange.Request) exchange.Decision
}

// Auditor durably records audit events; exchange/audit's spool is the real one. Append
// must copy what it keeps of ev: the service reuses its events. Writable says why events
// cannot be recorded now (nil when they can): a Flight ticket, whose decision was
// recorded when it was issued, is not served while it says no.
type Auditor interface {
	Append(ctx context.Context, ev *audit.Event) error
	Writable() error
}

// Service answers requests against the store.
type Service struct {
	cat     *schemas.Catalog
	tables  map[string]*store.Table
	policy  Decider
	audit   Auditor
	signer  *auth.Signer
	maskKey []byte
	alloc   memory.Allocator
	log     *slog.Logger
	now     func() time.Time

	ticketTTL time.Duration
	maxBody   int64

	// epoch names the Kafka cluster the store's positions belong to; cursors carry it,
	// so one issued before a rebuild from another cluster is refused, not misread.
	epoch string

	// instance names this replica and boot this run of it: a ticket carries both and is
	// redeemed only where and while its single use can be enforced (redeemed is kept in
	// memory, per process).
	instance string
	boot     string

	// redeemed holds the request ids of redeemed Flight tickets until they expire:
	// a ticket serves one stream.
	redeemMu sync.Mutex
	redeemed map[string]time.Time

	// pending counts audit writes still running after their response was sent.
	pending sync.WaitGroup
	laterMu sync.Mutex
	closing bool

	// authFails limits, per client address, how many failed authentications are
	// audited: a flood of bad credentials must not fill the audit spool's disk.
	failMu       sync.Mutex
	failLimiters map[string]*rate.Limiter
	failAll      *rate.Limiter // all addresses together
	failDropped  uint64
	authFailures *prometheus.CounterVec // by audited "yes" | "no"
	handshakeLog *rate.Limiter          // bounds the log lines of refused TLS handshakes

	// budgets limits how many keys each department checks by lookup and verify.
	budgets budgets

	// keys returns the licence issuers' public keys (WithKeyring); nil: the policy's.
	keys func() *license.Keyring

	rateLimit rate.Limit
	rateBurst int
	limMu     sync.Mutex
	limiters  map[string]*rate.Limiter

	// slots bounds the pulls each department streams at once (slots.go).
	slots pullSlots
}

// Option configures a Service.
type Option func(*Service)

// WithAllocator sets the Arrow allocator batches are built with (tests pass a checked one).
func WithAllocator(a memory.Allocator) Option { return func(s *Service) { s.alloc = a } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithClock sets the clock (tests move time to expire tickets and agreements).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithTicketTTL sets how long a Flight ticket stays valid (default 5 minutes).
func WithTicketTTL(d time.Duration) Option { return func(s *Service) { s.ticketTTL = d } }

// WithCursorEpoch sets the epoch cursors are bound to: the Kafka cluster id of the
// topics the store was built from.
func WithCursorEpoch(epoch string) Option { return func(s *Service) { s.epoch = epoch } }

// WithInstance names the replica (its audit instance): tickets it issues are redeemed
// only by it. Replicas sharing a secret must have distinct instances.
func WithInstance(id string) Option { return func(s *Service) { s.instance = id } }

// WithRateLimit limits each department to perSecond requests with the given burst;
// zero means no limit.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(s *Service) { s.rateLimit, s.rateBurst = rate.Limit(perSecond), burst }
}

// New returns a service over tables. secret signs tickets and cursors and derives the
// per-department keys of the hash mask; it must be at least 32 bytes and shared by
// replicas that must accept each other's tickets and cursors.
func New(cat *schemas.Catalog, tables map[string]*store.Table, policy Decider, auditor Auditor, secret []byte, opts ...Option) (*Service, error) {
	signer, err := auth.NewSigner(secret)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("govx-mask-hash"))
	s := &Service{
		cat: cat, tables: tables, policy: policy, audit: auditor, signer: signer,
		maskKey: m.Sum(nil), alloc: memory.DefaultAllocator, log: slog.Default(), now: time.Now,
		ticketTTL: 5 * time.Minute, maxBody: 1 << 20, limiters: map[string]*rate.Limiter{}, slots: newPullSlots(), redeemed: map[string]time.Time{},
		failLimiters: map[string]*rate.Limiter{}, boot: newRequestID(),
		failAll: rate.NewLimiter(50, 200), handshakeLog: rate.NewLimiter(5, 20),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govx_auth_failures_total",
			Help: `Failed authentications; audited="no" counts those over the per-address audit budget, which are logged in summary instead of audited one by one, and TLS handshakes refused for their client certificate (no request to audit).`},
			[]string{"audited"}),
	}
	for _, v := range []string{"yes", "no"} {
		s.authFailures.WithLabelValues(v) // shown at 0 from the start, not only after a failure
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Wait stops starting work after a response and returns once the work started has
// ended; call it after the edges stopped and before the audit spool closes.
func (s *Service) Wait() {
	s.laterMu.Lock()
	s.closing = true
	s.laterMu.Unlock()
	s.pending.Wait()
}

// later runs fn after the response, unless the service is closing (then it reports
// false and the caller runs fn itself).
func (s *Service) later(fn func()) bool {
	s.laterMu.Lock()
	defer s.laterMu.Unlock()
	if s.closing {
		return false
	}
	s.pending.Add(1)
	go func() {
		defer s.pending.Done()
		fn()
	}()
	return true
}

// MaxBody is the largest request body (cmd, lookup, verify) the edges should read.
func (s *Service) MaxBody() int64 { return s.maxBody }

// Catalog returns the dataset descriptions the subject may discover: one `discover`
// decision per dataset, each audited.
func (s *Service) Catalog(ctx context.Context, c Caller) ([]exchange.DatasetInfo, error) {
	if err := s.admit(c); err != nil {
		return nil, s.auditRejected(ctx, c, exchange.ActionDiscover, "", err)
	}
	var out []exchange.DatasetInfo
	// One listing is one request: its per-dataset decisions share its id, so that the
	// datasets it did not show are read as one listing, not as a run of denials.
	rid := newRequestID()
	for _, d := range s.cat.Datasets() {
		if _, ok := s.tables[d.ID]; !ok {
			continue
		}
		req := exchange.Request{Subject: c.Subject, Action: exchange.ActionDiscover, Dataset: d.ID, Time: s.now()}
		dec := s.ask(ctx, req)
		if err := s.auditDecision(ctx, c, rid, req, dec, nil, nil); err != nil {
			return nil, err
		}
		if dec.Allow {
			out = append(out, s.describe(ctx, d, dec))
		}
	}
	return out, nil
}

// describe describes a dataset as the discover decision dec lets the caller see it: the
// row count is of the rows in its scope (the decision's row filter), not of the whole
// register, and there is none when the caller may only aggregate the dataset (the
// decision carries aggregate terms): an exact count includes the rows of suppressed
// cells, so a change inside one would show (docs/aggregate.md).
func (s *Service) describe(ctx context.Context, d *schemas.Dataset, dec exchange.Decision) exchange.DatasetInfo {
	info := exchange.DatasetInfo{ID: d.ID, Version: d.Version, TitleZh: d.Title.Zh, TitleEn: d.Title.En,
		Provider: d.Provider.Code, Key: d.Key}
	if dec.Aggregate == nil {
		snap := s.tables[d.ID].Snapshot()
		if n, err := snap.Count(ctx, dec.RowFilter); err == nil {
			info.Rows = &n
		}
		snap.Release()
	}
	for _, f := range d.Fields {
		info.Fields = append(info.Fields, exchange.FieldInfo{Name: f.Name, Type: f.Type, Nullable: f.Nullable, Sensitivity: string(f.Sensitivity), TitleZh: f.Title.Zh, TitleEn: f.Title.En})
	}
	return info
}

// Describe returns one dataset's description if the subject may discover it; an
// unknown dataset and one the subject may not discover both answer not found, so the
// catalog's existence is not leaked either.
func (s *Service) Describe(ctx context.Context, c Caller, id string) (exchange.DatasetInfo, error) {
	notFound := exchange.E(exchange.NotFound, "unknown_dataset", "no dataset "+quote(id)+" in your catalog; `govx catalog` lists the datasets you may see")
	req := exchange.Request{Subject: c.Subject, Action: exchange.ActionDiscover, Dataset: id, Time: s.now()}
	if err := s.admit(c); err != nil {
		return exchange.DatasetInfo{}, s.auditRejected(ctx, c, exchange.ActionDiscover, id, err)
	}
	d, _, err := s.dataset(id)
	if err != nil {
		return exchange.DatasetInfo{}, s.auditRejected(ctx, c, exchange.ActionDiscover, id, notFound)
	}
	dec := s.ask(ctx, req)
	if !dec.Allow {
		if err := s.auditDecision(ctx, c, newRequestID(), req, dec, nil, notFound); err != nil {
			return exchange.DatasetInfo{}, err
		}
		return exchange.DatasetInfo{}, notFound
	}
	if err := s.auditDecision(ctx, c, newRequestID(), req, dec, nil, nil); err != nil {
		return exchange.DatasetInfo{}, err
	}
	return s.describe(ctx, d, dec), nil
}

// admit applies the per-department rate limit.
func (s *Service) admit(c Caller) error {
	if s.rateLimit <= 0 {
		return nil
	}
	s.limMu.Lock()
	l, ok := s.limiters[c.Subject.Department]
	if !ok {
		l = rate.NewLimiter(s.rateLimit, s.rateBurst)
		s.limiters[c.Subject.Department] = l
	}
	s.limMu.Unlock()
	if !l.Allow() {
		return exchange.E(exchange.ResourceExhausted, "rate_limited", "request rate limit of your department reached; retry shortly")
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Collectors returns the service's Prometheus metrics: govx_pulls_streaming,
// govx_pulls_refused_in_progress_total and govx_auth_failures_total by
// whether each failure was audited.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.authFailures, s.slots.streaming, s.slots.refused, s.slots.stalled}
}
