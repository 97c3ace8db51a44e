package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"golang.org/x/time/rate"

	"govx/exchange"
	"govx/exchange/client"
)

// response is a request answered with data (rows, a record, or a verification).
type response struct {
	op        string
	replica   int
	at        time.Time // when the first of its data reached the client
	dept      string
	action    string
	dataset   string
	requestID string   // pulls: from the stream's schema
	key       string   // lookups and verifications
	columns   []string // the columns received
}

// failure is a request that got an error.
type failure struct {
	op      string
	replica int
	worker  int
	at      time.Time
	kind    string
	msg     string
}

// consumer is a department system of the load, with what its agreement grants.
type consumer struct {
	dept, purpose string
	allowed       []string // columns its agreement names
	region        string   // every row's region column starts with it ("" any)
	regionCol     string
	masked        string // a column it may see only masked ("" none)
	hashed        string // a column it may see only as a hash
}

var (
	mz  = consumer{dept: "mz-3301", purpose: "minimum-living-allowance-review", allowed: []string{"id_number", "name", "household_region", "birth_date"}, region: "3301", regionCol: "household_region", masked: "id_number"}
	fgw = consumer{dept: "fgw-33", purpose: "regional-economic-comparison", allowed: []string{"indicator_code", "region_code", "period", "value", "unit"}}
	sw  = consumer{dept: "sw-33", purpose: "tax-registration-check", allowed: []string{"uscc", "name", "legal_rep_id_number", "legal_rep_name", "region_code", "status"}, region: "33", regionCol: "region_code"}
	zj  = consumer{dept: "zj-3205", purpose: "housing-security-qualification", allowed: []string{"parcel_code", "region_code", "land_use", "area_m2", "right_type", "holder_uscc", "holder_id_number", "registered_on"}, region: "3205", regionCol: "region_code", hashed: "holder_id_number"}
	wj  = consumer{dept: "wj-3302", purpose: "birth-certificate-issuance"}
)

var citizenID = regexp.MustCompile(`^[0-9]{17}[0-9X]$`)

type op struct {
	name   string
	weight int
	do     func(ctx context.Context, w *worker) (*response, error)
}

// load is the department systems' traffic: workers per replica, one client per
// department each, sharing a rate limit.
type load struct {
	cfg     config
	src     *sources
	lim     *rate.Limiter
	workers []*worker
	ops     []op

	cursorMu sync.Mutex
	cursors  map[string]string // dataset -> the latest cursor, from either replica

	mu         sync.Mutex
	responses  []*response
	failures   []failure
	violations []string
	byOp       map[string]*[2]int64 // op -> ok, failed
	reconnects []reconnect
}

// reconnect is a worker's first success after errors: how long after its replica was
// serving again.
type reconnect struct {
	replica   int
	lastError time.Time
	success   time.Time
}

type worker struct {
	id, replica int
	clients     map[string]*client.Client
	rng         *rand.Rand
	lastErr     time.Time
	failing     bool
}

func newLoad(cl *cluster, src *sources, cfg config, seed uint64) (*load, error) {
	ld := &load{cfg: cfg, src: src, lim: rate.NewLimiter(rate.Limit(cfg.rate), int(cfg.rate/10)+1),
		cursors: map[string]string{}, byOp: map[string]*[2]int64{}}
	ld.ops = []op{
		{"lookup", 35, ld.lookup},
		{"verify", 25, ld.verify},
		{"pull population", 6, ld.pull(mz, "population.person", nil, false)},
		{"changes population", 12, ld.pull(mz, "population.person", nil, true)},
		{"pull indicators", 4, ld.pull(fgw, "economy.indicator", []exchange.Filter{{Column: "region_code", Op: "prefix", Value: "3301"}}, false)},
		{"changes indicators", 8, ld.pull(fgw, "economy.indicator", nil, true)},
		{"pull organizations", 5, ld.pull(sw, "legal_entity.organization", nil, false)},
		{"pull parcels", 5, ld.pull(zj, "resource.land_parcel", nil, false)},
	}
	for _, o := range ld.ops {
		ld.byOp[o.name] = &[2]int64{}
	}
	for r := range replicas {
		for i := 0; i < cfg.workers; i++ {
			w := &worker{id: len(ld.workers), replica: r, clients: map[string]*client.Client{},
				rng: rand.New(rand.NewPCG(seed, uint64(len(ld.workers))))}
			for _, c := range []consumer{mz, fgw, sw, zj, wj} {
				tok, err := cl.token(c.dept)
				if err != nil {
					return nil, err
				}
				if w.clients[c.dept], err = client.New(client.Config{Flight: cl.flight[r], HTTP: cl.http[r], Token: tok}); err != nil {
					return nil, err
				}
			}
			ld.workers = append(ld.workers, w)
		}
	}
	return ld, nil
}

func (ld *load) close() {
	for _, w := range ld.workers {
		for _, c := range w.clients {
			c.Close()
		}
	}
}

func (ld *load) total() int64 {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	var n int64
	for _, v := range ld.byOp {
		n += v[0] + v[1]
	}
	return n
}

func (ld *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	sum := 0
	for _, o := range ld.ops {
		sum += o.weight
	}
	for _, w := range ld.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ld.lim.Wait(ctx) == nil {
				n := w.rng.IntN(sum)
				o := ld.ops[0]
				for _, c := range ld.ops {
					if n < c.weight {
						o = c
						break
					}
					n -= c.weight
				}
				ld.one(ctx, w, o)
			}
		}()
	}
	wg.Wait()
}

func (ld *load) one(ctx context.Context, w *worker, o op) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := o.do(rctx, w)
	if dl, _ := ctx.Deadline(); ctx.Err() != nil || !time.Now().Before(dl) {
		return // the run ended mid-request: neither a success nor an error of the exchange
	}
	now := time.Now()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if err != nil {
		ld.byOp[o.name][1]++
		kind, msg := classify(err)
		ld.failures = append(ld.failures, failure{op: o.name, replica: w.replica, worker: w.id, at: now, kind: kind, msg: msg})
		w.lastErr, w.failing = now, true
		return
	}
	ld.byOp[o.name][0]++
	if resp != nil {
		resp.op, resp.replica = o.name, w.replica
		ld.responses = append(ld.responses, resp)
	}
	if w.failing {
		w.failing = false
		ld.reconnects = append(ld.reconnects, reconnect{replica: w.replica, lastError: w.lastErr, success: now})
	}
}

// classify names an error by the exchange's code, or by what the transport said.
func classify(err error) (kind, msg string) {
	msg = err.Error()
	if ce, ok := errors.AsType[*client.Error](err); ok {
		return ce.Code, msg
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout", msg
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "cannot reach"):
		return "connection_refused", msg
	case strings.Contains(msg, "EOF"), strings.Contains(msg, "connection reset"), strings.Contains(msg, "Unavailable"):
		return "connection_lost", msg
	}
	return "other", msg
}

func (ld *load) violate(format string, args ...any) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if len(ld.violations) < 100 {
		ld.violations = append(ld.violations, fmt.Sprintf(format, args...))
	}
}

func keyJSON(k string) json.RawMessage {
	b, _ := json.Marshal(k)
	return b
}

// lookup: the Hangzhou civil affairs bureau looks up a Hangzhou resident.
func (ld *load) lookup(ctx context.Context, w *worker) (*response, error) {
	p := ld.src.persons.hangzhou[w.rng.IntN(len(ld.src.persons.hangzhou))]
	rec, err := w.clients[mz.dept].Lookup(ctx, "population.person", exchange.LookupCmd{Key: keyJSON(p[0]), Purpose: mz.purpose})
	if err != nil {
		return nil, err
	}
	resp := &response{at: time.Now(), dept: mz.dept, action: "lookup", dataset: "population.person", key: p[0]}
	for col, v := range rec {
		resp.columns = append(resp.columns, col)
		s, _ := v.(string)
		switch {
		case !slices.Contains(mz.allowed, col):
			ld.violate("lookup at replica %d returned column %s outside %s's agreement", w.replica, col, mz.dept)
		case col == mz.regionCol && !strings.HasPrefix(s, mz.region):
			ld.violate("lookup at replica %d returned a person of region %q to %s (scope %s)", w.replica, s, mz.dept, mz.region)
		case col == mz.masked && !strings.Contains(s, "*"):
			ld.violate("lookup at replica %d returned %s unmasked to %s", w.replica, col, mz.dept)
		}
	}
	return resp, nil
}

// verify: the Ningbo health commission checks a Ningbo resident's name.
func (ld *load) verify(ctx context.Context, w *worker) (*response, error) {
	p := ld.src.persons.ningbo[w.rng.IntN(len(ld.src.persons.ningbo))]
	m, err := w.clients[wj.dept].Verify(ctx, "population.person", exchange.VerifyCmd{Key: keyJSON(p[0]),
		Claims: map[string]any{"name": p[1]}, Purpose: wj.purpose})
	if err != nil {
		return nil, err
	}
	if !m["name"] || len(m) != 1 {
		ld.violate("verification at replica %d of %s's true name answered %v", w.replica, p[0], m)
	}
	return &response{at: time.Now(), dept: wj.dept, action: "verify", dataset: "population.person", key: p[0]}, nil
}

// pull returns an operation pulling dataset as c, in full or (changes) since the latest
// cursor either replica returned, and checking every row against c's agreement.
func (ld *load) pull(c consumer, dataset string, filter []exchange.Filter, changes bool) func(context.Context, *worker) (*response, error) {
	return func(ctx context.Context, w *worker) (*response, error) {
		// Each asks for the columns its agreement names: a register shared
		// unconditionally grants its public columns besides, which the system does not
		// ask for and must not get.
		cmd := exchange.PullCmd{Dataset: dataset, Purpose: c.purpose, Filter: filter, Columns: c.allowed}
		action := "read"
		if changes {
			ld.cursorMu.Lock()
			cmd.Since = ld.cursors[dataset]
			ld.cursorMu.Unlock()
			if cmd.Since != "" {
				action = "changes"
			}
		}
		resp := &response{dept: c.dept, action: action, dataset: dataset}
		begin := func(s *arrow.Schema) error {
			resp.at = time.Now()
			for _, f := range s.Fields() {
				resp.columns = append(resp.columns, f.Name)
			}
			resp.requestID, _ = s.Metadata().GetValue(exchange.MetaRequestID)
			return nil
		}
		res, err := w.clients[c.dept].Pull(ctx, cmd, begin, func(rec arrow.Record) error {
			ld.checkRows(c, w.replica, rec)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if res.Cursor != "" && (changes || cmd.Since == "") {
			ld.cursorMu.Lock()
			ld.cursors[dataset] = res.Cursor
			ld.cursorMu.Unlock()
		}
		return resp, nil
	}
}

// checkRows holds every row of rec to c's agreement: its columns, region and masks.
func (ld *load) checkRows(c consumer, replica int, rec arrow.Record) {
	for i, f := range rec.Schema().Fields() {
		if f.Name == "op" {
			continue
		}
		if !slices.Contains(c.allowed, f.Name) {
			ld.violate("a pull by %s at replica %d returned column %s outside its agreement", c.dept, replica, f.Name)
			continue
		}
		col, ok := rec.Column(i).(*array.String)
		if !ok {
			continue
		}
		for r := 0; r < col.Len(); r++ {
			if col.IsNull(r) {
				continue
			}
			v := col.Value(r)
			switch f.Name {
			case c.regionCol:
				if !strings.HasPrefix(v, c.region) {
					ld.violate("a pull by %s at replica %d returned a row of region %q outside its scope %s", c.dept, replica, v, c.region)
					return
				}
			case c.masked:
				if !strings.Contains(v, "*") {
					ld.violate("a pull by %s at replica %d returned %s unmasked", c.dept, replica, f.Name)
					return
				}
			case c.hashed:
				if citizenID.MatchString(v) {
					ld.violate("a pull by %s at replica %d returned %s as a citizen ID, not its hash", c.dept, replica, f.Name)
					return
				}
			}
		}
	}
}

// sortedOps returns the operation names in a stable order.
func (ld *load) sortedOps() []string {
	var names []string
	for n := range ld.byOp {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
