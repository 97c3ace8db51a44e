package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestBoundCutsLongFields: a 900,000-byte dataset name is kept as its first bytes, its
// full length and its SHA-256, within the limit; a 1,000-key list keeps its first keys
// and says how many were cut; short fields are untouched, and bounding again changes
// nothing.
func TestBoundCutsLongFields(t *testing.T) {
	huge := strings.Repeat("population.person/", 50000)[:900000]
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("33010619900101%04d", i)
	}
	ev := &Event{Kind: KindDecision, Department: "mz-3301", System: "dibao-review", Action: "read",
		Dataset: huge, Purpose: "minimum-living-allowance-review", Keys: keys, Columns: []string{"name", "id_number"}}
	if !Bound(ev, DefaultLimits) {
		t.Fatal("Bound reports nothing cut")
	}
	sum := sha256.Sum256([]byte(huge))
	want := fmt.Sprintf("…[cut: 900000 bytes, sha256 %s]", hex.EncodeToString(sum[:]))
	if len(ev.Dataset) > DefaultLimits.Text || !strings.HasSuffix(ev.Dataset, want) || !strings.HasPrefix(ev.Dataset, "population.person/population") {
		t.Fatalf("dataset bounded to %d bytes: %.200q…, want the prefix and %q", len(ev.Dataset), ev.Dataset, want)
	}
	if len(ev.Keys) != DefaultLimits.Items || ev.Keys[0] != keys[0] || ev.Keys[DefaultLimits.Items-2] != keys[DefaultLimits.Items-2] {
		t.Fatalf("keys: %d kept, want the first %d and a marker", len(ev.Keys), DefaultLimits.Items-1)
	}
	if last := ev.Keys[len(ev.Keys)-1]; !strings.HasPrefix(last, fmt.Sprintf("…[cut: %d of 1000 entries, sha256 ", 1000-DefaultLimits.Items+1)) {
		t.Fatalf("the last key says %q", last)
	}
	if ev.Purpose != "minimum-living-allowance-review" || ev.Department != "mz-3301" || strings.Join(ev.Columns, ",") != "name,id_number" {
		t.Fatalf("short fields changed: %+v", ev)
	}
	again := *ev
	if Bound(&again, DefaultLimits) || again.Dataset != ev.Dataset || len(again.Keys) != len(ev.Keys) {
		t.Fatal("bounding a bounded event changed it")
	}
}

// TestBoundKeepsUTF8: a cut never splits a character, so a cut Chinese value is still
// valid text in ClickHouse and on a terminal.
func TestBoundKeepsUTF8(t *testing.T) {
	ev := &Event{CaseRef: strings.Repeat("杭州市民政局", 200)}
	Bound(ev, DefaultLimits)
	if !utf8.ValidString(ev.CaseRef) || len(ev.CaseRef) > DefaultLimits.Text || !strings.HasPrefix(ev.CaseRef, "杭州市民政局") {
		t.Fatalf("case_ref cut to %q", ev.CaseRef)
	}
}

// TestBoundUnauthenticatedCap: however large every request-derived field of an event,
// bounded with UnauthenticatedLimits its canonical encoding (with the event id the
// spool adds) stays within MaxUnauthenticatedEventBytes.
func TestBoundUnauthenticatedCap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	big := func() string { return strings.Repeat("\x1b[2J☃", rng.IntN(20000)) }
	bigList := func() []string {
		l := make([]string, rng.IntN(300))
		for i := range l {
			l[i] = strings.Repeat("\u202e鉴", rng.IntN(500))
		}
		return l
	}
	for i := 0; i < 50; i++ {
		ev := &Event{Kind: KindDecision, RequestID: "req-0123456789abcdef01234567", Decision: Deny, Status: StatusError,
			Dataset: big(), Purpose: big(), CaseRef: big(), ClientAddr: big(), Department: big(), System: big(),
			Action: big(), Agreement: big(), PolicyRevision: big(), Error: big(), Filter: big(),
			Columns: bigList(), Keys: bigList(), Reasons: bigList()}
		Bound(ev, UnauthenticatedLimits)
		if n := len(ev.Canonical()) + 36; n > MaxUnauthenticatedEventBytes {
			t.Fatalf("event %d: %d bytes after bounding, cap %d", i, n, MaxUnauthenticatedEventBytes)
		}
	}
	// The usual unauthenticated event, a dataset name from the URL, keeps a readable prefix.
	ev := &Event{Kind: KindDecision, Action: "read", Dataset: strings.Repeat("x", 900000), ClientAddr: "127.0.0.1:40000",
		Decision: Deny, Reasons: []string{"unauthenticated"}, Error: "unauthenticated"}
	Bound(ev, UnauthenticatedLimits)
	if !strings.HasPrefix(ev.Dataset, "xxxxxxxxxx") || !strings.Contains(ev.Dataset, "cut: 900000 bytes") || ev.ClientAddr != "127.0.0.1:40000" {
		t.Fatalf("unauthenticated event bounded to %+v", ev)
	}
}
