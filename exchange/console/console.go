package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"govx/exchange"
	"govx/exchange/apply"
	"govx/exchange/audit"
	"govx/exchange/auth"
	"govx/exchange/service"
	"govx/policies"
	"govx/schemas"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Policy is the sharing policy in force: its data, and the decision the exchange would
// make (exchange/policy's Engine).
type Policy interface {
	Bundle() *policies.Bundle
	Decide(ctx context.Context, req exchange.Request) exchange.Decision
}

// AuditLog is where the console reads the audit log, as `govx audit` does.
type AuditLog struct {
	// SpoolDir is the exchange's spool, read-only.
	SpoolDir string
	// ClickHouse, when set, is the audit store searched (the spool then holds only what
	// is not shipped yet), and verified together with the spool.
	ClickHouse audit.Store
	// Checkpoints and PublicKey are the signed chain heads and the key that signed them.
	Checkpoints, PublicKey string
}

// Config is what a Console needs; every field but TLS, Log, Now and IdleTimeout is required.
type Config struct {
	Service *service.Service
	Tokens  *auth.Tokens
	Apply   *apply.Service
	Policy  Policy
	Catalog *schemas.Catalog
	Audit   AuditLog
	// Scope reports whether the record of dataset with key, as the exchange serves it
	// now, passes filters (a pull's recorded scope): the subject report's bulk pulls.
	Scope func(dataset, key string, filters []exchange.Filter) (bool, error)
	// Secret is the exchange's secret (secret_file), never logged: the console derives
	// from it the key of the subject report's audit notes and the sign-in form's CSRF key.
	Secret []byte
	// TLS says the console is served over TLS: the session cookie is then Secure.
	TLS bool
	// IdleTimeout ends a session unused this long (default 15 minutes).
	IdleTimeout time.Duration
	Now         func() time.Time
	Log         *slog.Logger
}

// DefaultIdleTimeout is how long an unused session lives.
const DefaultIdleTimeout = 15 * time.Minute

// Console serves the web console.
type Console struct {
	cfg   Config
	mux   *http.ServeMux
	pages map[string]*template.Template

	// subjectKey keys the subject report's audit note (SubjectTag); loginKey signs the
	// sign-in form's CSRF token. Both derived from Config.Secret.
	subjectKey, loginKey []byte

	mu       sync.Mutex
	sessions map[string]*session
}

// session is one signed-in person. Only its id travels, in the cookie.
type session struct {
	id     string
	subj   exchange.Subject
	method string // token | certificate
	csrf   string
	last   time.Time
	// The credential signed in with, checked again at every request as the API checks
	// every call: a revoked token or certificate ends the session at its next page. The
	// token stays in memory only, like the session.
	authz  string
	chains [][]*x509.Certificate
}

const (
	sessionCookie = "govx_console"
	loginCookie   = "govx_console_login" // the sign-in form's CSRF token, before a session
	langCookie    = "govx_console_lang"
)

// New returns the console's handler.
func New(cfg Config) (*Console, error) {
	if cfg.Service == nil || cfg.Tokens == nil || cfg.Apply == nil || cfg.Policy == nil || cfg.Catalog == nil || cfg.Scope == nil || len(cfg.Secret) < 16 {
		return nil, errors.New("console: Service, Tokens, Apply, Policy, Catalog, Scope and Secret (16 bytes at least) are required")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Console{cfg: cfg, mux: http.NewServeMux(), sessions: map[string]*session{},
		subjectKey: derive(cfg.Secret, SubjectKeyLabel), loginKey: derive(cfg.Secret, "govx console sign-in form")}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	static, _ := fs.Sub(assets, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	c.mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		// Files only: a directory is never listed.
		if strings.HasSuffix(r.URL.Path, "/") {
			c.notFound(w, r, http.StatusNotFound, "")
			return
		}
		files.ServeHTTP(w, r)
	})
	c.mux.HandleFunc("GET /login", c.loginPage)
	c.mux.HandleFunc("POST /login", c.login)
	c.mux.HandleFunc("GET /lang/{lang}", c.setLang)
	c.routes()
	return c, nil
}

// ServeHTTP sets the headers every answer carries, then routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script at all: the console is plain HTML forms.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if c.cfg.TLS {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	// An address no route has (404), or a method the route does not take (405), gets the
	// console's own page, not the mux's plain text.
	if h, pattern := c.mux.Handler(r); pattern == "" {
		rec := &statusOnly{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusNotFound || rec.status == http.StatusMethodNotAllowed {
			c.notFound(w, r, rec.status, rec.header.Get("Allow"))
			return
		}
	}
	c.mux.ServeHTTP(w, r)
}

// statusOnly keeps the status and headers the mux's own answer would have.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return len(b), nil
}
func (s *statusOnly) WriteHeader(code int) { s.status = code }

// notFound is the console's page for an address it does not have (404), or a method
// the address does not take (405, with Allow).
func (c *Console) notFound(w http.ResponseWriter, r *http.Request, status int, allow string) {
	p := c.newPage(r, nil, "error")
	p.Error, p.Hint = p.T("not_found"), p.T("hint_not_found")
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", allow)
		p.Error, p.Hint = p.T("method_not_allowed"), p.T("hint_reload")
	}
	c.render(w, status, "error", p)
}

// SubjectKeyLabel names the key of the subject report's audit notes:
// HMAC-SHA256(exchange secret, SubjectKeyLabel). docs/console.md shows how an auditor
// holding the secret matches a key against the notes.
const SubjectKeyLabel = "govx console subject report"

// derive is a key of its own for one use of the exchange's secret.
func derive(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// SubjectTag is what the audit log keeps of a key searched in the subject report: its
// HMAC-SHA256 under the key derived from the exchange's secret. A reader of the log
// cannot recover the key by trying every citizen ID (as from a plain hash); an auditor
// with the secret can still tell which searches named a given key.
func SubjectTag(subjectKey []byte, key string) string {
	m := hmac.New(sha256.New, subjectKey)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil))
}

// loginTTL is how long a sign-in form's CSRF token is accepted.
const loginTTL = 10 * time.Minute

// loginToken is a sign-in form's CSRF token: a nonce and the time, signed with the
// console's key, so a token planted in a cookie by someone without the key is refused.
func (c *Console) loginToken() string {
	body := newSecret()[:32] + "." + strconv.FormatInt(c.cfg.Now().Unix(), 10)
	return body + "." + c.loginMAC(body)
}

func (c *Console) loginMAC(body string) string {
	m := hmac.New(sha256.New, c.loginKey)
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// loginTokenValid checks a sign-in form's token: the console's signature and its age.
func (c *Console) loginTokenValid(tok string) bool {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 || !hmac.Equal([]byte(tok[i+1:]), []byte(c.loginMAC(tok[:i]))) {
		return false
	}
	_, ts, _ := strings.Cut(tok[:i], ".")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	age := c.cfg.Now().Sub(time.Unix(sec, 0))
	return age >= -time.Minute && age <= loginTTL
}

func newSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Console) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: c.cfg.TLS, SameSite: http.SameSiteStrictMode}
}

// current returns the request's live session, ending it when idle too long.
func (c *Console) current(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if now.Sub(s.last) > c.cfg.IdleTimeout {
		delete(c.sessions, s.id)
		return nil
	}
	s.last = now
	return s
}

// sweep drops idle sessions, so abandoned ones do not pile up.
func (c *Console) sweep(now time.Time) {
	for id, s := range c.sessions {
		if now.Sub(s.last) > c.cfg.IdleTimeout {
			delete(c.sessions, id)
		}
	}
}

func sameSecret(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (c *Console) caller(r *http.Request, s *session) service.Caller {
	sc := service.Caller{ClientAddr: r.RemoteAddr}
	if s != nil {
		sc.Subject = s.subj
	}
	return sc
}

// audit records a console action through the one audit writer, with notes as its
// reasons; refused actions are recorded with their refusal. It returns refused, or
// audit_unavailable.
func (c *Console) audit(r *http.Request, s *session, action, dataset, purpose, caseRef string, notes []string, refused error) error {
	return c.cfg.Service.ConsoleAction(r.Context(), c.caller(r, s), "console."+action, dataset, purpose, caseRef, notes, refused)
}

// handler is a page for signed-in people; need, when set, is the role it requires.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

// page registers a route for signed-in people holding role need ("" for any role). A
// missing or idle session goes to the sign-in page; a post without the session's CSRF
// token is refused and audited; a role not held is 403 and audited.
func (c *Console) page(pattern, need string, h handler) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s := c.current(r)
		if s != nil && !c.stillValid(w, r, s) {
			return
		}
		if s == nil {
			if r.Method == http.MethodPost {
				c.audit(r, nil, "post", "", "", "", nil, exchange.E(exchange.Unauthenticated, "no_session", "no session, or an expired one"))
			}
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if !c.parseForm(w, r, s, maxForm) {
				return
			}
			if !sameSecret(r.PostFormValue("csrf"), s.csrf) {
				err := c.audit(r, s, "csrf", "", "", "", nil, exchange.E(exchange.PermissionDenied, "csrf", "the form's CSRF token is missing or wrong"))
				c.fail(w, r, s, http.StatusForbidden, err)
				return
			}
		}
		if need != "" {
			if err := c.cfg.Apply.Role(r.Context(), s.subj, need); err != nil {
				err = c.audit(r, s, "open", "", "", "", nil, withPath(err, r.URL.Path))
				c.fail(w, r, s, http.StatusForbidden, err)
				return
			}
		}
		h(w, r, s)
	})
}

// stillValid checks the session's credential again, exactly as the API checks each call
// (the token store, the certificate revocation list): a credential revoked since the
// sign-in ends the session — audited, and the person is sent to the sign-in page.
func (c *Console) stillValid(w http.ResponseWriter, r *http.Request, s *session) bool {
	subj, err := c.cfg.Tokens.Subject(s.authz, s.chains)
	if err == nil && subj == s.subj {
		return true
	}
	c.mu.Lock()
	delete(c.sessions, s.id)
	c.mu.Unlock()
	msg := "the " + s.method + " this session was signed in with is no longer valid (revoked, or the credentials cannot be read)"
	if err != nil {
		msg += ": " + c.errorText(c.newPage(r, nil, "signin"), err)
	}
	c.audit(r, s, "session", "", s.method, "", nil, &exchange.Error{Kind: exchange.Unauthenticated, Code: "session_ended",
		Message: "session ended", Reasons: []exchange.Reason{{Code: "credential_invalid", Message: msg}}})
	http.SetCookie(w, c.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return false
}

// maxForm is the largest form body a page takes: free text is limited to
// apply.MaxText a field, so only a form no page of the console sends is larger.
const maxForm = 1 << 20

// parseForm reads a posted form of at most limit bytes. A larger one is refused as too
// large (413, audited), not taken for a missing CSRF token.
func (c *Console) parseForm(w http.ResponseWriter, r *http.Request, s *session, limit int64) bool {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	err := r.ParseForm()
	if err == nil {
		return true
	}
	refused := exchange.E(exchange.Invalid, "bad_form", "the form could not be read")
	status := http.StatusBadRequest
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		refused = exchange.E(exchange.Invalid, "form_too_large", fmt.Sprintf("the form is larger than %d KiB", limit>>10))
		status = http.StatusRequestEntityTooLarge
	}
	c.fail(w, r, s, status, c.audit(r, s, "post", "", "", "", nil, refused))
	return false
}

// withPath names the refused page in the first reason, so that the audit log says what
// was tried.
func withPath(err error, path string) error {
	xe, ok := errors.AsType[*exchange.Error](err)
	if !ok {
		return err
	}
	cp := *xe
	cp.Reasons = append(slices.Clone(xe.Reasons), exchange.Reason{Code: "page:" + path})
	return &cp
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	tok := c.loginToken()
	http.SetCookie(w, c.cookie(loginCookie, tok, int(loginTTL.Seconds())))
	p := c.newPage(r, nil, "signin")
	p.CSRF = tok
	p.CertOffered = r.TLS != nil && len(r.TLS.VerifiedChains) > 0
	c.render(w, http.StatusOK, "login", p)
}

// login signs in with a department system's token or the client certificate the TLS
// layer verified, exactly as the API authenticates; the roles come from the policy. A
// subject holding no role is refused. Each sign-in, and each failed one, is audited.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if !c.parseForm(w, r, nil, 64<<10) {
		return
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameSecret(r.PostFormValue("csrf"), ck.Value) || !c.loginTokenValid(ck.Value) {
		err := c.audit(r, nil, "signin", "", "", "", nil, exchange.E(exchange.PermissionDenied, "csrf", "the sign-in form's CSRF token is missing or wrong"))
		c.fail(w, r, nil, http.StatusForbidden, err)
		return
	}
	var verified [][]*x509.Certificate
	authz, method := "", "token"
	if r.PostFormValue("method") == "certificate" {
		if r.TLS != nil {
			verified = r.TLS.VerifiedChains
		}
		method = "certificate"
	} else if tok := strings.TrimSpace(r.PostFormValue("token")); tok != "" {
		authz = "Bearer " + tok
	}
	if method == "certificate" && len(verified) == 0 {
		authz = "" // no certificate: refused below, never falls back to anything
	}
	subj, err := c.cfg.Tokens.Subject(authz, verified)
	sc := service.Caller{Subject: subj, ClientAddr: r.RemoteAddr}
	if err != nil {
		err = c.cfg.Service.Unauthenticated(r.Context(), sc, "console.signin", "", err)
		p := c.newPage(r, nil, "signin")
		p.Error = c.errorText(p, err)
		tok := c.loginToken()
		http.SetCookie(w, c.cookie(loginCookie, tok, int(loginTTL.Seconds())))
		p.CSRF = tok
		c.render(w, http.StatusUnauthorized, "login", p)
		return
	}
	if len(c.cfg.Apply.Roles(r.Context(), subj)) == 0 {
		refused := c.cfg.Apply.Role(r.Context(), subj, apply.RoleDepartment)
		err := c.cfg.Service.ConsoleAction(r.Context(), sc, "console.signin", "", "", "", nil, refused)
		c.fail(w, r, nil, http.StatusForbidden, err)
		return
	}
	s := &session{id: newSecret(), subj: subj, method: method, csrf: newSecret(), last: c.cfg.Now(), authz: authz, chains: verified}
	if err := c.cfg.Service.ConsoleAction(r.Context(), sc, "console.signin", "", method, "", nil, nil); err != nil {
		c.fail(w, r, nil, http.StatusServiceUnavailable, err)
		return
	}
	c.mu.Lock()
	c.sweep(s.last)
	c.sessions[s.id] = s
	c.mu.Unlock()
	http.SetCookie(w, c.cookie(loginCookie, "", -1))
	http.SetCookie(w, c.cookie(sessionCookie, s.id, 0))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.mu.Lock()
	delete(c.sessions, s.id)
	c.mu.Unlock()
	c.audit(r, s, "signout", "", "", "", nil, nil)
	http.SetCookie(w, c.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// setLang switches the language; it changes nothing but how pages read.
func (c *Console) setLang(w http.ResponseWriter, r *http.Request) {
	lang := r.PathValue("lang")
	if lang != "en" {
		lang = "zh"
	}
	http.SetCookie(w, c.cookie(langCookie, lang, 365*24*3600))
	back := r.URL.Query().Get("back")
	// Only a path on this console: never an open redirect.
	if !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") || strings.ContainsAny(back, "\\\r\n") {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}
