package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"govx/exchange/apply"
	"govx/exchange/audit"
)

// The spool's segment layout, as docs/audit.md gives it: an 8-byte magic, then frames of
// a uint32 length, a uint32 CRC-32C and the payload.
const (
	tamperMagicLen = 8
	tamperEvents   = 60
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type frame struct {
	seg  string // file name
	data []byte // the whole frame
}

// tamperSpool writes tamperEvents events through a signing spool split over several
// segments, closes it, and returns the spool, checkpoint and key paths.
func tamperSpool(t *testing.T) (spool, ckpts, key string) {
	t.Helper()
	root := t.TempDir()
	spool, ckpts, key = filepath.Join(root, "spool"), filepath.Join(root, "checkpoints.jsonl"), filepath.Join(root, "signing.key")
	if err := audit.GenerateKey(key, key+".pub"); err != nil {
		t.Fatal(err)
	}
	priv, err := audit.LoadPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := audit.OpenSpool(spool, audit.WithInstance("ex-1"), audit.WithSegmentSize(4096),
		audit.WithCheckpoints(priv, ckpts, 0), audit.WithFreeSpaceReserve(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= tamperEvents; i++ {
		ev := &audit.Event{Kind: audit.KindDecision, RequestID: "req-" + strings.Repeat("x", i%7), Department: "mz-3301",
			System: "dibao-review", Action: "lookup", Dataset: "population.person", Decision: audit.Allow,
			Keys: []string{"33010619900101" + strings.Repeat("1", 4)}, Purpose: "minimum-living-allowance-review"}
		if err := s.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return spool, ckpts, key
}

// readFrames returns every frame of the spool's segments in order.
func readFrames(t *testing.T, spool string) []frame {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(spool, "*.seg"))
	sort.Strings(names)
	var out []frame
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		for off := tamperMagicLen; off < len(data); {
			size := int(binary.BigEndian.Uint32(data[off:]))
			out = append(out, frame{seg: filepath.Base(n), data: data[off : off+8+size]})
			off += 8 + size
		}
	}
	if len(out) != tamperEvents {
		t.Fatalf("the spool holds %d frames, want %d", len(out), tamperEvents)
	}
	return out
}

// writeFrames replaces the spool's segments by the given frames, each in the segment it
// names (segments left without frames are removed).
func writeFrames(t *testing.T, spool string, frames []frame) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(spool, "*.seg"))
	for _, n := range names {
		os.Remove(n)
	}
	bySeg := map[string][]byte{}
	var order []string
	for _, f := range frames {
		if _, ok := bySeg[f.seg]; !ok {
			bySeg[f.seg] = []byte("GOVXAUD1")
			order = append(order, f.seg)
		}
		bySeg[f.seg] = append(bySeg[f.seg], f.data...)
	}
	for _, n := range order {
		if err := os.WriteFile(filepath.Join(spool, n), bySeg[n], 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func flip(f frame, at int, fixCRC bool) frame {
	d := bytes.Clone(f.data)
	d[at] ^= 0x20
	if fixCRC {
		binary.BigEndian.PutUint32(d[4:], crc32.Checksum(d[8:], castagnoli))
	}
	return frame{seg: f.seg, data: d}
}

// runAudit runs `govx audit ARGS…` on a fresh command tree and returns its output and
// exit status.
func runAudit(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := newAuditCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		out.WriteString("govx: " + err.Error() + "\n")
		return out.String(), exitCode(err)
	}
	return out.String(), 0
}

// TestAuditVerifyTamperTable: every way of altering a spool an attacker or a bad disk has
// fails `govx audit verify` with exit 2 and names what happened and where; the untouched
// spool verifies; a torn final frame is a note, and cut (and kept) when the spool opens.
func TestAuditVerifyTamperTable(t *testing.T) {
	mid := tamperEvents / 3 // seq of the frame the middle cases touch
	for _, tc := range []struct {
		name   string
		tamper func(spool string, fr []frame)
		code   int
		want   string // in the first problem
	}{
		{"untouched", func(string, []frame) {}, 0, "OK: the audit log is intact"},
		{"flip a byte, CRC wrong", func(s string, fr []frame) {
			fr[mid-1] = flip(fr[mid-1], 40, false)
			writeFrames(t, s, fr)
		}, 2, "changed: instance ex-1 seq 20: event "},
		{"flip a byte, CRC fixed", func(s string, fr []frame) {
			fr[mid-1] = flip(fr[mid-1], 60, true)
			writeFrames(t, s, fr)
		}, 2, "changed: instance ex-1 seq 20: "},
		{"change a length field", func(s string, fr []frame) {
			fr[mid-1] = flip(fr[mid-1], 2, false)
			writeFrames(t, s, fr)
		}, 2, "changed: instance ex-1: "},
		{"delete a middle frame", func(s string, fr []frame) {
			writeFrames(t, s, append(fr[:mid-1:mid-1], fr[mid:]...))
		}, 2, "removed: instance ex-1: events seq 20..20 are missing"},
		{"swap two frames", func(s string, fr []frame) {
			fr[mid-1].data, fr[mid].data = fr[mid].data, fr[mid-1].data
			writeFrames(t, s, fr)
		}, 2, "reordered: instance ex-1 seq 20: "},
		{"delete the first events", func(s string, fr []frame) {
			kept := fr[10:]
			for i := range kept {
				kept[i].seg = "00000000000000000011.seg" // renamed to look like a spool that starts there
			}
			writeFrames(t, s, kept)
		}, 2, "removed: instance ex-1: events seq 1..10 are missing"},
		{"delete a whole segment", func(s string, fr []frame) {
			var kept []frame
			for _, f := range fr {
				if f.seg != fr[mid-1].seg {
					kept = append(kept, f)
				}
			}
			writeFrames(t, s, kept)
		}, 2, "removed: instance ex-1: events seq "},
		{"delete every segment", func(s string, fr []frame) { writeFrames(t, s, nil) }, 2,
			"cut: instance ex-1 has signed checkpoints up to seq 60 but events 1..60 are not in the log"},
		{"cut the tail cleanly", func(s string, fr []frame) { writeFrames(t, s, fr[:tamperEvents-5]) }, 2,
			"cut: chain of instance ex-1 ends at seq 55"},
		{"tear the last (acknowledged) frame", func(s string, fr []frame) {
			last := fr[len(fr)-1]
			fr[len(fr)-1] = frame{seg: last.seg, data: last.data[:len(last.data)/2]}
			writeFrames(t, s, fr)
		}, 2, "cut: chain of instance ex-1 ends at seq 59"},
		{"a torn frame that was never acknowledged", func(s string, fr []frame) {
			last := fr[len(fr)-1]
			fr = append(fr, frame{seg: last.seg, data: last.data[:len(last.data)/3]})
			writeFrames(t, s, fr)
		}, 0, "a final frame that runs past the end of the file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spool, ckpts, key := tamperSpool(t)
			tc.tamper(spool, readFrames(t, spool))
			out, code := runAudit(t, "verify", "--spool", spool, "--checkpoints", ckpts, "--pubkey", key+".pub")
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d with %q; output:\n%s", code, tc.code, tc.want, out)
			}
			if tc.code == 2 {
				if n := strings.Count(out, "FAILED: 1 problem(s)"); n != 1 {
					t.Fatalf("want exactly one problem (the diagnosis, nothing derived from it); output:\n%s", out)
				}
			}
		})
	}
}

// TestAuditRepairKeepsEvidence: a spool with a damaged middle frame is refused when it
// opens, with the file, offset and seq named and every byte kept; `govx audit repair`
// sets the damage aside intact and records a gap, after which the exchange's spool opens
// and verify reports the gap, and only the gap, from then on.
func TestAuditRepairKeepsEvidence(t *testing.T) {
	spool, ckpts, key := tamperSpool(t)
	fr := readFrames(t, spool)
	fr[19] = flip(fr[19], 40, false)
	writeFrames(t, spool, fr)
	before := snapshotDir(t, spool)

	_, err := audit.OpenSpool(spool, audit.WithInstance("ex-1"))
	var damaged *audit.DamagedError
	if !errors.As(err, &damaged) {
		t.Fatalf("opening a spool with a damaged middle frame: err %v, want a DamagedError", err)
	}
	d := damaged.Damage[0]
	if d.File != filepath.Join(spool, fr[19].seg) || d.AfterSeq != 19 || !strings.Contains(err.Error(), "govx audit repair") {
		t.Fatalf("the refusal does not name the file, offset and seq: %v", err)
	}
	if after := snapshotDir(t, spool); !equalDirs(before, after) {
		t.Fatal("opening the damaged spool changed its files")
	}

	priv := key
	out, code := runAudit(t, "repair", "--spool", spool, "--checkpoints", ckpts, "--key", priv)
	if code != 0 || !strings.Contains(out, "lost from the live chain: seq 20..60") {
		t.Fatalf("repair: exit %d\n%s", code, out)
	}
	// Every original byte is still there, set aside.
	aside, _ := filepath.Glob(filepath.Join(spool, "damaged-*", "*.seg"))
	if len(aside) == 0 {
		t.Fatal("repair set nothing aside")
	}
	for _, p := range aside {
		if !bytes.Equal(mustRead(t, p), before[filepath.Base(p)]) {
			t.Fatalf("%s was changed while being set aside", p)
		}
	}
	k, err := audit.LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := audit.OpenSpool(spool, audit.WithInstance("ex-1"), audit.WithCheckpoints(k, ckpts, 0), audit.WithFreeSpaceReserve(0))
	if err != nil {
		t.Fatalf("the repaired spool does not open: %v", err)
	}
	ev := &audit.Event{Kind: audit.KindDecision, Department: "mz-3301", Action: "read", Dataset: "population.person", Decision: audit.Deny}
	if err := s.Append(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if ev.Seq != 62 {
		t.Fatalf("after the repair the next event has seq %d, want 62 (after the gap event at 61)", ev.Seq)
	}
	s.Close()
	out, code = runAudit(t, "verify", "--spool", spool, "--checkpoints", ckpts, "--pubkey", priv+".pub")
	if code != 2 || !strings.Contains(out, "FAILED: 1 problem(s)") || !strings.Contains(out, "gap: instance ex-1: events seq 20..60 were lost to damage") {
		t.Fatalf("verify after repair: exit %d\n%s", code, out)
	}
	// The repair hides no access from the auditor: the intact events set aside are
	// still shown by query (with a warning), the damaged one is not.
	out, code = runAudit(t, "query", "--spool", spool, "--format", "jsonl")
	if code != 0 || strings.Count(out, `"event_id"`) != 19+1+40+1 || !strings.Contains(out, "set aside by `govx audit repair`") {
		t.Fatalf("query after repair: exit %d, %d events (want 19 live, the gap, 40 set aside, 1 new)\n%s", code, strings.Count(out, `"event_id"`), out)
	}
}

// TestAuditSpoolRefusesWhatItSigned: the exchange does not start on a spool that holds
// less than it signed, or a shipped marker it did not sign — even when the bytes left
// look like a clean log or a crash; repair then records what is missing.
func TestAuditSpoolRefusesWhatItSigned(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(spool string, fr []frame)
	}{
		{"tail cut cleanly", func(s string, fr []frame) { writeFrames(t, s, fr[:tamperEvents-5]) }},
		{"every segment deleted", func(s string, fr []frame) { writeFrames(t, s, nil) }},
		{"an acknowledged last frame made to look torn", func(s string, fr []frame) {
			last := fr[len(fr)-1]
			fr[len(fr)-1] = frame{seg: last.seg, data: last.data[:len(last.data)/2]}
			writeFrames(t, s, fr)
		}},
		{"a forged shipped marker", func(s string, fr []frame) {
			kept := fr[10:]
			for i := range kept {
				kept[i].seg = "00000000000000000011.seg"
			}
			writeFrames(t, s, kept)
			os.WriteFile(filepath.Join(s, "shipped"), []byte(`{"instance":"ex-1","seq":10,"hash":"`+strings.Repeat("0", 64)+`","sig":"AAAA"}`), 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spool, ckpts, key := tamperSpool(t)
			tc.tamper(spool, readFrames(t, spool))
			k, err := audit.LoadPrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			_, err = audit.OpenSpool(spool, audit.WithInstance("ex-1"), audit.WithCheckpoints(k, ckpts, 0), audit.WithFreeSpaceReserve(0))
			var damaged *audit.DamagedError
			if !errors.As(err, &damaged) {
				t.Fatalf("the exchange opened a spool holding less than it signed: err %v", err)
			}
		})
	}
	t.Run("repair records a removed tail", func(t *testing.T) {
		spool, ckpts, key := tamperSpool(t)
		writeFrames(t, spool, readFrames(t, spool)[:tamperEvents-5])
		out, code := runAudit(t, "repair", "--spool", spool, "--checkpoints", ckpts, "--key", key)
		if code != 0 || !strings.Contains(out, "lost from the live chain: seq 56..60") {
			t.Fatalf("repair of a removed tail: exit %d\n%s", code, out)
		}
		k, _ := audit.LoadPrivateKey(key)
		s, err := audit.OpenSpool(spool, audit.WithInstance("ex-1"), audit.WithCheckpoints(k, ckpts, 0), audit.WithFreeSpaceReserve(0))
		if err != nil {
			t.Fatalf("after repair: %v", err)
		}
		s.Close()
		out, code = runAudit(t, "verify", "--spool", spool, "--checkpoints", ckpts, "--pubkey", key+".pub")
		if code != 2 || !strings.Contains(out, "gap: instance ex-1: events seq 56..60") {
			t.Fatalf("verify after repairing a removed tail: exit %d\n%s", code, out)
		}
	})
}

// TestAuditSpoolLocked: one process at a time owns a spool: a second exchange, or a
// repair while the exchange runs, is refused instead of interleaving or moving segments
// from under it.
func TestAuditSpoolLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := audit.OpenSpool(dir, audit.WithInstance("ex-1"), audit.WithFreeSpaceReserve(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.OpenSpool(dir, audit.WithInstance("ex-1")); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second opener: err %v, want the spool in use", err)
	}
	if out, code := runAudit(t, "repair", "--spool", dir); code == 0 || !strings.Contains(out, "in use") {
		t.Fatalf("repair of a spool in use: exit %d\n%s", code, out)
	}
	s.Close()
	s2, err := audit.OpenSpool(dir, audit.WithInstance("ex-1"), audit.WithFreeSpaceReserve(0))
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	s2.Close()
}

// TestAuditVerifyEmptiedCheckpointsOrSpool: an emptied checkpoint file vouches for
// nothing, and a spool directory emptied of everything (its instance file too) still
// fails verification against the checkpoints, rather than passing or being a tool error.
func TestAuditVerifyEmptiedCheckpointsOrSpool(t *testing.T) {
	spool, ckpts, key := tamperSpool(t)
	writeFrames(t, spool, readFrames(t, spool)[:tamperEvents-5])
	if err := os.WriteFile(ckpts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runAudit(t, "verify", "--spool", spool, "--checkpoints", ckpts, "--pubkey", key+".pub")
	if code != 2 || !strings.Contains(out, "holds no checkpoint") {
		t.Fatalf("an emptied checkpoint file: exit %d\n%s", code, out)
	}

	spool, ckpts, key = tamperSpool(t)
	if err := os.RemoveAll(spool); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(spool, 0o700)
	out, code = runAudit(t, "verify", "--spool", spool, "--checkpoints", ckpts, "--pubkey", key+".pub")
	if code != 2 || !strings.Contains(out, "cut: instance ex-1 has signed checkpoints up to seq 60") {
		t.Fatalf("a wiped spool: exit %d\n%s", code, out)
	}
}

func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	out := map[string][]byte{}
	for _, n := range names {
		if st, err := os.Stat(n); err == nil && !st.IsDir() {
			out[filepath.Base(n)] = mustRead(t, n)
		}
	}
	return out
}

func equalDirs(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuditQueryWarnsOfDamage: a query over a spool with a damaged middle frame shows the
// events on both sides of it, and says that the log is damaged, instead of taking the
// damage for the end of the log.
func TestAuditQueryWarnsOfDamage(t *testing.T) {
	spool, _, _ := tamperSpool(t)
	fr := readFrames(t, spool)
	fr[19] = flip(fr[19], 2, false) // a length field: the frame cannot be read at all
	writeFrames(t, spool, fr)
	out, code := runAudit(t, "query", "--spool", spool, "--format", "jsonl")
	if code != 0 {
		t.Fatalf("query: exit %d\n%s", code, out)
	}
	if n := strings.Count(out, `"event_id"`); n != tamperEvents-1 {
		t.Fatalf("query shows %d events, want the %d intact ones on both sides of the damage\n%s", n, tamperEvents-1, out)
	}
	if !strings.Contains(out, "warning: the spool is damaged at ") || !strings.Contains(out, "govx audit verify") {
		t.Fatalf("query does not warn of the damage:\n%s", out)
	}
}

// TestDemoRefusesADirInUse: a second demo on the directory of a running one does not
// move the running demo's spool aside (which would split its chain).
func TestDemoRefusesADirInUse(t *testing.T) {
	xdir := t.TempDir()
	spool := filepath.Join(xdir, "audit-spool")
	s, err := audit.OpenSpool(spool, audit.WithInstance("demo"), audit.WithFreeSpaceReserve(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := freshExchangeDir(xdir, time.Now()); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("a demo dir whose spool is open: err %v, want a refusal", err)
	}
	if _, err := os.Stat(spool); err != nil {
		t.Fatalf("the running demo's spool was moved: %v", err)
	}
	s.Close()
	kept, err := freshExchangeDir(xdir, time.Now())
	if err != nil || len(kept) != 1 {
		t.Fatalf("once closed, the spool is kept aside: %v %v", kept, err)
	}
}

// TestApplicationShownEscaped: text another department wrote into an application (a
// terminal escape in an approval number, a fake line in a reason) reaches the
// reviewer's terminal escaped, and what a grant unmasked is shown.
func TestApplicationShownEscaped(t *testing.T) {
	a := &apply.Application{ID: "APP-2026-000001", State: apply.Approved, LegalBasis: "依据\x1b[31m红字",
		Reasons:    []string{"第一行\n伪造的一行"},
		Conditions: &apply.Conditions{Approval: "ok\x1b]0;pwned\x07", Unmasked: []string{"id_number"}}}
	var b bytes.Buffer
	if err := printApplication(&b, a, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "\n伪造的一行") {
		t.Fatalf("raw control characters reached the terminal:\n%q", out)
	}
	if !strings.Contains(out, "unmasked id_number") {
		t.Fatalf("the unmasked column of the grant is not shown:\n%s", out)
	}
}
