package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"govx/exchange"
	"govx/exchange/apply"
	"govx/exchange/httpapi"
	"govx/schemas"
)

// page is what every template renders: the chrome (who, roles, language, CSRF token)
// and the page's own data. Every value reaches HTML through html/template, which
// escapes it for where it lands: text from requests (dataset names, case references,
// reasons) is shown as text, never markup.
type page struct {
	Lang        string
	Name        string // the page, for the navigation's current item and the title
	Who         *exchange.Subject
	Method      string
	Roles       []string
	CSRF        string
	CertOffered bool
	Path        string
	Error       string
	Hint        string // what to do about Error
	Back        string // where the error page's link goes
	Notice      string
	Now         time.Time
	Data        any
}

// withPage is what a shared sub-template receives.
type withPage struct {
	P *page
	V any
}

// T translates a message key to the page's language; an unknown key shows as itself.
func (p *page) T(key string) string {
	m, ok := messages[key]
	if !ok {
		return key
	}
	if p.Lang == "en" {
		return m[1]
	}
	return m[0]
}

// Has reports whether the signed-in person holds role.
func (p *page) Has(role string) bool { return slices.Contains(p.Roles, role) }

// Title is the schema title in the page's language.
func (p *page) Title(t schemas.Title) string {
	if p.Lang == "en" && t.En != "" {
		return t.En
	}
	return t.Zh
}

// When shows an instant in China Standard Time, the exchange's zone.
func (p *page) When(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(schemas.ChinaTime).Format("2006-01-02 15:04")
}

// DueDay is the last working day of a clock, as `govx applications` shows it: Due is
// the instant that day ends.
func (p *page) DueDay(due time.Time) string {
	if due.IsZero() {
		return ""
	}
	return due.In(schemas.ChinaTime).Add(-time.Nanosecond).Format(time.DateOnly)
}

func (c *Console) newPage(r *http.Request, s *session, name string) *page {
	p := &page{Lang: "zh", Name: name, Path: r.URL.Path, Now: c.cfg.Now()}
	if ck, err := r.Cookie(langCookie); err == nil && ck.Value == "en" {
		p.Lang = "en"
	}
	if r.URL.RawQuery != "" {
		p.Path += "?" + r.URL.RawQuery
	}
	if s != nil {
		subj := s.subj
		p.Who, p.Method, p.CSRF = &subj, s.method, s.csrf
		p.Roles = c.cfg.Apply.Roles(r.Context(), s.subj)
	}
	return p
}

func (c *Console) parseTemplates() error {
	funcs := template.FuncMap{
		"join":  strings.Join,
		"lines": func(ss []string) string { return strings.Join(ss, "\n") },
		// pass hands a sub-template the page and one value.
		"pass": func(p *page, v any) withPage { return withPage{P: p, V: v} },
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html")
	if err != nil {
		return err
	}
	files, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return err
	}
	c.pages = map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(assets, f)
		if err != nil {
			return err
		}
		c.pages[name] = t
	}
	return nil
}

// render writes a page; a template error is logged and answered 500, never half a page.
func (c *Console) render(w http.ResponseWriter, status int, name string, p *page) {
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.cfg.Log.Error("console page failed to render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	buf.WriteTo(w)
}

// fail answers a refused or failed action with the error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, status int, err error) {
	p := c.newPage(r, s, "error")
	if xe, ok := errors.AsType[*exchange.Error](err); ok && xe.Code == "audit_unavailable" {
		status = http.StatusServiceUnavailable
	}
	p.Error = c.errorText(p, err)
	p.Back = backOf(r)
	if xe, ok := errors.AsType[*exchange.Error](err); ok && hints[xe.Code] != "" {
		p.Hint = p.T(hints[xe.Code])
	}
	c.render(w, status, "error", p)
}

// hints say what to do about an error, by its code (message keys).
var hints = map[string]string{
	"csrf":              "hint_reload",
	"form_too_large":    "hint_too_large",
	"text_too_long":     "hint_too_large",
	"audit_unavailable": "hint_retry",
	"unauthenticated":   "hint_signin",
}

// backOf is the page a failed request came from: a step's form is on its application's
// page, an answer's on the answer queue; a page that failed to open links home.
func backOf(r *http.Request) string {
	if r.Method != http.MethodPost {
		return "/"
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case parts[0] == "login":
		return "/login"
	case parts[0] == "applications" && len(parts) >= 2:
		return "/applications/" + url.PathEscape(parts[1])
	case parts[0] == "applications":
		return "/applications"
	case parts[0] == "corrections" && len(parts) == 3:
		return "/queue/answer"
	case parts[0] == "corrections":
		return "/corrections"
	}
	return "/"
}

// errorText is an error as people read it: its code, message and the policy's reasons.
// Unclassified errors are not shown (they may hold anything); the log has them.
func (c *Console) errorText(p *page, err error) string {
	xe, ok := errors.AsType[*exchange.Error](err)
	if !ok {
		c.cfg.Log.Error("console action failed", "err", err)
		return p.T("internal_error")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", xe.Code, xe.Message)
	for _, r := range xe.Reasons {
		if strings.HasPrefix(r.Code, "page:") {
			continue
		}
		fmt.Fprintf(&b, " — %s", r.Code)
		if r.Message != "" {
			fmt.Fprintf(&b, ": %s", r.Message)
		}
	}
	return b.String()
}

// statusOf is the HTTP status of an error from exchange/apply or the audit writer, by
// its kind as the HTTP API maps it.
func statusOf(err error) int {
	xe, ok := errors.AsType[*exchange.Error](err)
	if !ok {
		return http.StatusInternalServerError
	}
	return httpapi.StatusOf(xe.Kind)
}

// roleNames are the roles' message keys.
var roleNames = map[string]string{
	apply.RoleDepartment: "role_department",
	apply.RoleSteward:    "role_steward",
	apply.RoleAuthority:  "role_authority",
	apply.RoleAuditor:    "role_auditor",
}

// RoleName is a role as people read it.
func (p *page) RoleName(role string) string { return p.T(roleNames[role]) }
