package server

import (
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"govx/exchange"
	"govx/exchange/client"
	"govx/exchange/server/servertest"
	"govx/internal/testenv"
)

// TestHandshakeRefusalsCountedAndLogged: a TLS handshake refused for its client
// certificate (here another CA's, for the same subject) is counted in
// govx_auth_failures_total{audited="no"} and logged, on the Flight listener as on HTTPS.
func TestHandshakeRefusalsCountedAndLogged(t *testing.T) {
	logs := &testenv.Buffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(logs, nil)))
	defer slog.SetDefault(prev)
	p := newDepartmentPKI(t, "govx test CA")
	x, _, mem := inProcess(t, p.configure, func(c *Config) { c.Ops.Listen = "127.0.0.1:0" })
	defer func() {
		x.Close()
		mem.AssertSize(t, 0)
	}()
	unaudited := func() int {
		_, body := opsGet(t, x, "/metrics")
		m := regexp.MustCompile(`(?m)^govx_auth_failures_total\{audited="no"\} (\d+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("/metrics has no govx_auth_failures_total{audited=\"no\"}")
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	foreign := newDepartmentPKI(t, "govx test CA")
	_, foreignTLS := foreign.client("mz-3301/dibao-review")
	foreignTLS = withRoots(foreignTLS, p.roots)

	before := unaudited()
	fc, err := client.New(client.Config{Flight: x.FlightAddr(), HTTP: "https://" + x.HTTPAddr(), TLS: foreignTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	if _, _, _, err := servertest.Pull(t, fc, exchange.PullCmd{Dataset: "population.person", Purpose: purposeDibao}); err == nil {
		t.Fatal("Flight with another CA's certificate served")
	}
	testenv.WaitFor(t, 10*time.Second, "the refused Flight handshake counted and logged", func() bool {
		return unaudited() > before && strings.Contains(logs.String(), `"listener":"flight"`)
	})
	before = unaudited()
	if _, _, err := httpsGet(x, foreignTLS, "/v1/catalog"); err == nil {
		t.Fatal("HTTPS with another CA's certificate served")
	}
	testenv.WaitFor(t, 10*time.Second, "the refused HTTPS handshake counted and logged", func() bool {
		return unaudited() > before && strings.Contains(logs.String(), `"listener":"https"`)
	})
	if !strings.Contains(logs.String(), "certificate signed by unknown authority") {
		t.Errorf("the log does not say why the handshake was refused:\n%s", logs.String())
	}
}
