// Package console is the exchange's web console (管理控制台) for department users,
// providers' data stewards, the data authority and auditors: the catalog, the sharing
// applications and corrections with their working-day clocks and the forms of every
// step, the agreements with "explain this decision", and the audit log (search, the
// data-subject report, findings, verification, charts).
//
// It is served on a listener of its own (console.listen), never on the API's, and adds
// nothing to the request path: its handlers only call what the CLI and the HTTP API call
// — exchange/apply for the process, the policy engine's Decide for explanations,
// exchange/audit and exchange/audit/review for the log — and write their audit events
// through exchange/service, the one audit writer. Who may open what is the process
// policy's decision (apply.Service.Role); the console has no role system of its own.
//
// Pages are server-rendered html/template with no JavaScript at all, so the
// Content-Security-Policy forbids every script; every asset (the style sheet, the
// charts drawn as SVG by gonum.org/v1/plot) is embedded or drawn on the server, so it
// works with no internet. Sessions live in memory: an HttpOnly, SameSite=Strict cookie
// (Secure under TLS), a CSRF token in every form, an idle timeout.
//
// Only exchange/server imports it.
package console
