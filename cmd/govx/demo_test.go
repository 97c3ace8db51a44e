package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"govx/internal/testenv"
)

// demoEnv is a directory with a freshly built govx, a bin directory that puts it (and
// the test's Python) on PATH as `govx` and `python3`, and a working directory for the
// demo, so printed and documented commands run exactly as a person would type them.
type demoEnv struct {
	work, bin string
	env       []string
}

func newDemoEnv(t *testing.T) *demoEnv {
	t.Helper()
	py := testenv.Require(t, testenv.Python)
	root := t.TempDir()
	e := &demoEnv{work: filepath.Join(root, "work"), bin: filepath.Join(root, "bin")}
	os.MkdirAll(e.work, 0o755)
	os.MkdirAll(e.bin, 0o755)
	build := exec.Command("go", "build", "-o", filepath.Join(e.bin, "govx"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// A wrapper, not a symlink: a virtual environment's python finds its packages
	// only when started by its own path.
	wrapper := "#!/bin/sh\nexec '" + py + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(e.bin, "python3"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	e.env = append(os.Environ(), "PATH="+e.bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return e
}

type demoRun struct {
	cmd  *exec.Cmd
	out  *testenv.Buffer
	done chan error
}

// start runs `govx demo` with args and waits until it prints that it is ready.
func (e *demoEnv) start(t *testing.T, args ...string) *demoRun {
	t.Helper()
	d := &demoRun{out: &testenv.Buffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(filepath.Join(e.bin, "govx"), append([]string{"demo", "--dir", "govx-demo"}, args...)...)
	d.cmd.Dir, d.cmd.Env, d.cmd.Stdout, d.cmd.Stderr = e.work, e.env, d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	deadline := time.After(4 * time.Minute)
	for !strings.Contains(d.out.String(), "Press Ctrl-C to stop.") {
		select {
		case err := <-d.done:
			t.Fatalf("the demo exited before it was ready: %v\n%s", err, d.out.String())
		case <-deadline:
			t.Fatalf("the demo was not ready within 4 minutes:\n%s", d.out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return d
}

// stop sends Ctrl-C and expects a clean exit with status 0.
func (d *demoRun) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("the demo did not exit cleanly on Ctrl-C: %v\n%s", err, d.out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the demo did not stop within 60s of Ctrl-C")
	}
}

// commands returns the lines the demo printed as commands to try ("  $ …").
func (d *demoRun) commands() []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(d.out.String()))
	for sc.Scan() {
		if cmd, ok := strings.CutPrefix(strings.TrimLeft(sc.Text(), " "), "$ "); ok {
			out = append(out, cmd)
		}
	}
	return out
}

// run runs one shell command line in the demo's working directory.
func (e *demoEnv) run(line string) (stdout, stderr string, err error) {
	cmd := exec.Command("bash", "-c", line)
	cmd.Dir, cmd.Env = e.work, e.env
	var o, s bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &s
	err = cmd.Run()
	return o.String(), s.String(), err
}

var (
	maskedIDRow = regexp.MustCompile(`(?m)^\d{6}\*{8}\d{3}[\dX]\s+\S+\s+3301\d\d\s+\d{4}-\d\d-\d\d\s*$`)
	maskedCSV   = regexp.MustCompile(`(?m)^\d{6}\*{8}\d{3}[\dX],[^,]+,3301\d\d,\d{4}-\d\d-\d\d$`)
)

// checkPrinted runs every command the demo printed and checks what each shows.
func checkPrinted(t *testing.T, e *demoEnv, d *demoRun, auditRetry time.Duration) {
	cmds := d.commands()
	if len(cmds) < 9 {
		t.Fatalf("the demo printed %d commands, want at least 9:\n%s", len(cmds), d.out.String())
	}
	for _, line := range cmds {
		line := line
		name := strings.Join(strings.Fields(line)[:2], " ")
		t.Run(name, func(t *testing.T) {
			out, errOut, err := e.run(line)
			both := out + errOut
			switch {
			case strings.Contains(line, "zj-3205"):
				if err == nil || !strings.Contains(errOut, "permission_denied") || !strings.Contains(errOut, "no_agreement") {
					t.Fatalf("denied pull: err %v, output:\n%s", err, both)
				}
				return
			case err != nil && !strings.HasPrefix(line, "govx audit"):
				t.Fatalf("%s\nfailed: %v\n%s", line, err, both)
			}
			switch {
			case strings.HasPrefix(line, "govx catalog"):
				if !strings.Contains(out, "population.person") {
					t.Fatalf("catalog lacks population.person:\n%s", out)
				}
			case strings.HasPrefix(line, "govx pull"):
				if n := len(maskedIDRow.FindAllString(out, -1)); n != 5 {
					t.Fatalf("granted pull: %d masked Hangzhou rows, want 5:\n%s", n, both)
				}
			case strings.HasPrefix(line, "govx lookup"):
				if !regexp.MustCompile(`"id_number": "3301\d\d\*{8}\d{3}[\dX]"`).MatchString(out) {
					t.Fatalf("lookup did not return a masked Hangzhou record:\n%s", out)
				}
			case strings.HasPrefix(line, "govx verify"):
				if !strings.Contains(out, `"name": true`) || !strings.Contains(out, `"birth_date": true`) || regexp.MustCompile(`\d{4}-\d\d`).MatchString(out) {
					t.Fatalf("verify must answer booleans only:\n%s", out)
				}
			case strings.HasPrefix(line, "curl"):
				if !strings.HasPrefix(out, "id_number,name,household_region,birth_date\n") || len(maskedCSV.FindAllString(out, -1)) != 5 {
					t.Fatalf("curl pull:\n%s", out)
				}
			case strings.HasPrefix(line, "python3"):
				if !regexp.MustCompile(`'id_number': '3301\d\d\*{8}`).MatchString(out) {
					t.Fatalf("python pull:\n%s", both)
				}
			case strings.HasPrefix(line, "govx aggregate"):
				if !regexp.MustCompile(`(?m)^33\d{4}\s+(\d{2,4}\s+)?\d+`).MatchString(out) || !strings.Contains(errOut, "suppressed") {
					t.Fatalf("aggregate: want Zhejiang counties with counts and the suppression line:\n%s", both)
				}
			case strings.HasPrefix(line, "govx policy explain"):
				if !strings.Contains(out, "ALLOW") || !strings.Contains(out, "AGR-2026-0001") {
					t.Fatalf("explain:\n%s", out)
				}
			case strings.HasPrefix(line, "govx applications list"):
				// The demo filed applications in every state through the sharing process.
				for _, st := range []string{"submitted", "with_provider", "approved", "refused", "disputed", "coordinated", "withdrawn"} {
					if !regexp.MustCompile(`(?m)^APP-\d{4}-\d{6}\s+` + st + `\s`).MatchString(out) {
						t.Errorf("applications list lacks one %s:\n%s", st, out)
					}
				}
			case strings.HasPrefix(line, "govx audit query"):
				// The audit log lists the requests above: the pull and the lookup, with
				// the lookup's key. ClickHouse receives them from the shipper, shortly.
				deadline := time.Now().Add(auditRetry)
				for {
					ok := err == nil && strings.Contains(out, "lookup") && strings.Contains(out, " read ") && strings.Contains(out, "mz-3301")
					if ok {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("audit query does not list the demo's requests (err %v):\n%s", err, both)
					}
					time.Sleep(500 * time.Millisecond)
					out, errOut, err = e.run(line)
					both = out + errOut
				}
			default:
				t.Fatalf("the demo printed a command this test does not know how to check: %s", line)
			}
		})
	}
}

// readmeCommands returns the commands of the README's walkthroughs: lines starting with
// "$ " in ```sh blocks after "## Walkthroughs", with here-documents joined to their line.
func readmeCommands(t *testing.T) []string {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, walk, ok := strings.Cut(string(data), "## Walkthroughs")
	if !ok {
		t.Fatal("README.md has no Walkthroughs section")
	}
	walk, _, _ = strings.Cut(walk, "## Configuration reference")
	var cmds []string
	inBlock := false
	lines := strings.Split(walk, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "```sh"):
			inBlock = true
		case strings.HasPrefix(l, "```"):
			inBlock = false
		case inBlock && strings.HasPrefix(l, "$ "):
			cmd := strings.TrimPrefix(l, "$ ")
			if strings.Contains(cmd, "<<'EOF'") {
				for i++; i < len(lines) && lines[i] != "EOF"; i++ {
					cmd += "\n" + lines[i]
				}
				cmd += "\nEOF"
			}
			cmds = append(cmds, cmd)
		}
	}
	return cmds
}

// httpAddr returns the HTTP address the demo printed when it was ready.
func (d *demoRun) httpAddr(t *testing.T) string {
	m := regexp.MustCompile(`HTTP http://(\S+),`).FindStringSubmatch(d.out.String())
	if m == nil {
		t.Fatalf("the demo did not print its HTTP address:\n%s", d.out.String())
	}
	return m[1]
}

// checkReadme runs the README's walkthroughs against a running demo. The README writes
// the demo's default HTTP address; the test's demo listens on a free port instead, so
// that a busy 8080 on the machine cannot fail it.
func checkReadme(t *testing.T, e *demoEnv, httpAddr string) {
	cmds := readmeCommands(t)
	for i := range cmds {
		cmds[i] = strings.ReplaceAll(cmds[i], "127.0.0.1:8080", httpAddr)
	}
	if len(cmds) < 15 {
		t.Fatalf("found only %d walkthrough commands in README.md", len(cmds))
	}
	for _, line := range cmds {
		denied := strings.HasSuffix(line, "# expect: denied")
		out, errOut, err := e.run(line)
		// The exchange reloads an edited policy within a second or two: a command that
		// is expected to succeed gets that long before it counts as failed. Commands
		// that write files are never repeated.
		if err != nil && !denied && !strings.Contains(line, ">") {
			deadline := time.Now().Add(20 * time.Second)
			for err != nil && time.Now().Before(deadline) {
				time.Sleep(250 * time.Millisecond)
				out, errOut, err = e.run(line)
			}
		}
		switch {
		case denied && err == nil:
			t.Errorf("README command should be denied but succeeded:\n%s\n%s", line, out)
		case denied && !strings.Contains(errOut, "permission_denied"):
			t.Errorf("README command failed without a policy denial:\n%s\n%s", line, errOut)
		case !denied && err != nil:
			t.Errorf("README command failed: %v\n%s\n%s%s", err, line, out, errOut)
		case !denied && strings.TrimSpace(out+errOut) == "" && !strings.Contains(line, ">"):
			t.Errorf("README command printed nothing:\n%s", line)
		case strings.HasPrefix(line, "govx audit subject") && (!strings.Contains(out, "bulk pull whose scope included this record") || !strings.Contains(out, "330106-2026-000123")):
			// The walkthroughs pulled Hangzhou's persons and looked this one up for a case.
			t.Errorf("the subject report lacks the Hangzhou pulls or the case's lookup:\n%s", out)
		}
	}
	// The steward's agreement took effect without a restart: Suzhou's rows, masked.
	out, _, err := e.run("govx pull population.person --purpose housing-security-qualification --limit 5 --profile govx-demo/profiles/zj-3205.yaml")
	if err != nil || len(regexp.MustCompile(`(?m)^3205\d\d\*{8}\d{3}[\dX]\s`).FindAllString(out, -1)) != 5 {
		t.Errorf("after the steward's edit, zj-3205 should read 5 masked Suzhou rows: %v\n%s", err, out)
	}
}

func TestIntegrationDemo(t *testing.T) {
	e := newDemoEnv(t)
	free := []string{"--flight", "127.0.0.1:0", "--http", "127.0.0.1:0", "--console", "127.0.0.1:0"}
	d := e.start(t, free...)
	t.Run("printed commands", func(t *testing.T) { checkPrinted(t, e, d, 0) })
	t.Run("README walkthrough", func(t *testing.T) { checkReadme(t, e, d.httpAddr(t)) })
	t.Run("licence revoked at the source", func(t *testing.T) { checkRevokedAtSource(t, e) })
	t.Run("aggregates against the sources", func(t *testing.T) { checkAggregatesAtSource(t, e) })
	d.stop(t)

	// A second run reuses the generated databases and starts the rest afresh.
	d = e.start(t, free...)
	if !strings.Contains(d.out.String(), "sources: reusing the databases") {
		t.Errorf("the second run regenerated the databases:\n%s", d.out.String())
	}
	// …but not the first run's audit log: it is kept, the demo says where, and it still
	// answers who read what.
	if m := regexp.MustCompile(`audit: the previous run's audit log is kept in (\S+)`).FindStringSubmatch(d.out.String()); m == nil {
		t.Errorf("the second run did not say where the first run's audit log went:\n%s", d.out.String())
	} else if out, _, err := e.run("govx audit query --spool " + m[1] + " --department mz-3301 --action lookup"); err != nil || !strings.Contains(out, "lookup") {
		t.Errorf("the kept audit log does not list the first run's lookups: %v\n%s", err, out)
	}
	out, _, err := e.run("govx pull population.person --purpose housing-security-qualification --profile govx-demo/profiles/zj-3205.yaml")
	if err == nil {
		t.Errorf("the second run kept the first run's edited policy:\n%s", out)
	}
	d.stop(t)
}

// checkRevokedAtSource revokes the demo's sample licence in the provider's own database,
// as its clerk would, and waits for licence verification and lookups through the
// exchange to say so: the connector's poll, Kafka, ingest and the store, end to end.
func checkRevokedAtSource(t *testing.T, e *demoEnv) {
	verify := `govx license verify "$(cat govx-demo/sample-licence)" --digest "$(cat govx-demo/sample-licence-digest)" --purpose housing-security-qualification --profile govx-demo/profiles/zj-3205.yaml`
	lookup := `govx lookup license.certificate "$(cat govx-demo/sample-licence)" --purpose minimum-living-allowance-review --profile govx-demo/profiles/mz-3301.yaml`
	if out, errOut, err := e.run(verify); err != nil || !strings.Contains(out, `"result": "valid"`) {
		t.Fatalf("the sample licence before revocation: %v\n%s%s", err, out, errOut)
	}
	no, err := os.ReadFile(filepath.Join(e.work, "govx-demo", "sample-licence"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.work, "govx-demo", "sources", "zwfw.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	revokedAt := time.Now()
	res, err := db.Exec(`UPDATE dzzz_zzxx SET zzzt = '吊销', gxsj = ? WHERE zzbh = ?`, time.Now().UTC().Format(time.DateTime), strings.TrimSpace(string(no)))
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("revoking the licence at the source: %v (%d rows)", err, n)
	}
	// Lookups and verifies of one key are budgeted (5 verifies, 20 lookups an hour):
	// poll by lookup, once a second.
	var last time.Time
	testenv.WaitFor(t, 15*time.Second, "a lookup to show the licence revoked", func() bool {
		if time.Since(last) < time.Second {
			return false
		}
		last = time.Now()
		out, _, err := e.run(lookup)
		return err == nil && strings.Contains(out, "revoked")
	})
	took := time.Since(revokedAt)
	if out, errOut, err := e.run(verify); err != nil || !strings.Contains(out, `"result": "revoked"`) {
		t.Fatalf("verification of the revoked licence: %v\n%s%s", err, out, errOut)
	}
	// The demo's connectors poll every second: two poll intervals is the bound.
	// It is logged, not asserted (a loaded CI machine is not a benchmark).
	t.Logf("the revocation reached lookups within %v of the source change (demo poll interval 1s; polled once a second)", took.Round(time.Millisecond))
}

func TestIntegrationDemoRealServices(t *testing.T) {
	kafka := testenv.Require(t, testenv.Kafka)
	ch := testenv.Require(t, testenv.ClickHouse)
	e := newDemoEnv(t)
	d := e.start(t, "--kafka", kafka, "--clickhouse", ch, "--flight", "127.0.0.1:0", "--http", "127.0.0.1:0", "--console", "127.0.0.1:0")
	if !strings.Contains(d.out.String(), "kafka: "+kafka) || !strings.Contains(d.out.String(), "audit ClickHouse "+ch) {
		t.Fatalf("the demo did not use the real services:\n%s", d.out.String())
	}
	checkPrinted(t, e, d, 60*time.Second)
	d.stop(t)
}
