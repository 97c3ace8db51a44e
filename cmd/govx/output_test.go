package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"govx/internal/testenv"
)

// TestOutputFile: -o writes whole or not at all. A new file appears only on commit and
// is private; an existing one is rewritten in place on commit (same inode, so its
// owner, group, mode and other links stay) and untouched on abort; a file the caller
// may not write is refused before anything is written; nothing is left beside it.
func TestOutputFile(t *testing.T) {
	dir := t.TempDir()
	partials := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, ".*.partial"))
		return m
	}

	fresh := filepath.Join(dir, "new.csv")
	o, err := createOutput(fresh)
	if err != nil {
		t.Fatal(err)
	}
	o.WriteString("rows\n")
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the new file exists before commit: %v", err)
	}
	if err := o.commit(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("new file: %v, %v; want mode 0600", st, err)
	}
	// Without /proc to link the unnamed file through, it is copied out.
	procFD = filepath.Join(dir, "no-proc", "%d")
	copied := filepath.Join(dir, "copied.csv")
	if o, err = createOutput(copied); err != nil {
		t.Fatal(err)
	}
	o.WriteString("rows\n")
	err = o.commit()
	procFD = "/proc/self/fd/%d"
	if b, rerr := os.ReadFile(copied); err != nil || string(b) != "rows\n" {
		t.Errorf("a new file without /proc: %v, reads %q, %v", err, b, rerr)
	}
	if st, err := os.Stat(copied); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("a new file without /proc: %v, %v; want mode 0600", st, err)
	}

	kept := filepath.Join(dir, "kept.csv")
	link := filepath.Join(dir, "link.csv")
	os.WriteFile(kept, []byte("yesterday\n"), 0o640)
	os.Chmod(kept, 0o640)
	if err := os.Link(kept, link); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(kept)
	o, err = createOutput(kept)
	if err != nil {
		t.Fatal(err)
	}
	o.WriteString("half of tod")
	o.abort()
	if b, _ := os.ReadFile(kept); string(b) != "yesterday\n" || len(partials()) > 0 {
		t.Fatalf("after abort: %q, partial files %v", b, partials())
	}
	o, err = createOutput(kept)
	if err != nil {
		t.Fatal(err)
	}
	o.WriteString("today\n")
	if err := o.commit(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(kept)
	if b, _ := os.ReadFile(link); string(b) != "today\n" || !os.SameFile(before, after) || after.Mode().Perm() != 0o640 {
		t.Errorf("rewritten: other link reads %q, same file %v, mode %v; want today, the same inode, 0640", b, os.SameFile(before, after), after.Mode().Perm())
	}

	// A plain file of one link, ours, without extended attributes: replaced by a rename
	// (a new inode, no second copy), keeping its mode; an aborted pull leaves it.
	plain := filepath.Join(dir, "plain.csv")
	os.WriteFile(plain, []byte("yesterday\n"), 0o640)
	os.Chmod(plain, 0o640)
	before, _ = os.Stat(plain)
	for _, commit := range []bool{false, true} {
		if o, err = createOutput(plain); err != nil {
			t.Fatal(err)
		}
		if !o.replace {
			t.Fatal("a plain file of one link is not replaced by a rename")
		}
		if st, err := o.Stat(); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("the temporary file while the pull runs: %v, %v; want 0600", st, err)
		}
		o.WriteString("today\n")
		if !commit {
			o.abort()
			if b, _ := os.ReadFile(plain); string(b) != "yesterday\n" {
				t.Fatalf("after abort: %q", b)
			}
			continue
		}
		if err := o.commit(); err != nil {
			t.Fatal(err)
		}
	}
	after, _ = os.Stat(plain)
	if b, _ := os.ReadFile(plain); string(b) != "today\n" || os.SameFile(before, after) || after.Mode().Perm() != 0o640 {
		t.Errorf("replaced: reads %q, same inode %v, mode %v; want today, a new inode, 0640", b, os.SameFile(before, after), after.Mode().Perm())
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*")); len(m) > 0 {
		t.Errorf("files left beside: %v", m)
	}

	// A file replaced while the pull runs is left to whoever replaced it.
	if o, err = createOutput(plain); err != nil {
		t.Fatal(err)
	}
	o.WriteString("tomorrow\n")
	swapped := filepath.Join(dir, "swapped.csv")
	os.WriteFile(swapped, []byte("theirs\n"), 0o600)
	if err := os.Rename(swapped, plain); err != nil {
		t.Fatal(err)
	}
	if err := o.commit(); err == nil || !strings.Contains(err.Error(), "replaced or removed during the pull") {
		t.Errorf("commit over a file replaced meanwhile: %v", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "theirs\n" {
		t.Errorf("the file replaced meanwhile reads %q", b)
	}
	// One removed while the pull runs stays removed.
	if o, err = createOutput(plain); err != nil {
		t.Fatal(err)
	}
	o.WriteString("tomorrow\n")
	os.Remove(plain)
	if err := o.commit(); err == nil || !strings.Contains(err.Error(), "replaced or removed during the pull") {
		t.Errorf("commit over a file removed meanwhile: %v", err)
	}
	if _, err := os.Stat(plain); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file removed meanwhile: %v", err)
	}

	if os.Geteuid() != 0 { // root writes read-only files
		ro := filepath.Join(dir, "ro.csv")
		os.WriteFile(ro, []byte("frozen\n"), 0o444)
		if _, err := createOutput(ro); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("a read-only file: %v, want permission denied", err)
		}
	}
	if len(partials()) > 0 {
		t.Errorf("partial files left: %v", partials())
	}
}

// TestPullInterrupted: Ctrl-C (or SIGTERM, SIGHUP) during `govx pull -o FILE` ends the
// pull through its error path: exit 130, FILE as it was, no partial file beside it with
// rows in it; kill -9 leaves FILE as it was and nothing beside it either (the temporary
// file has no name). The exchange here accepts the connection and never answers, so
// the pull is interrupted while it waits, its temporary file already made.
func TestPullInterrupted(t *testing.T) {
	testenv.Require(t, testenv.Python) // make test's services: the build below is the CLI as users run it
	dir := t.TempDir()
	bin := filepath.Join(dir, "govx")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
			accepted <- struct{}{}
		}
	}()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGKILL} {
		out := filepath.Join(dir, "export.csv")
		os.WriteFile(out, []byte("yesterday\n"), 0o600)
		cmd := exec.Command(bin, "pull", "population.person", "--purpose", "minimum-living-allowance-review",
			"--format", "csv", "-o", out, "--flight", ln.Addr().String(), "--token", "govx_x")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select { // the output is open before the pull connects
		case <-accepted:
		case <-time.After(30 * time.Second):
			t.Fatal("the pull did not connect")
		}
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		var ee *exec.ExitError
		if sig != syscall.SIGKILL && (!errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "left as it was")) {
			t.Errorf("%v: %v, stderr %q; want exit 130 saying the file is left as it was", sig, err, stderr.String())
		}
		if b, _ := os.ReadFile(out); string(b) != "yesterday\n" {
			t.Errorf("%v: the export reads %q", sig, b)
		}
		// Nothing beside it, even after kill -9: the temporary file has no name.
		if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 2 {
			t.Errorf("%v: the directory holds %v; want the CLI and the export alone", sig, m)
		}
	}
}

// TestOutputFileDiskFull: a file rewritten in place (it has another link) on a disk
// with room for the pull's temporary file but not for a second copy is left as it was,
// and the pull fails saying so; it is not emptied or cut short. It needs a small
// filesystem of its own, a tmpfs, which only root may mount (make test runs as root).
func TestOutputFileDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		return // no way to fill a disk of its own: the rest of TestOutputFile holds
	}
	dir := filepath.Join(t.TempDir(), "small")
	os.Mkdir(dir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a 1 MB tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	old := strings.Repeat("yesterday\n", 10_000) // 100 KB
	path := filepath.Join(dir, "export.csv")
	os.WriteFile(path, []byte(old), 0o640)
	if err := os.Link(path, filepath.Join(dir, "link.csv")); err != nil { // rewritten in place
		t.Fatal(err)
	}
	o, err := createOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	if o.replace {
		t.Fatal("a file with another link is replaced by a rename")
	}
	if _, err := o.WriteString(strings.Repeat("today\n", 120_000)); err != nil { // 720 KB
		t.Fatalf("the temporary file does not fit: %v", err)
	}
	if err := o.commit(); err == nil || !strings.Contains(err.Error(), "left as it was") {
		t.Errorf("commit with no room for the copy: %v, want an error saying the file is left as it was", err)
	}
	if b, _ := os.ReadFile(path); string(b) != old {
		t.Errorf("the file after a failed rewrite holds %d bytes, want the %d it had", len(b), len(old))
	}
}
