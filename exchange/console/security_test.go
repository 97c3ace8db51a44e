package console_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"govx/exchange/audit"
	"govx/exchange/auth"
	"govx/exchange/console"
	"govx/exchange/server/servertest"
)

// httpClient is a browser without a browser: cookies kept, redirects not followed.
func httpClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signedIn signs in with token and returns the client holding the session.
func signedIn(t *testing.T, base, token string) *http.Client {
	t.Helper()
	c := httpClient()
	if resp := formSignIn(t, c, base, url.Values{"token": {token}}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in: %d → %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	return c
}

// post posts form to path with the CSRF token of the page at from, and returns the
// status and body.
func post(t *testing.T, c *http.Client, base, from, path string, form url.Values) (int, string) {
	t.Helper()
	_, body := page(t, c, base+from)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field on %s:\n%s", from, body)
	}
	form.Set("csrf", m[1])
	resp, err := c.PostForm(base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// A session signed in with a token ends at its next page once the token is revoked
// (`govx token revoke`): the person is sent to the sign-in page and the end is audited.
func TestIntegrationConsoleRevokedTokenEndsSession(t *testing.T) {
	var skew atomic.Int64
	x, cfg, toks, _ := consoleExchange(t, &skew)
	base := "http://" + x.ConsoleAddr()
	c := signedIn(t, base, toks["department"])
	if code, body := page(t, c, base+"/catalog"); code != http.StatusOK || !strings.Contains(body, "mz-3201") {
		t.Fatalf("the catalog before the revocation: %d", code)
	}
	ts := auth.OpenTokens(cfg.TokensFile)
	recs, err := ts.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Subject.Department == "mz-3201" {
			if _, err := ts.Revoke(r.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	resp, err := c.Get(base + "/catalog")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("the catalog after the token was revoked: %d → %q, want the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := len(events(t, cfg, audit.Filter{Department: "mz-3201", Action: "console.session", Decision: audit.Deny})); n != 1 {
		t.Errorf("%d audited ends of the revoked token's session, want 1", n)
	}
	// The session is gone, not only refused once.
	if code, _ := page(t, c, base+"/catalog"); code != http.StatusSeeOther {
		t.Errorf("the ended session's next page: %d, want 303 to the sign-in page", code)
	}
}

// applyForm is a valid application from mz-3201's social-assistance system.
func applyForm() url.Values {
	return url.Values{"system": {"social-assistance"}, "dataset": {"population.person"}, "columns": {"id_number, name"},
		"purpose": {"disability-subsidy-review"}, "legal_basis": {"《残疾人保障法》：残疾人两项补贴资格审核"}, "scenario": {"残疾人两项补贴审核"},
		"case_volume": {"3000"}, "access": {"read"}, "valid_from": {"2026-01-01"}, "valid_until": {"2027-12-31"}}
}

// submitted applies with c and returns the new application's id.
func submitted(t *testing.T, c *http.Client, base string, form url.Values) string {
	t.Helper()
	_, body := page(t, c, base+"/applications")
	form.Set("csrf", csrfField.FindStringSubmatch(body)[1])
	resp, err := c.PostForm(base+"/applications", form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id, ok := strings.CutPrefix(resp.Header.Get("Location"), "/applications/")
	if resp.StatusCode != http.StatusSeeOther || !ok {
		t.Fatalf("applying: %d\n%s", resp.StatusCode, b)
	}
	return id
}

// Applications are shown only to their parties: another system of the provider's
// department (not its steward) neither finds the application in its list nor opens it,
// and the refused view is audited with the case; a refused step tells a non-party only
// that it may not, naming no party.
func TestIntegrationConsoleNonParties(t *testing.T) {
	var skew atomic.Int64
	x, cfg, toks, _ := consoleExchange(t, &skew)
	base := "http://" + x.ConsoleAddr()
	id := submitted(t, signedIn(t, base, toks["department"]), base, applyForm())

	other := signedIn(t, base, servertest.Token(t, cfg.TokensFile, "gab/other"))
	if code, body := page(t, other, base+"/applications"); code != http.StatusOK || strings.Contains(body, id) || strings.Contains(body, "mz-3201") {
		t.Errorf("a non-steward system of the provider lists the application (%d):\n%s", code, body)
	}
	if code, _ := page(t, other, base+"/applications/"+id); code != http.StatusForbidden {
		t.Errorf("a non-party opening the application: %d, want 403", code)
	}
	evs := events(t, cfg, audit.Filter{Department: "gab", Action: "console.open", Decision: audit.Deny, CaseRef: id})
	if len(evs) != 1 || !slices.Contains(evs[0].Reasons, "not_party") {
		t.Fatalf("the refused view is not audited with its case and reason: %+v", evs)
	}

	stranger := signedIn(t, base, servertest.Token(t, cfg.TokensFile, "mz-3301/x"))
	code, body := post(t, stranger, base, "/applications", "/applications/"+id+"/withdraw", url.Values{})
	if code != http.StatusForbidden || !strings.Contains(body, "not_applicant") || strings.Contains(body, "mz-3201") {
		t.Errorf("a stranger withdrawing: %d, and the refusal names the applicant:\n%s", code, body)
	}
}

// The subject report's audit event keeps the key searched as an HMAC under a key derived
// from the exchange's secret: not the key, not its plain SHA-256 (which trying every
// citizen ID reverses), but what an auditor holding the secret can recompute.
func TestIntegrationConsoleSubjectNoteKeyed(t *testing.T) {
	var skew atomic.Int64
	x, cfg, toks, ps := consoleExchange(t, &skew)
	base := "http://" + x.ConsoleAddr()
	key := ps[0]["id_number"].(string)
	c := signedIn(t, base, toks["auditor"])
	if code, _ := page(t, c, base+"/audit/subject?dataset=population.person&key="+key); code != http.StatusOK {
		t.Fatalf("the subject report: %d", code)
	}
	evs := events(t, cfg, audit.Filter{Action: "console.audit.subject"})
	if len(evs) != 1 || len(evs[0].Reasons) != 1 {
		t.Fatalf("subject report events: %+v", evs)
	}
	secret, err := os.ReadFile(cfg.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	k := hmac.New(sha256.New, secret)
	k.Write([]byte(console.SubjectKeyLabel))
	m := hmac.New(sha256.New, k.Sum(nil))
	m.Write([]byte(key))
	plain := sha256.Sum256([]byte(key))
	note := evs[0].Reasons[0]
	if note != "subject-hmac-sha256:"+hex.EncodeToString(m.Sum(nil)) || strings.Contains(note, hex.EncodeToString(plain[:])) || strings.Contains(note, key) {
		t.Errorf("the subject report's note %q is not the key's HMAC under the exchange's derived key", note)
	}
}

// The sign-in form's CSRF token is signed by the console: a cookie planted by someone
// else (a sibling subdomain, a man in the middle of plain HTTP) with the same value in
// the form is refused, and nobody is signed in.
func TestIntegrationConsoleSignInCSRFSigned(t *testing.T) {
	var skew atomic.Int64
	x, cfg, toks, _ := consoleExchange(t, &skew)
	base := "http://" + x.ConsoleAddr()
	req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(url.Values{"csrf": {"b"}, "token": {toks["department"]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "govx_console_login", Value: "b"})
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in with a planted CSRF cookie: %d, want 403", resp.StatusCode)
	}
	for _, h := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(h, "govx_console=") {
			t.Errorf("a planted CSRF cookie signed in: %s", h)
		}
	}
	if n := len(events(t, cfg, audit.Filter{Action: "console.signin", Decision: audit.Deny})); n != 1 {
		t.Errorf("%d audited refused sign-ins, want 1", n)
	}
	// The console's own token still signs in.
	signedIn(t, base, toks["department"])
}

// Forms and error pages: the apply form's system must be one of the applicant's own
// systems by name; free text over 4 KiB is refused with a clear error; a CSRF failure
// says to reload and links back to the form's page; a form over the size limit says it
// is too large; unknown addresses and methods get the console's page with its headers;
// /static/ lists nothing; a subject report without a dataset names no CLI flag; a
// refusal has no empty names; charts are titled in the page's language.
func TestIntegrationConsoleFormsAndErrors(t *testing.T) {
	var skew atomic.Int64
	x, _, toks, ps := consoleExchange(t, &skew)
	base := "http://" + x.ConsoleAddr()
	c := signedIn(t, base, toks["department"])
	for _, bad := range []struct{ system, code string }{{"gab/steward", "bad_system"}, {"<b>x</b>", "bad_system"}} {
		f := applyForm()
		f.Set("system", bad.system)
		code, body := post(t, c, base, "/applications", "/applications", f)
		if code != http.StatusBadRequest || !strings.Contains(body, bad.code) || strings.Contains(body, "<b>x</b>") {
			t.Errorf("applying for system %q: %d\n%s", bad.system, code, body)
		}
	}
	f := applyForm()
	f.Set("legal_basis", strings.Repeat("法", 2000))
	if code, body := post(t, c, base, "/applications", "/applications", f); code != http.StatusBadRequest || !strings.Contains(body, "text_too_long") || !strings.Contains(body, `id="hint"`) {
		t.Errorf("a legal basis of 6000 bytes: %d\n%s", code, body)
	}
	id := submitted(t, c, base, applyForm())

	// A wrong CSRF token: reload and submit again, with the way back to the form.
	resp, err := c.PostForm(base+"/applications/"+id+"/withdraw", url.Values{"csrf": {"stale"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "请刷新页面后重新提交") || !strings.Contains(string(body), `href="/applications/`+id+`" id="back"`) {
		t.Errorf("a stale CSRF token: %d\n%s", resp.StatusCode, body)
	}
	// A form over the limit is too large, not a CSRF failure.
	resp, err = c.PostForm(base+"/applications/"+id+"/withdraw", url.Values{"reasons": {strings.Repeat("x", 2<<20)}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "form_too_large") || strings.Contains(string(body), "csrf:") {
		t.Errorf("a 2 MiB form: %d\n%s", resp.StatusCode, body)
	}

	for _, tc := range []struct {
		method, path string
		status       int
	}{{"GET", "/no-such-page", 404}, {"DELETE", "/catalog", 405}, {"GET", "/static/", 404}} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), `id="back"`) || strings.Contains(string(body), "console.css</a>") ||
			!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s %s: %d %v\n%s", tc.method, tc.path, resp.StatusCode, resp.Header, body)
		}
	}
	if code, _ := page(t, c, base+"/static/console.css"); code != http.StatusOK {
		t.Errorf("the style sheet: %d", code)
	}

	// Answering a correction that does not exist names nobody, and no empty name.
	code, body2 := post(t, c, base, "/corrections", "/corrections/COR-2026-999999/answer", url.Values{"note": {"x"}})
	if code < 400 || strings.Contains(body2, "provides ,") || strings.Contains(body2, "()") {
		t.Errorf("answering an unknown correction: %d\n%s", code, body2)
	}

	a := signedIn(t, base, toks["auditor"])
	if code, body := page(t, a, base+"/audit/subject?key="+ps[0]["id_number"].(string)); code != http.StatusOK || strings.Contains(body, "--record") {
		t.Errorf("a subject report without a dataset: %d, points at a CLI flag:\n%s", code, body)
	}
	// The charts' titles are in the page's language.
	for _, lang := range []struct{ code, title string }{{"zh", "每日请求 / 拒绝"}, {"en", "requests / denials per day"}} {
		page(t, a, base+"/lang/"+lang.code)
		if code, svg := page(t, a, base+"/charts/requests.svg"); code != http.StatusOK || !strings.Contains(svg, lang.title) {
			t.Errorf("the requests chart in %s: %d, no title %q", lang.code, code, lang.title)
		}
	}
}
