package httpapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange/audit"
	"govx/exchange/httpapi"
	"govx/exchange/service/servicetest"
)

// auditServer serves the HTTP API over f as the exchange does, with a read timeout
// (the exchange's is a minute) and the service's metrics on /metrics.
func auditServer(t *testing.T, f *servicetest.Fixture, readTimeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.Svc.Collectors()...)
	// No readiness function: these tests never ask /readyz.
	srv := &http.Server{Handler: httpapi.New(f.Svc, f.Tokens, nil, reg, nil), ReadTimeout: readTimeout}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// segmentBytes is the size of the spool's segment files.
func segmentBytes(t *testing.T, dir string) int64 {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range segs {
		st, err := os.Stat(s)
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// TestBoundUnauthenticatedFlood: an anonymous client sending requests with 900,000-byte
// dataset names grows the audit spool by at most the unauthenticated event cap times
// the failed-authentication budget (a burst of 20, then 5 a second), not by the size of
// what it sends; every failure beyond the budget is counted by
// govx_auth_failures_total{audited="no"}.
func TestBoundUnauthenticatedFlood(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{})
	addr := auditServer(t, f, time.Minute)
	before := segmentBytes(t, f.SpoolDir)
	name := strings.Repeat("population.person", 900000/17)
	const n = 100
	start := time.Now()
	for i := 0; i < n; i++ {
		resp, err := http.Post("http://"+addr+"/v1/datasets/"+name+"/pull", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("request %d without a token: %d", i, resp.StatusCode)
		}
	}
	elapsed := time.Since(start)
	grown := segmentBytes(t, f.SpoolDir) - before
	budget := 20 + 5*elapsed.Seconds() + 1
	// A frame is its length and CRC (8 bytes), the canonical event (with the instance
	// name the cap leaves out) and two hashes (64 bytes).
	perEvent := float64(audit.MaxUnauthenticatedEventBytes + 8 + len(f.Spool.Instance()) + 64)
	if float64(grown) > budget*perEvent {
		t.Fatalf("%d anonymous requests in %v grew the spool by %d bytes, more than %.0f events of at most %.0f bytes", n, elapsed, grown, budget, perEvent)
	}
	audited := len(f.Events(t))
	if audited == 0 || float64(audited) > budget {
		t.Fatalf("%d failures audited, want between 1 and the budget of %.0f", audited, budget)
	}
	if got := scrape(t, addr, `govx_auth_failures_total{audited="no"}`); got != strconv.Itoa(n-audited) {
		t.Fatalf(`govx_auth_failures_total{audited="no"} %s, want %d`, got, n-audited)
	}
}

// scrape returns the value of one sample of /metrics.
func scrape(t *testing.T, addr, sample string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return v
		}
	}
	return ""
}

type goneClient struct {
	addr   string // its local address: the client_addr of its events
	kind   string // "slow-body", "half-closed lookup", "half-closed pull"
	status int    // the status it received, 0 for none
	body   string
}

// TestClientsThatGoAwayAreAudited: 300 clients that send a body too slowly (the server's
// read timeout refuses them) and 40 that half-close their connection after the request
// each leave their decision event; no allowed request lacks its complete event; and a
// half-closed client that received its record or rows has a complete event saying so.
func TestClientsThatGoAwayAreAudited(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{})
	addr := auditServer(t, f, 300*time.Millisecond)
	tok := f.Token(t, "mz-3301/dibao-review")
	request := func(path, body string, declared int) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: govx\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
			"Accept: application/x-ndjson\r\nContent-Length: %d\r\n\r\n%s", path, tok, declared, body)
	}
	var clients []*goneClient
	for i := 0; i < 300; i++ {
		clients = append(clients, &goneClient{kind: "slow-body"})
	}
	for i := 0; i < 20; i++ {
		clients = append(clients, &goneClient{kind: "half-closed lookup"}, &goneClient{kind: "half-closed pull"})
	}
	sem := make(chan struct{}, 64) // bounded: at most 64 connections at once
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			c.addr = conn.LocalAddr().String()
			switch c.kind {
			case "slow-body":
				// Part of the body, then nothing: the read timeout ends the request.
				io.WriteString(conn, request("/v1/datasets/population.person/lookup", `{"key":`, 200))
			case "half-closed lookup":
				body := fmt.Sprintf(`{"key":%q,"purpose":"minimum-living-allowance-review"}`, f.IDs["3301"][i%len(f.IDs["3301"])])
				io.WriteString(conn, request("/v1/datasets/population.person/lookup", body, len(body)))
				conn.(*net.TCPConn).CloseWrite()
			case "half-closed pull":
				body := `{"purpose":"minimum-living-allowance-review","limit":5}`
				io.WriteString(conn, request("/v1/datasets/population.person/pull", body, len(body)))
				conn.(*net.TCPConn).CloseWrite()
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return // the server closed the connection without an answer
			}
			b, _ := io.ReadAll(resp.Body)
			c.status, c.body = resp.StatusCode, string(b)
		}()
	}
	wg.Wait()

	// Loopback reuses a closed connection's port at once (net.ipv4.tcp_tw_reuse), so two
	// clients may share an address: each address must have as many decisions as clients,
	// and a client's is the one of its kind (a slow body's is body_too_large).
	var evs []*audit.Event
	decisions := map[string][]*audit.Event{} // by client address, in log order
	clientsAt := map[string]int{}
	for _, c := range clients {
		clientsAt[c.addr]++
	}
	servicetest.WaitFor(t, "a decision event for every client", func() bool {
		evs = f.Events(t)
		clear(decisions)
		for _, ev := range evs {
			if ev.Kind == audit.KindDecision {
				decisions[ev.ClientAddr] = append(decisions[ev.ClientAddr], ev)
			}
		}
		for addr, n := range clientsAt {
			if len(decisions[addr]) < n {
				return false
			}
		}
		return true
	})
	decisionOf := func(c *goneClient) *audit.Event {
		ds := decisions[c.addr]
		for i := len(ds) - 1; i >= 0; i-- {
			if (ds[i].Error == "body_too_large") == (c.kind == "slow-body") {
				return ds[i]
			}
		}
		return ds[len(ds)-1]
	}
	completes := map[string]*audit.Event{}
	servicetest.WaitFor(t, "a complete event for every allowed request", func() bool {
		evs = f.Events(t)
		clear(completes)
		for _, ev := range evs {
			if ev.Kind == audit.KindComplete {
				completes[ev.RequestID] = ev
			}
		}
		for _, ev := range evs {
			if ev.Kind == audit.KindDecision && ev.Decision == audit.Allow && ev.Action != "verify" && ev.Action != "discover" && completes[ev.RequestID] == nil {
				return false
			}
		}
		return true
	})
	delivered := 0
	for _, c := range clients {
		d := decisionOf(c)
		switch {
		case c.kind == "slow-body" && (d.Decision != audit.Deny || d.Error != "body_too_large"):
			t.Errorf("slow-body client %s: decision %s %s, want deny body_too_large", c.addr, d.Decision, d.Error)
		case c.kind == "half-closed lookup" && c.status == http.StatusOK && strings.Contains(c.body, `"record"`):
			delivered++
			if cm := completes[d.RequestID]; cm.Status != audit.StatusOK || cm.Rows != 1 {
				t.Errorf("lookup delivered to %s recorded as %s with %d rows", c.addr, cm.Status, cm.Rows)
			}
		case c.kind == "half-closed pull" && c.status == http.StatusOK:
			delivered++
			rows := strings.Count(strings.TrimSpace(c.body), "\n") + 1
			if cm := completes[d.RequestID]; cm.Status != audit.StatusOK || cm.Rows != uint64(rows) {
				t.Errorf("pull of %d rows delivered to %s recorded as %s with %d rows", rows, c.addr, cm.Status, cm.Rows)
			}
		case c.kind != "slow-body" && d.Decision == audit.Allow && c.status != 0:
			var e struct{ Error struct{ Code string } }
			json.Unmarshal([]byte(c.body), &e)
			t.Errorf("%s %s: answered %d %s after an allow", c.kind, c.addr, c.status, e.Error.Code)
		}
	}
	t.Logf("%d clients, %d events, %d half-closed clients received their data", len(clients), len(evs), delivered)
}

// TestBoundUnauthenticatedFloodFromManyAddresses: spreading a flood over many source
// addresses does not multiply what reaches the spool: all addresses together share one
// budget of audited failures.
func TestBoundUnauthenticatedFloodFromManyAddresses(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{})
	addr := auditServer(t, f, time.Minute)
	const addrs, each = 100, 5
	start := time.Now()
	for i := 0; i < addrs; i++ {
		// Every 127.0.0.0/8 address is the loopback: 100 distinct clients.
		local := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/250), byte(2+i%250))}
		c := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: local}).DialContext}}
		for j := 0; j < each; j++ {
			resp, err := c.Post("http://"+addr+"/v1/datasets/population.person/pull", "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("request without a token: %d", resp.StatusCode)
			}
		}
		c.CloseIdleConnections()
	}
	elapsed := time.Since(start)
	audited := len(f.Events(t))
	// Each address alone could have 5 of its failures audited (burst 20): the shared
	// budget (burst 200, 50 a second) must have bounded the total.
	if budget := 200 + 50*elapsed.Seconds() + 1; audited == 0 || float64(audited) > budget {
		t.Fatalf("%d of %d failures from %d addresses audited in %v, want between 1 and the shared budget of %.0f", audited, addrs*each, addrs, elapsed, budget)
	}
	if got := scrape(t, addr, `govx_auth_failures_total{audited="no"}`); got != strconv.Itoa(addrs*each-audited) {
		t.Fatalf(`govx_auth_failures_total{audited="no"} %s, want %d`, got, addrs*each-audited)
	}
}
