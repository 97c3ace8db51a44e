package console_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"govx/exchange/audit"
	"govx/exchange/auth"
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
