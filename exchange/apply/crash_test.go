package apply

import (
	"bufio"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"govx/policies"
	"govx/schemas"
)

// crashChildEnv names the directory a child process grants applications in, until it
// is killed (TestKilledMidApproval).
const (
	crashChildEnv = "GOVX_APPLY_CRASH_CHILD"
	crashAtEnv    = "GOVX_APPLY_CRASH_AT"
)

// TestCrashChild is the child of TestKilledMidApproval: run without the variable, it
// does nothing. With it, it submits, reviews and approves applications one after
// another, printing each approval, until its parent kills it.
func TestCrashChild(t *testing.T) {
	root := os.Getenv(crashChildEnv)
	if root == "" {
		return
	}
	// GOVX_APPLY_CRASH_AT=step:n kills the child at the n-th time a grant reaches step
	// (after-commit, before-rename): the windows a random kill rarely hits.
	if at := os.Getenv(crashAtEnv); at != "" {
		step, nth, _ := strings.Cut(at, ":")
		n, _ := strconv.Atoi(nth)
		crashHook = func(s string) {
			if s == step {
				if n--; n <= 0 {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
			}
		}
	}
	h := newHarnessAt(t, filepath.Join(root, "policies"), filepath.Join(root, "applications.db"))
	for i := 0; ; i++ {
		a := h.submit(housing())
		h.must(h.svc.Review(ctx, authority, a.ID, Outcome{Grant: true}))
		h.must(h.svc.Approve(ctx, gab, a.ID, &Conditions{Approval: fmt.Sprintf("苏数共〔2026〕%d号", i)}))
		fmt.Printf("approved %s\n", a.ID)
	}
}

// Killing the exchange mid-approval, at a random point, leaves the policy directory
// loadable with either the agreements file before the approval or the one after it —
// never a half-written one — and a restart brings the file in line with the database.
func TestKilledMidApproval(t *testing.T) {
	cat, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	// Six runs killed at a random moment, then two in each window between the steps
	// of a grant's write (the startup sync counts as the first).
	var at []string
	for range 6 {
		at = append(at, "")
	}
	for _, step := range []string{"after-commit", "before-rename"} {
		for _, n := range []int{2 + mrand.IntN(3), 5 + mrand.IntN(3)} {
			at = append(at, step+":"+strconv.Itoa(n))
		}
	}
	for run, crashAt := range at {
		root := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+root, crashAtEnv+"="+crashAt)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it grant a random number of applications, then kill it a random moment
		// later: anywhere inside the next step, its commit or its file write.
		lines := bufio.NewScanner(out)
		if crashAt == "" {
			want := 1 + mrand.IntN(8)
			for n := 0; n < want; n++ {
				if !lines.Scan() {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("run %d: the child stopped after %d approvals", run, n)
				}
			}
			time.Sleep(time.Duration(mrand.IntN(4000)) * time.Microsecond) // a random kill point, not a wait
			cmd.Process.Signal(syscall.SIGKILL)
		} else {
			for lines.Scan() { // the child kills itself at crashAt
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("run %d (%s): the child ended with %v, not killed", run, crashAt, err)
		}

		dir := filepath.Join(root, "policies")
		b, err := policies.Load(dir)
		if err != nil {
			t.Fatalf("run %d: the policy directory does not load after the kill: %v", run, err)
		}
		if probs := policies.Check(b, cat); len(probs) > 0 {
			t.Fatalf("run %d: the policy does not check after the kill: %v", run, probs)
		}
		inFile := 0
		for _, a := range b.Agreements {
			if a.Application != "" {
				inFile++
				if a.ID != AgreementID(a.Application) || a.ID != fmt.Sprintf("AGR-APP-2026-%06d", inFile) {
					t.Errorf("run %d: agreement %s out of order or not from its application (%s)", run, a.ID, a.Application)
				}
			}
		}
		st, err := OpenStore(ctx, filepath.Join(root, "applications.db"))
		if err != nil {
			t.Fatal(err)
		}
		approved, err := st.listApplications(ctx, st.db, Filter{State: Approved})
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The file is written after the commit: it holds the approvals committed, or all
		// but the last one (killed between commit and write) — the old or the new file.
		if inFile != len(approved) && inFile != len(approved)-1 {
			t.Fatalf("run %d: the file holds %d agreements, the database %d approvals", run, inFile, len(approved))
		}
		if crashAt != "" && inFile != len(approved)-1 {
			t.Fatalf("run %d: killed at %s, yet the file holds the last approval", run, crashAt)
		}
		// A restart writes what the database holds, and clears what the crash left.
		h := newHarnessAt(t, dir, filepath.Join(root, "applications.db"))
		if got := strings.Count(h.agreementsFile(), "application: APP-"); got != len(approved) {
			t.Errorf("run %d: after restart the file holds %d agreements, want %d", run, got, len(approved))
		}
		if temps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(temps) > 0 {
			t.Errorf("run %d: temporary files left after restart: %v", run, temps)
		}
		t.Logf("run %d (%s): killed after %d approvals committed; the file held %d", run, crashAt, len(approved), inFile)
	}
}

// TestRestartLeavesUnchangedAgreements: a restart over the same applications finds the
// agreements file as it left it, so it neither rewrites it nor makes the engine read,
// check and compile the same policy again (a second full policy load at every start).
func TestRestartLeavesUnchangedAgreements(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	dsn := filepath.Join(t.TempDir(), "applications.db")
	newHarnessAt(t, dir, dsn)
	file := filepath.Join(dir, AgreementsFile)
	before, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessAt(t, dir, dsn)
	after, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("the restart replaced an agreements file whose content had not changed")
	}
	if n := h.engine.Stats().Reloads; n != 0 {
		t.Errorf("the restart reloaded the policy %d time(s) for unchanged agreements", n)
	}
}
