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
	// A page on another site whose name resolves to 127.0.0.1 (DNS rebinding) sends its
	// own name as Host: refused, the profile not in the answer; loopback names served.
	for host, want := range map[string]int{"evil.example.com": http.StatusMisdirectedRequest, "evil.example.com:80": http.StatusMisdirectedRequest,
		"10.0.0.1": http.StatusMisdirectedRequest, "localhost": http.StatusOK, "LocalHost:6060": http.StatusOK, "[::1]:6060": http.StatusOK, "127.0.0.1:6060": http.StatusOK} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/debug/pprof/cmdline", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want != http.StatusOK && strings.Contains(string(body), ".test") {
			t.Errorf("Host %s: %s %.200s, want %d", host, resp.Status, body, want)
		}
	}
}
