package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/segmentio/kafka-go"

	"govx/internal/kafkatest"
	"govx/internal/testenv"
)

func TestReadinessNamesEveryFailingCheck(t *testing.T) {
	var r Readiness
	if err := r.Err(); err != nil {
		t.Fatalf("no checks: %v, want ready", err)
	}
	r.Set("ingest/population.person", errors.New("catching up with Kafka"))
	spool := errors.New("spool not writable")
	r.Check("audit", func() error { return spool })
	r.Set("flight", nil)
	err := r.Err()
	if err == nil || err.Error() != "audit: spool not writable; ingest/population.person: catching up with Kafka" {
		t.Fatalf("Err() = %v, want both failing checks, by name", err)
	}
	r.Set("ingest/population.person", nil)
	spool = nil // a Check is asked again at every query
	if err := r.Err(); err != nil {
		t.Fatalf("every check passing: %v", err)
	}
}

// inProcess starts an exchange over an in-process broker holding a few persons, with
// the local audit spool, and waits until it is ready. Nothing outside the process is
// needed.
func inProcess(t *testing.T, mods ...func(*Config)) (*Exchange, *kafkatest.Broker, *memory.CheckedAllocator) {
	t.Helper()
	b := kafkatest.Start(t)
	topic := "govx.population.person"
	kafkatest.CreateTopic(t, b.Addr(), topic)
	var msgs []kafka.Message
	for _, p := range makePersons(t, 20, 11) {
		v, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(p["id_number"].(string)), Value: v})
	}
	kafkatest.Produce(t, b.Addr(), topic, msgs...)

	cfg := Defaults(t.TempDir())
	cfg.FlightAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kafka.Brokers = []string{b.Addr()}
	cfg.Datasets = []string{"population.person"}
	for _, m := range mods {
		m(cfg)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	x, err := Start(context.Background(), cfg, WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-x.Ready():
	case <-time.After(30 * time.Second):
		x.Close()
		t.Fatalf("not ready after 30s: %v", x.Readiness().Err())
	}
	return x, b, mem
}

// get returns the status and body of GET path on the exchange's HTTP listener.
func get(t *testing.T, x *Exchange, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + x.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestServeReadinessFollowsKafka: a Kafka outage is retriable: the exchange keeps
// running, /readyz turns not ready naming the dataset and why, and ready again once
// the broker is back. A normal Close is not a part stopping.
func TestServeReadinessFollowsKafka(t *testing.T) {
	x, b, mem := inProcess(t)
	if code, body := get(t, x, "/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz once caught up: %d %q", code, body)
	}

	b.Stop()
	testenv.WaitFor(t, 30*time.Second, "/readyz not ready while Kafka is down", func() bool {
		code, body := get(t, x, "/readyz")
		return code == 503 && strings.Contains(body, `"not_ready"`) &&
			strings.Contains(body, "ingest/population.person: waiting for Kafka")
	})
	if _, body := get(t, x, "/metrics"); !strings.Contains(body, "govx_ingest_ready 0") {
		t.Error("/metrics: govx_ingest_ready is not 0 while Kafka is down")
	}
	select {
	case <-x.Done():
		t.Fatalf("a Kafka outage stopped the exchange: %v", x.Err())
	default:
	}

	b.Restart()
	testenv.WaitFor(t, 30*time.Second, "/readyz ready again once Kafka is back", func() bool {
		code, _ := get(t, x, "/readyz")
		return code == 200
	})

	if err := x.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-x.Done():
		t.Fatalf("Close reported as a part stopping: %v", x.Err())
	default:
	}
	mem.AssertSize(t, 0)
}

// TestServeStopsWhenAPartStops: a listener that goes away leaves the exchange serving
// half its API: Done closes with an error naming the part (so `govx exchange serve`
// exits non-zero for its supervisor to restart it), and readiness names it too.
func TestServeStopsWhenAPartStops(t *testing.T) {
	for _, part := range []string{"flight", "http"} {
		t.Run(part, func(t *testing.T) {
			x, _, mem := inProcess(t)
			if part == "flight" {
				x.flightLn.Close()
			} else {
				x.httpLn.Close()
			}
			select {
			case <-x.Done():
			case <-time.After(30 * time.Second):
				t.Fatalf("%s listener closed, but the exchange did not report a stopped part", part)
			}
			if err := x.Err(); err == nil || !strings.HasPrefix(err.Error(), part+": ") {
				t.Fatalf("Err() = %v, want it to name %s", err, part)
			}
			if err := x.Readiness().Err(); err == nil || !strings.Contains(err.Error(), part+": ") {
				t.Fatalf("readiness %v, want %s named as failing", err, part)
			}
			if part == "flight" {
				if code, body := get(t, x, "/readyz"); code != 503 || !strings.Contains(body, "flight: ") {
					t.Fatalf("/readyz with Flight gone: %d %q", code, body)
				}
			}
			x.Close()
			mem.AssertSize(t, 0)
		})
	}
}
