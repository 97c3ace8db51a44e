package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"govx/internal/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testDB is the fresh ClickHouse database of this test run.
var (
	testDBOnce sync.Once
	testDBName string
)

func chDatabase() string {
	testDBOnce.Do(func() {
		b := make([]byte, 4)
		rand.Read(b)
		testDBName = "govx_test_" + hex.EncodeToString(b)
	})
	return testDBName
}

// newCH returns a ClickHouse store on a fresh table of this run's test database.
func newCH(t testing.TB, table string) *ClickHouse {
	t.Helper()
	addr := testenv.Require(t, testenv.ClickHouse)
	ch, err := NewClickHouse(ClickHouseConfig{Addr: addr, Database: chDatabase(), Table: table})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

// sampleEvent returns a realistic event; i varies its fields.
func sampleEvent(i int, kind Kind) *Event {
	e := &Event{
		Kind:           kind,
		RequestID:      fmt.Sprintf("req-%06d", i),
		Department:     []string{"mz-3301", "rs-33", "sw-33", "zj-3205"}[i%4],
		System:         []string{"dibao-review", "pension", "tax-check"}[i%3],
		ClientAddr:     fmt.Sprintf("10.0.%d.%d:4433", i%7, i%250),
		Action:         []string{"read", "lookup", "verify", "changes"}[i%4],
		Dataset:        []string{"population.person", "legal_entity.organization"}[i%2],
		Columns:        []string{"id_number", "name", "household_region"},
		Filter:         `[{"column":"household_region","op":"prefix","value":"3301"}]`,
		Purpose:        "minimum-living-allowance-review",
		CaseRef:        fmt.Sprintf("330106-2026-%06d", i),
		PolicyRevision: "rev-abc123",
		Agreement:      "agr-2026-007",
	}
	switch kind {
	case KindDecision:
		e.Decision = Allow
		if i%5 == 0 {
			e.Decision = Deny
			e.Reasons = []string{"purpose not in agreement", "张三's column 'phone' is sensitive"}
		}
		if e.Action == "lookup" || e.Action == "verify" {
			e.Keys = []string{fmt.Sprintf("33010619900101%04d", i%10000)}
		}
	case KindComplete:
		e.Rows, e.Bytes, e.DurationMS, e.Status = uint64(i*10), uint64(i*1000), uint64(i%900), StatusOK
		if i%7 == 0 {
			e.Status, e.Error = StatusAborted, "client went away"
		}
	}
	return e
}

// distinctIDs counts distinct event ids in a table.
func distinctIDs(t *testing.T, ch *ClickHouse) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := ch.Conn(ctx)
	if err != nil {
		return 0, err
	}
	var n uint64
	err = conn.QueryRow(ctx, "SELECT uniqExact(event_id) FROM "+ch.Table()).Scan(&n)
	if err != nil {
		ch.fail(err)
	}
	return n, err
}

func TestMain(m *testing.M) {
	if os.Getenv(writerEnv) != "" {
		os.Exit(m.Run()) // child writer: no cleanup of the shared database
	}
	code := m.Run()
	if testDBName != "" {
		if ch, err := NewClickHouse(ClickHouseConfig{Addr: os.Getenv(testenv.ClickHouse), Database: testDBName, Table: "x"}); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if conn, err := ch.Conn(ctx); err == nil {
				conn.Exec(ctx, "DROP DATABASE IF EXISTS "+testDBName)
			}
			cancel()
			ch.Close()
		}
	}
	os.Exit(code)
}
