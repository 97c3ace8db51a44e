package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"govx/exchange/httpapi"
	"govx/exchange/service/servicetest"
)

// BenchmarkLookup: one lookup through the HTTP handler in process (no network): the
// token, the body, the decision, the durable audit event, the store and the answer,
// with the allocations each costs.
//
//	go test ./exchange/httpapi -run XXX -bench Lookup -benchmem
func BenchmarkLookup(b *testing.B) {
	f := servicetest.New(b, servicetest.Config{Persons: 60000})
	h := httpapi.New(f.Svc, f.Tokens, func() error { return nil }, prometheus.NewRegistry(), nil)
	token := "Bearer " + f.Token(b, "mz-3301/dibao-review")
	// The shipped key budget: 1,000 distinct keys an hour, each looked up at most 20
	// times; b.N stays under 20,000.
	ids := f.IDs["3301"][:1000]
	bodies := make([]string, len(ids))
	for i, id := range ids {
		bodies[i] = `{"key":"` + id + `","purpose":"` + dibao + `"}`
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/datasets/population.person/lookup", strings.NewReader(bodies[i%len(bodies)]))
		r.Header.Set("Authorization", token)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("lookup %d: %d %s", i, w.Code, w.Body)
		}
		i++
	}
}
