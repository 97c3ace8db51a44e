package httpapi

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"govx/exchange"
)

// Option adjusts the HTTP API.
type Option func(*options)

type options struct {
	noOps bool
}

// WithoutOps leaves /healthz, /readyz and /metrics off the API: the exchange serves them
// on its operations listener (Ops) instead, so that neither readiness details (broker
// addresses) nor metrics reach the consumers' network.
func WithoutOps() Option { return func(o *options) { o.noOps = true } }

// Ops returns the operator's endpoints alone — GET /healthz (the process answers),
// GET /readyz (200, or 503 not_ready naming each failing check) and GET /metrics
// (Prometheus, from reg) — for a listener apart from the API. Anything else is 404
// no_route.
func Ops(ready func() error, reg prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	registerOps(mux, ready, reg)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, exchange.E(exchange.NotFound, "no_route", "no such endpoint: "+r.Method+" "+r.URL.Path+"; the operations listener serves /healthz, /readyz and /metrics"))
	})
	return mux
}

func registerOps(mux *http.ServeMux, ready func() error, reg prometheus.Gatherer) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				writeError(w, exchange.E(exchange.Unavailable, "not_ready", "the exchange is not ready: "+err.Error()))
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}
