package server

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"govx/internal/testenv"
)

// smallDisk mounts a tmpfs of size bytes at a new directory: a real file system that a
// test can fill. It needs root (as make test and CI run); without it the test fails.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs at %s (the test needs root, as make test runs): %v\n%s", size, dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// TestServeAuditDiskFullHeals: when the audit spool's disk fills past the reserve, every
// request is refused (no access without audit) and /readyz says why; once space is freed
// the exchange serves again within seconds, with no restart.
func TestServeAuditDiskFullHeals(t *testing.T) {
	disk := smallDisk(t, "16m")
	reserve := int64(4 << 20)
	x, _, _ := inProcess(t, func(c *Config) {
		c.Audit.SpoolDir = filepath.Join(disk, "spool")
		c.Audit.FreeSpaceReserve = &reserve
	})
	defer x.Close()
	post := func() (int, string) {
		resp, err := http.Post("http://"+x.HTTPAddr()+"/v1/datasets/population.person/pull", "application/json", strings.NewReader(`{"purpose":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, b.String()
	}
	if code, body := post(); code != http.StatusUnauthorized {
		t.Fatalf("a request without a token while the disk has room: %d %s, want 401", code, body)
	}

	// Fill the disk to leave 1 MiB: below the 4 MiB reserve.
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, freeBytes(t, disk)-1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := post(); code != http.StatusServiceUnavailable || !strings.Contains(body, "audit_unavailable") {
		t.Fatalf("a request while the spool is below its reserve: %d %s, want 503 audit_unavailable", code, body)
	}
	testenv.WaitFor(t, 5*time.Second, "/readyz not ready naming the audit spool", func() bool {
		code, body := get(t, x, "/readyz")
		return code == 503 && strings.Contains(body, "audit:")
	})
	if _, body := get(t, x, "/metrics"); !strings.Contains(body, "govx_audit_writable 0") {
		t.Error("/metrics: govx_audit_writable is not 0 while the spool refuses events")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "ready again within 5 s of freeing the disk", func() bool {
		code, _ := get(t, x, "/readyz")
		return code == 200
	})
	if code, body := post(); code != http.StatusUnauthorized {
		t.Fatalf("a request after the disk was freed: %d %s, want 401 (served and audited again)", code, body)
	}
	if _, body := get(t, x, "/metrics"); !strings.Contains(body, "govx_audit_writable 1") {
		t.Error("/metrics: govx_audit_writable is not 1 after healing")
	}
}

// TestServeTokenFileReadiness: a token file that cannot be read refuses every token
// holder (fail closed), so /readyz says so until it is readable again.
func TestServeTokenFileReadiness(t *testing.T) {
	x, _, _ := inProcess(t)
	defer x.Close()
	path := x.tokens.Path()
	good, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, x, "/readyz"); code != 503 || !strings.Contains(body, "tokens: token file") {
		t.Fatalf("/readyz with a damaged token file: %d %s", code, body)
	}
	if good == nil {
		good = []byte("[]")
	}
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, x, "/readyz"); code != 200 {
		t.Fatalf("/readyz with the token file repaired: %d %s", code, body)
	}
}
