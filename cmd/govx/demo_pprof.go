package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"
)

// servePprof serves the Go runtime's profiles (CPU, heap, goroutines, execution trace)
// of the demo process on addr, for finding what stalls it under load: every part of
// the system runs in this one process, so one profile shows them all. Only a loopback
// address is accepted: a goroutine dump or a trace names what the process is doing,
// which is nobody else's business. It returns the address listened on and a stop.
func servePprof(addr string) (string, func(), error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("--pprof %q: want host:port on loopback, e.g. 127.0.0.1:6060", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", nil, fmt.Errorf("--pprof %q: profiles are served on loopback only (127.0.0.1:PORT or [::1]:PORT)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("--pprof: %w", err)
	}
	// Its own mux: net/http/pprof's init also registers on http.DefaultServeMux, which
	// nothing in govx serves.
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: loopbackHost(mux), ReadHeaderTimeout: 10 * time.Second}
	// Serve returns only once the listener is closed (by stop).
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// loopbackHost refuses a request whose Host header names anything but a loopback
// address or localhost: a web page the operator opens could otherwise point its own
// name at 127.0.0.1 (DNS rebinding) and read the profiles through the browser.
func loopbackHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hp, _, err := net.SplitHostPort(host); err == nil {
			host = hp
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if ip := net.ParseIP(host); !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) { // names are case-insensitive
			http.Error(w, "profiles are served to loopback host names only (127.0.0.1, [::1], localhost)", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}
