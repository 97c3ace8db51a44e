package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/segmentio/kafka-go"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/client"
	"govx/exchange/server"
	"govx/exchange/server/servertest"
	"govx/internal/kafkatest"
	"govx/internal/testenv"
	"govx/policies"
	"govx/schemas/ident"
)

// screenshots is where the tests keep pictures of the main pages, for docs/console.md
// (with GOVX_SCREENSHOTS=1).
var screenshots = filepath.Join("..", "..", "docs", "console")

// chromium finds Debian's chromium; without it the test fails, naming the script that
// installs it (a browser test that does not run must not pass).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("headless Chromium is not installed: run deploy/local/chromium.sh (deploy/local/up.sh does, as `make test` runs it)")
	return ""
}

// persons are valid population.person records in Nanjing (the applicant's city) and
// Hangzhou.
func persons(t *testing.T) []map[string]any {
	var out []map[string]any
	for i, county := range []string{"320102", "320102", "330106", "320104"} {
		body := fmt.Sprintf("%s1985%02d15%03d", county, i+1, 100+i)
		c, err := ident.CitizenIDCheckChar(body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, map[string]any{"id_number": body + string(c), "name": []string{"张三", "李娜", "王伟", "陈芳"}[i],
			"gender": "1", "birth_date": fmt.Sprintf("1985-%02d-15", i+1), "ethnicity": "01", "household_region": county,
			"address": "某路1号", "phone": fmt.Sprintf("138%08d", i), "status": "alive", "updated_at": "2026-11-01T00:00:00Z"})
	}
	return out
}

// consoleExchange starts an exchange with the console on its own listener, the shipped
// policies in a directory the sharing process writes to, and tokens for one system of
// each role. Its clock can be moved forward (idle sessions).
func consoleExchange(t *testing.T, skew *atomic.Int64, mods ...func(*server.Config)) (*server.Exchange, *server.Config, map[string]string, []map[string]any) {
	t.Helper()
	b := kafkatest.Start(t)
	topic := "govx.population.person"
	kafkatest.CreateTopic(t, b.Addr(), topic)
	ps := persons(t)
	var msgs []kafka.Message
	for _, p := range ps {
		v, _ := json.Marshal(p)
		msgs = append(msgs, kafka.Message{Key: []byte(p["id_number"].(string)), Value: v})
	}
	kafkatest.Produce(t, b.Addr(), topic, msgs...)

	dir := t.TempDir()
	cfg := server.Defaults(dir)
	cfg.FlightAddr, cfg.HTTPAddr, cfg.Console.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kafka.Brokers = []string{b.Addr()}
	cfg.Datasets = []string{"population.person"}
	cfg.PoliciesDir = filepath.Join(dir, "policies")
	if err := policies.CopyEmbedded(cfg.PoliciesDir); err != nil {
		t.Fatal(err)
	}
	toks := map[string]string{}
	for name, subj := range map[string]string{"department": "mz-3201/social-assistance", "steward": "gab/steward",
		"authority": "zwfw/sharing-review", "auditor": "zwfw/audit"} {
		toks[name] = servertest.Token(t, cfg.TokensFile, subj)
	}
	for _, m := range mods {
		m(cfg)
	}
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	x, err := server.Start(context.Background(), cfg, server.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	select {
	case <-x.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("not ready after 30s: %v", x.Readiness().Err())
	}
	return x, cfg, toks, ps
}

// browser drives one headless Chromium tab.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func newBrowser(t *testing.T, base string) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.Flag("lang", "zh-CN"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("headless Chromium did not start: %v (reinstall it with deploy/local/chromium.sh)", err)
	}
	return &browser{t: t, ctx: ctx, base: base}
}

// run runs one action with a time limit and returns its value.
func run[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// open navigates to path and returns the HTTP status of the page.
func (b *browser) open(path string) int {
	b.t.Helper()
	resp := run(b, "open "+path, chromedp.NavigateResponse(b.base+path))
	return int(resp.Status)
}

// text is the text of the first element sel matches, "" when none does: pages are
// rendered on the server, complete once loaded.
func (b *browser) text(sel string) string {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	return run(b, "read "+sel, chromedp.Evaluate[string](`(document.querySelector(`+string(q)+`) || {innerText: ""}).innerText`))
}

func (b *browser) location() string {
	b.t.Helper()
	return run(b, "location", chromedp.Location())
}

// submit fills the fields of a form (by element id) and clicks its button.
func (b *browser) submit(button string, fields map[string]string) {
	b.t.Helper()
	var steps []chromedp.Action[chromedp.Void]
	for id, v := range fields {
		steps = append(steps, chromedp.SetValue(chromedp.ID(id), v))
	}
	steps = append(steps, chromedp.Click(chromedp.ID(button)))
	b.navigate("submit "+button, steps...)
}

// navigate runs steps that load a page, and returns once it has loaded.
func (b *browser) navigate(what string, steps ...chromedp.Action[chromedp.Void]) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return int(resp.Status)
}

func (b *browser) signIn(token string) {
	b.t.Helper()
	b.open("/login")
	b.submit("signin", map[string]string{"token": token})
	if nav := b.text("nav"); !strings.Contains(nav, "共享目录") {
		b.t.Fatalf("not signed in; the page says %q", b.text("main"))
	}
}

func (b *browser) signOut() {
	b.t.Helper()
	b.navigate("sign out", chromedp.Click(chromedp.CSS("header form button")))
}

// screenshot takes a picture of the page. Only GOVX_SCREENSHOTS=1 (after a change to
// the pages) writes it over docs/console's: every run's pictures differ in their times
// and IDs, which would leave the tree changed after each `make test`.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := run(b, "screenshot "+name, chromedp.FullScreenshot(100))
	if len(png) == 0 {
		b.t.Fatalf("screenshot %s: an empty picture", name)
	}
	if os.Getenv("GOVX_SCREENSHOTS") != "1" {
		return
	}
	if err := os.WriteFile(filepath.Join(screenshots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// cookie returns the console session cookie the browser holds, checking its flags.
func (b *browser) cookie() *http.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == "govx_console" {
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				b.t.Errorf("session cookie: HttpOnly %v, SameSite %v; want HttpOnly and Strict", c.HTTPOnly, c.SameSite)
			}
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	b.t.Fatal("no session cookie")
	return nil
}

// events reads the exchange's audit spool.
func events(t *testing.T, cfg *server.Config, f audit.Filter) []*audit.Event {
	st, err := audit.OpenSpoolStore(cfg.Audit.SpoolDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	it, err := st.Events(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []*audit.Event
	for it.Next() {
		e := *it.Event()
		out = append(out, &e)
	}
	return out
}

// pull pulls population.person for the disability subsidy over Flight, as the
// department's system would with the Go client.
func pull(t *testing.T, x *server.Exchange, token string) ([]map[string]string, error) {
	c, err := client.New(client.Config{Flight: x.FlightAddr(), HTTP: "http://" + x.HTTPAddr(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rows, _, _, err := servertest.Pull(t, c, exchange.PullCmd{Dataset: "population.person", Purpose: "disability-subsidy-review"})
	return rows, err
}

// TestIntegrationConsole drives the console in headless Chromium against a real
// exchange: each role signs in; a department applies, the data authority reviews, the
// provider's steward approves, the department's pull succeeds, and the auditor finds it
// in the audit search and in the data-subject report. A department user is refused the
// steward's and the auditor's pages (403, audited), a post without the CSRF token is
// refused and changes nothing, a dataset name that is markup shows as text, and an idle
// session ends. With GOVX_SCREENSHOTS=1 it writes the screenshots in docs/console.
func TestIntegrationConsole(t *testing.T) {
	var skew atomic.Int64
	x, cfg, tok, ps := consoleExchange(t, &skew)
	base := "http://" + x.ConsoleAddr()
	b := newBrowser(t, base)

	// The department applies.
	b.signIn(tok["department"])
	b.screenshot("home")
	b.open("/applications")
	b.submit("apply-submit", map[string]string{"dataset": "population.person", "columns": "id_number, name, household_region", "purpose": "disability-subsidy-review",
		"legal_basis": "《残疾人保障法》：残疾人两项补贴资格审核", "scenario": "残疾人两项补贴审核", "case_volume": "3000",
		"valid_from": "2026-01-01", "valid_until": "2027-12-31"})
	if st := b.text("#state"); st != "submitted" {
		t.Fatalf("after applying the state is %q: %s", st, b.text("main"))
	}
	appPath := strings.TrimPrefix(b.location(), base)
	appID := strings.TrimPrefix(appPath, "/applications/")
	b.open("/applications")
	if !strings.Contains(b.text("main"), appID) {
		t.Fatalf("the applications page does not list %s", appID)
	}
	b.screenshot("applications")

	// Pages of other roles: 403, each refusal audited.
	for _, p := range []string{"/queue/answer", "/audit", "/audit/subject?key=x", "/charts/rows.svg"} {
		if code := b.open(p); code != http.StatusForbidden {
			t.Errorf("a department user opening %s: %d, want 403", p, code)
		}
	}
	if !strings.Contains(b.text("#error"), "not_auditor") {
		t.Errorf("the refusal does not give the policy's reason: %q", b.text("#error"))
	}
	denied := events(t, cfg, audit.Filter{Department: "mz-3201", Action: "console.open", Decision: audit.Deny})
	if len(denied) != 4 {
		t.Errorf("%d audited refusals of pages, want 4: %+v", len(denied), denied)
	}

	// A post without the session's CSRF token is refused, audited and changes nothing.
	ck := b.cookie()
	for _, csrf := range []string{"", "forged"} {
		form := url.Values{"grounds": {"x"}}
		if csrf != "" {
			form.Set("csrf", csrf)
		}
		req, _ := http.NewRequest("POST", base+appPath+"/withdraw", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(ck)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a post with CSRF token %q: %d, want 403", csrf, resp.StatusCode)
		}
	}
	if n := len(events(t, cfg, audit.Filter{Department: "mz-3201", Action: "console.csrf", Decision: audit.Deny})); n != 2 {
		t.Errorf("%d audited CSRF refusals, want 2", n)
	}
	resp, err := http.PostForm(base+"/login", url.Values{"token": {tok["auditor"]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a sign-in post without the form's CSRF token: %d, want 403", resp.StatusCode)
	}
	b.open(appPath)
	if st := b.text("#state"); st != "submitted" {
		t.Fatalf("the refused posts changed the application: %q", st)
	}
	b.signOut()

	// The data authority reviews.
	b.signIn(tok["authority"])
	b.open("/queue/review")
	b.screenshot("review-queue")
	b.open(appPath)
	b.submit("review-submit", nil)
	if st := b.text("#state"); st != "with_provider" {
		t.Fatalf("after the review: %q: %s", st, b.text("main"))
	}
	b.signOut()

	// The provider's steward approves.
	b.signIn(tok["steward"])
	b.open("/queue/answer")
	if !strings.Contains(b.text("main"), appID) {
		t.Fatalf("the steward's queue lacks %s", appID)
	}
	b.screenshot("answer-queue")
	b.open(appPath)
	b.submit("approve-submit", map[string]string{"approve-approval": "宁数共〔2026〕21号"})
	if st := b.text("#state"); st != "approved" {
		t.Fatalf("after the approval: %q: %s", st, b.text("main"))
	}
	b.screenshot("application")
	b.signOut()

	// The department's pull succeeds once the agreement is served.
	testenv.WaitFor(t, 10*time.Second, "the department's pull allowed", func() bool {
		_, err := pull(t, x, tok["department"])
		return err == nil
	})
	rows, err := pull(t, x, tok["department"])
	if err != nil || len(rows) != 3 || !strings.HasPrefix(rows[0]["household_region"], "3201") {
		t.Fatalf("the pull returned %v, %v; want the three Nanjing persons", rows, err)
	}
	// A request naming a dataset that is markup, audited as sent.
	evil := `<script>alert("govx")</script>`
	req, _ := http.NewRequest("POST", "http://"+x.HTTPAddr()+"/v1/datasets/"+url.PathEscape(evil)+"/pull", strings.NewReader(`{"purpose":"p"}`))
	req.Header.Set("Authorization", "Bearer "+tok["department"])
	req.Header.Set("Content-Type", "application/json")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a pull of the dataset named as markup: %d, want 404", resp.StatusCode)
	}

	// The auditor finds the pull, and the person's record in it.
	b.signIn(tok["auditor"])
	b.open("/audit?department=mz-3201&dataset=population.person&decision=allow")
	if got := b.text("#events"); !strings.Contains(got, "read") || !strings.Contains(got, "disability-subsidy-review") {
		t.Fatalf("the audit search lacks the pull: %s", got)
	}
	imgs := run(b, "charts", chromedp.Evaluate[int](`[...document.querySelectorAll(".charts img")].filter(i => i.complete && i.naturalWidth > 0).length`))
	if imgs != 3 {
		t.Errorf("%d of the 3 charts drawn", imgs)
	}
	b.screenshot("audit-search")
	b.open("/audit?dataset=" + url.QueryEscape(evil))
	cell := run(b, "the markup dataset", chromedp.TextContent(chromedp.CSS("#events td.dataset")))
	scripts := run(b, "script elements", chromedp.Evaluate[int](`document.querySelectorAll("script").length`))
	if cell != evil || scripts != 0 {
		t.Errorf("a dataset name that is markup shows as %q with %d script elements; want the text itself and none", cell, scripts)
	}
	key := ps[0]["id_number"].(string)
	b.open("/audit/subject?dataset=population.person&key=" + key)
	if got := b.text("#accesses"); !strings.Contains(got, "mz-3201") || !strings.Contains(got, "bulk pull") || !strings.Contains(got, "✔") {
		t.Errorf("the subject report lacks the pull that read the record: %s", got)
	}
	b.open("/audit/subject?dataset=population.person&key=" + key)
	if got := b.text("#accesses"); strings.Contains(got, "zwfw") {
		t.Errorf("the auditor's own earlier report shows as an access to the record: %s", got)
	}
	b.screenshot("subject-report")
	b.open("/audit/report")
	b.screenshot("audit-report")
	b.open("/audit/verify")
	if got := b.text("#verify-status"); !strings.Contains(got, "✔") {
		t.Errorf("verification: %q", got)
	}
	b.screenshot("verify")
	b.open("/catalog")
	if !strings.Contains(b.text("#ds-population\\.person"), "mz-3201") {
		t.Errorf("the catalog does not name mz-3201 among the holders of agreements")
	}
	b.screenshot("catalog")
	b.open("/agreements")
	b.navigate("explain", chromedp.Click(chromedp.CSS(`tr[id="AGR-`+appID+`"] a[href^="/explain"]`)))
	if v := b.text("#verdict"); v != "ALLOW" {
		t.Errorf("explain the new agreement's decision: %q", v)
	}
	b.screenshot("explain")
	b.open("/lang/en?back=/catalog")
	if nav := b.text("nav"); !strings.Contains(nav, "Catalog") {
		t.Errorf("English: %q", nav)
	}
	b.screenshot("catalog-en")
	b.open("/lang/zh?back=/")

	// Sign-ins and the auditor's searches are in the log.
	if n := len(events(t, cfg, audit.Filter{Action: "console.signin", Decision: audit.Allow})); n != 4 {
		t.Errorf("%d audited sign-ins, want 4", n)
	}
	if n := len(events(t, cfg, audit.Filter{Department: "zwfw", Action: "console.audit.subject"})); n != 2 {
		t.Errorf("%d audited subject reports, want 2", n)
	}

	// An idle session ends: the next page asks to sign in again.
	skew.Store(int64(16 * time.Minute))
	b.open("/audit")
	if loc := b.location(); !strings.HasSuffix(loc, "/login") {
		t.Errorf("after 16 idle minutes /audit shows %s, want the sign-in page", loc)
	}
	b.screenshot("signin")
}
