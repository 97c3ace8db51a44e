package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestDemoPprofLoopbackOnly: --pprof serves the runtime's profiles on a loopback
// address and refuses any other, saying which addresses it takes.
func TestDemoPprofLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "192.0.2.1:6060", "example.org:6060", "6060"} {
		if _, _, err := servePprof(addr); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("--pprof %s: %v, want a refusal naming loopback", addr, err)
		}
	}
	addr, stop, err := servePprof("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
		t.Fatalf("GET /debug/pprof/goroutine: %s %.200s", resp.Status, body)
	}
}
