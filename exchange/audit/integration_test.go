package audit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"govx/internal/testenv"
)

func ctl(t *testing.T, action string) {
	t.Helper()
	script := testenv.Require(t, "GOVX_TEST_CLICKHOUSE_CTL")
	out, err := exec.Command(script, action).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", script, action, err, out)
	}
}

// TestIntegrationClickHouseOutage: ClickHouse stops during a load of appends and comes
// back; Append keeps returning quickly throughout and every event arrives.
func TestIntegrationClickHouseOutage(t *testing.T) {
	ch := newCH(t, "outage")
	s, err := OpenSpool(t.TempDir(), WithInstance("ex-outage"), WithSink(ch),
		WithRetry(50*time.Millisecond, 500*time.Millisecond), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// ClickHouse must be back up however the test ends.
	t.Cleanup(func() { exec.Command(os.Getenv("GOVX_TEST_CLICKHOUSE_CTL"), "up").Run() })

	var (
		stop     atomic.Bool
		appended atomic.Int64
		maxLat   atomic.Int64
		wg       sync.WaitGroup
		errMu    sync.Mutex
		errs     []error
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				start := time.Now()
				err := s.Append(context.Background(), sampleEvent(i, KindDecision))
				lat := time.Since(start)
				if err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					return
				}
				appended.Add(1)
				for {
					m := maxLat.Load()
					if int64(lat) <= m || maxLat.CompareAndSwap(m, int64(lat)) {
						break
					}
				}
				time.Sleep(time.Millisecond) // a steady load, not a flood
			}
		}(w)
	}
	testenv.WaitForState(t, 10*time.Second, "events shipped before the outage", func() (bool, string) {
		return s.Shipped() > 200, fmt.Sprintf("shipped %d", s.Shipped())
	})
	ctl(t, "down")
	downAt := appended.Load()
	testenv.WaitForState(t, 20*time.Second, "appends during the outage", func() (bool, string) {
		return appended.Load() > downAt+1000, fmt.Sprintf("%d appended since down", appended.Load()-downAt)
	})
	if lag := s.Committed() - s.Shipped(); lag < 500 {
		t.Fatalf("only %d events waiting while ClickHouse is down: was it really down?", lag)
	}
	ctl(t, "up")
	upAt := appended.Load()
	testenv.WaitForState(t, 10*time.Second, "appends after the outage", func() (bool, string) {
		return appended.Load() > upAt+500, ""
	})
	stop.Store(true)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("Append failed during the outage: %v", errs[0])
	}
	if m := time.Duration(maxLat.Load()); m > time.Second {
		t.Fatalf("an Append took %v during the outage: latency must not depend on ClickHouse", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForState(t, 30*time.Second, "every event in ClickHouse", func() (bool, string) {
		n, err := distinctIDs(t, ch)
		return err == nil && n == uint64(appended.Load()), fmt.Sprintf("%d of %d (err %v)", n, appended.Load(), err)
	})
	t.Logf("%d events, max append latency %v", appended.Load(), time.Duration(maxLat.Load()))
}

const (
	writerEnv     = "GOVX_AUDIT_TEST_WRITER"
	writerCHEnv   = "GOVX_AUDIT_TEST_WRITER_CH"
	writerAckLine = "acked "
)

// TestHelperSpoolWriter is not a test: TestIntegrationSpoolSurvivesKill runs the test
// binary with it as a child writer, which appends until it is killed, printing the id
// of every event whose Append returned.
func TestHelperSpoolWriter(t *testing.T) {
	dir := os.Getenv(writerEnv)
	if dir == "" {
		return
	}
	ch, err := NewClickHouse(ClickHouseConfig{Addr: os.Getenv(writerCHEnv), DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenSpool(dir, WithInstance("ex-killed"), WithSink(ch), WithRetry(10*time.Millisecond, 50*time.Millisecond), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ; i += 8 {
				ev := sampleEvent(i, KindDecision)
				if err := s.Append(context.Background(), ev); err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				mu.Lock()
				out.WriteString(writerAckLine + ev.EventID + "\n")
				out.Flush()
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
}

// TestIntegrationSpoolSurvivesKill: a writer killed with SIGKILL while its events sit in
// the spool (ClickHouse unreachable) loses none of the events it acknowledged: a new
// opener ships them all.
func TestIntegrationSpoolSurvivesKill(t *testing.T) {
	ch := newCH(t, "killed")
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSpoolWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), writerEnv+"="+dir, writerCHEnv+"="+closed)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, writerAckLine); ok {
			acked[id] = true
		}
		if !killed && len(acked) >= 5000 {
			cmd.Process.Signal(syscall.SIGKILL) // mid-append: later acks may still be in the pipe
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the child writer ended before it was killed (%v): %s", err, stderr.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", cmd.ProcessState)
	}

	s, err := OpenSpool(dir, WithInstance("ex-killed"), WithSink(ch), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Committed() < uint64(len(acked)) {
		t.Fatalf("recovered spool ends at seq %d but %d events were acknowledged", s.Committed(), len(acked))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	it, err := ch.Events(ctx, Filter{Instance: "ex-killed"})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := Collect(it)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, e := range evs {
		have[e.EventID] = true
	}
	for id := range acked {
		if !have[id] {
			t.Fatalf("acknowledged event %s is not in ClickHouse (%d of %d acked arrived)", id, len(have), len(acked))
		}
	}
	// The chain survived the crash: one unbroken chain from seq 1.
	cit, _ := ch.Chain(ctx)
	res, err := Verify(ctx, cit, VerifyOptions{})
	if err != nil || !res.OK() {
		t.Fatalf("chain after the crash: %v\n%s", err, res.Summary())
	}
	t.Logf("%d acknowledged before SIGKILL, %d in ClickHouse", len(acked), len(have))
}

func waitMutations(t *testing.T, ch *ClickHouse) {
	t.Helper()
	testenv.WaitForState(t, 60*time.Second, "ClickHouse mutations to finish", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := ch.Conn(ctx)
		if err != nil {
			return false, err.Error()
		}
		var n uint64
		err = conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM system.mutations WHERE database = '%s' AND table = '%s' AND is_done = 0",
			ch.cfg.Database, ch.cfg.Table)).Scan(&n)
		return err == nil && n == 0, fmt.Sprintf("%d pending (err %v)", n, err)
	})
}

// TestIntegrationVerifyClickHouseTampering: a row changed, deleted or inserted in
// ClickHouse, or its tail cut, fails verification naming the event; an untouched table
// (even with duplicate deliveries) verifies.
func TestIntegrationVerifyClickHouseTampering(t *testing.T) {
	ctx := context.Background()
	exec1 := func(ch *ClickHouse, q string) {
		t.Helper()
		conn, err := ch.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		waitMutations(t, ch)
	}
	t.Run("untouched", func(t *testing.T) {
		ch := newCH(t, "tamper_none")
		evs, cps, pub := signedSpool(t, t.TempDir(), WithSink(ch))
		if err := ch.WriteEvents(ctx, evs[10:20]); err != nil { // at-least-once: a re-delivery
			t.Fatal(err)
		}
		it, err := ch.Chain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Verify(ctx, it, VerifyOptions{Checkpoints: cps, PublicKey: pub})
		if err != nil || !res.OK() || res.Chains[0].Events != tamperEvents {
			t.Fatalf("untouched table: %v\n%s", err, res.Summary())
		}
	})
	for _, tc := range tamperCases {
		t.Run(tc.name, func(t *testing.T) {
			ch := newCH(t, "tamper_"+strings.ReplaceAll(tc.name, " ", "_"))
			evs, cps, pub := signedSpool(t, t.TempDir(), WithSink(ch))
			var forged *Event
			switch tc.name {
			case "changed":
				exec1(ch, fmt.Sprintf("ALTER TABLE %s UPDATE rows = 999999 WHERE event_id = '%s'", ch.Table(), evs[19].EventID))
			case "removed":
				exec1(ch, fmt.Sprintf("ALTER TABLE %s DELETE WHERE seq = 20", ch.Table()))
			case "inserted":
				forged = forge(evs, 20)
				if err := ch.WriteEvents(ctx, []*Event{forged}); err != nil {
					t.Fatal(err)
				}
			case "cut tail":
				exec1(ch, fmt.Sprintf("ALTER TABLE %s DELETE WHERE seq > 45", ch.Table()))
			}
			it, err := ch.Chain(ctx)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Verify(ctx, it, VerifyOptions{Checkpoints: cps, PublicKey: pub})
			checkVerify(t, res, err, tc, evs, forged)
		})
	}
	// The ClickHouse copy's own ways of being altered: rows renumbered, the oldest rows
	// deleted, every row deleted.
	for _, tc := range []struct {
		name, sql string
		tc        tamperCase
	}{
		{"swapped seq", "ALTER TABLE %s UPDATE seq = if(seq = toUInt64(20), toUInt64(21), toUInt64(20)) WHERE seq = toUInt64(20) OR seq = toUInt64(21)", tamperCase{"swapped seq", ProblemChanged, 20, -1}},
		{"first events deleted", "ALTER TABLE %s DELETE WHERE seq <= 10", tamperCase{"first events deleted", ProblemRemoved, 1, -1}},
		{"every event deleted", "ALTER TABLE %s DELETE WHERE seq > 0", tamperCase{"every event deleted", ProblemCut, 1, -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newCH(t, "tamper_"+strings.ReplaceAll(tc.name, " ", "_"))
			_, cps, pub := signedSpool(t, t.TempDir(), WithSink(ch))
			exec1(ch, fmt.Sprintf(tc.sql, ch.Table()))
			it, err := ch.Chain(ctx)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Verify(ctx, it, VerifyOptions{Checkpoints: cps, PublicKey: pub})
			if err != nil {
				t.Fatal(err)
			}
			// Only the first problem is the diagnosis: a renumbering also breaks the links after it.
			if res.OK() || res.Problems[0].Kind != tc.tc.kind || res.Problems[0].Seq != tc.tc.seq {
				t.Fatalf("want first problem %s at seq %d:\n%s", tc.tc.kind, tc.tc.seq, res.Summary())
			}
		})
	}
}

// TestIntegrationVerifyShippedRange: once events left the spool for ClickHouse, the spool
// alone does not vouch for them (unverified, exit 2, unless explicitly allowed); the spool
// and ClickHouse together verify; a shipped event deleted from ClickHouse is then caught.
func TestIntegrationVerifyShippedRange(t *testing.T) {
	ctx := context.Background()
	ch := newCH(t, "shipped_range")
	dir := t.TempDir()
	_, cps, pub := signedSpool(t, dir, WithSink(ch), WithSegmentSize(2048))
	st, err := OpenSpoolStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Shipped()
	if err != nil || m == nil || m.Seq != tamperEvents || !m.Valid(pub) {
		t.Fatalf("shipped marker %+v (err %v): want a signed marker at seq %d", m, err, tamperEvents)
	}
	if segs, _ := listSegments(dir); len(segs) == 0 || segs[0] == 1 {
		t.Fatalf("segments %v: want the shipped ones trimmed", segs)
	}
	verify := func(withCH, allow bool) *VerifyResult {
		t.Helper()
		sit, _ := st.Chain(ctx)
		var it Iterator = sit
		if withCH {
			cit, err := ch.Chain(ctx)
			if err != nil {
				t.Fatal(err)
			}
			it = MergeChains(cit, sit)
		}
		res, err := Verify(ctx, it, VerifyOptions{Checkpoints: cps, PublicKey: pub, AllowUnverifiedShipped: allow,
			Spool: &SpoolSource{Instance: st.Instance(), Shipped: m, WithSink: withCH}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := verify(false, false); res.OK() || res.Problems[0].Kind != ProblemUnverified {
		t.Fatalf("spool alone after shipping: want an unverified problem\n%s", res.Summary())
	}
	if res := verify(false, true); !res.OK() || !strings.Contains(strings.Join(res.Notes, "\n"), "left the spool") {
		t.Fatalf("spool alone, shipped range allowed: want OK with a note\n%s", res.Summary())
	}
	if res := verify(true, false); !res.OK() || res.Chains[0].Events != tamperEvents {
		t.Fatalf("spool and ClickHouse together: want OK over every event\n%s", res.Summary())
	}
	conn, err := ch.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DELETE WHERE seq = 3", ch.Table())); err != nil {
		t.Fatal(err)
	}
	waitMutations(t, ch)
	if res := verify(true, false); res.OK() || res.Problems[0].Kind != ProblemRemoved || res.Problems[0].Seq != 3 {
		t.Fatalf("a shipped event deleted from ClickHouse: want removed at seq 3\n%s", res.Summary())
	}
}
