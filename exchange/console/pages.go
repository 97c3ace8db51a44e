package console

import (
	"errors"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"govx/exchange"
	"govx/exchange/apply"
	"govx/policies"
	"govx/schemas"
)

func (c *Console) routes() {
	c.page("GET /{$}", "", c.home)
	c.page("POST /logout", "", c.logout)
	c.page("GET /catalog", "", c.catalog)
	c.page("GET /applications", apply.RoleDepartment, c.applications)
	c.page("GET /applications/{id}", "", c.application)
	c.page("POST /applications", apply.RoleDepartment, c.submit)
	c.page("POST /applications/{id}/{step}", "", c.step)
	c.page("GET /queue/review", apply.RoleAuthority, c.reviewQueue)
	c.page("GET /queue/answer", apply.RoleSteward, c.answerQueue)
	c.page("GET /corrections", apply.RoleDepartment, c.corrections)
	c.page("POST /corrections", apply.RoleDepartment, c.flag)
	c.page("POST /corrections/{id}/answer", "", c.answer)
	c.page("GET /agreements", "", c.agreements)
	c.page("GET /explain", "", c.explain)
	c.page("GET /audit", apply.RoleAuditor, c.auditSearch)
	c.page("GET /audit/subject", apply.RoleAuditor, c.auditSubject)
	c.page("GET /audit/report", apply.RoleAuditor, c.auditReport)
	c.page("GET /audit/verify", apply.RoleAuditor, c.auditVerify)
	c.page("GET /charts/{chart}", apply.RoleAuditor, c.chart)
}

func (c *Console) applyCaller(r *http.Request, s *session) apply.Caller {
	return apply.Caller{Subject: s.subj, ClientAddr: r.RemoteAddr}
}

func (c *Console) home(w http.ResponseWriter, r *http.Request, s *session) {
	p := c.newPage(r, s, "home")
	var open []*apply.Application
	if p.Has(apply.RoleDepartment) {
		as, err := c.cfg.Apply.List(r.Context(), c.applyCaller(r, s), apply.Filter{})
		if err == nil {
			for _, a := range as {
				if a.Clock != "" {
					open = append(open, a)
				}
			}
		}
	}
	p.Data = map[string]any{"Open": open}
	c.render(w, http.StatusOK, "home", p)
}

// datasetView is one catalog row: the schema, the share type and the departments
// holding agreements for it.
type datasetView struct {
	D          *schemas.Dataset
	Share      string
	LegalBasis string
	Holders    []string
}

func (c *Console) catalogRows() []datasetView {
	b := c.cfg.Policy.Bundle()
	var out []datasetView
	for _, d := range c.cfg.Catalog.Datasets() {
		v := datasetView{D: d, Share: "unlisted"}
		for _, e := range b.Datasets {
			if e.Dataset == d.ID {
				v.Share, v.LegalBasis = e.Share, e.LegalBasis
			}
		}
		seen := map[string]bool{}
		for _, a := range b.Agreements {
			if a.Dataset == d.ID && !seen[a.Consumer] {
				seen[a.Consumer] = true
				v.Holders = append(v.Holders, a.Consumer)
			}
		}
		sort.Strings(v.Holders)
		out = append(out, v)
	}
	return out
}

func (c *Console) catalog(w http.ResponseWriter, r *http.Request, s *session) {
	p := c.newPage(r, s, "catalog")
	p.Data = c.catalogRows()
	c.render(w, http.StatusOK, "catalog", p)
}

// applicationsData is the applications page: the caller's list and the apply form.
type applicationsData struct {
	Title    string
	Apps     []*apply.Application
	Fixes    []*apply.Correction
	Datasets []datasetView
	Form     bool
}

func (c *Console) list(r *http.Request, s *session, keep func(*apply.Application) bool) ([]*apply.Application, error) {
	as, err := c.cfg.Apply.List(r.Context(), c.applyCaller(r, s), apply.Filter{State: apply.State(r.URL.Query().Get("state"))})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(as, func(a *apply.Application) bool { return !keep(a) }), nil
}

func (c *Console) applications(w http.ResponseWriter, r *http.Request, s *session) {
	as, err := c.list(r, s, func(*apply.Application) bool { return true })
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	p := c.newPage(r, s, "applications")
	p.Data = applicationsData{Title: "nav_applications", Apps: as, Datasets: c.catalogRows(), Form: true}
	c.render(w, http.StatusOK, "applications", p)
}

// reviewQueue is the data authority's: applications awaiting compliance review and
// disputes awaiting coordination.
func (c *Console) reviewQueue(w http.ResponseWriter, r *http.Request, s *session) {
	as, err := c.list(r, s, func(a *apply.Application) bool { return a.State == apply.Submitted || a.State == apply.Disputed })
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	p := c.newPage(r, s, "review")
	p.Data = applicationsData{Title: "nav_review", Apps: as}
	c.render(w, http.StatusOK, "applications", p)
}

// answerQueue is a steward's: applications for its department's datasets awaiting the
// provider's answer or in dispute, and the records flagged in them.
func (c *Console) answerQueue(w http.ResponseWriter, r *http.Request, s *session) {
	dept := s.subj.Department
	as, err := c.list(r, s, func(a *apply.Application) bool {
		return a.Provider == dept && (a.State == apply.WithProvider || a.State == apply.Disputed)
	})
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	fixes, err := c.cfg.Apply.ListFixes(r.Context(), c.applyCaller(r, s), apply.Filter{State: apply.Flagged})
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	fixes = slices.DeleteFunc(fixes, func(x *apply.Correction) bool { return x.Provider != dept })
	p := c.newPage(r, s, "answer")
	p.Data = applicationsData{Title: "nav_answer", Apps: as, Fixes: fixes}
	c.render(w, http.StatusOK, "applications", p)
}

// applicationData is one application with the steps the signed-in person may take.
type applicationData struct {
	A     *apply.Application
	Steps []string
}

// stepsFor lists the forms to show: the steps legal in the application's state that
// the policy lets this person take (asked as the step would be; the step itself is
// decided again when posted).
func (c *Console) stepsFor(p *page, a *apply.Application, s *session) []string {
	dept := s.subj.Department
	var out []string
	add := func(ok bool, steps ...string) {
		if ok {
			out = append(out, steps...)
		}
	}
	switch a.State {
	case apply.Submitted:
		add(p.Has(apply.RoleAuthority) && a.Applicant != dept, "review")
		add(a.Applicant == dept, "withdraw")
	case apply.WithProvider:
		add(p.Has(apply.RoleSteward) && a.Provider == dept && a.Applicant != dept, "approve", "refuse")
		add(a.Applicant == dept, "withdraw")
	case apply.Refused:
		add(a.Applicant == dept, "dispute")
	case apply.Disputed:
		add(p.Has(apply.RoleSteward) && a.Provider == dept && a.Applicant != dept, "negotiate")
		add(p.Has(apply.RoleAuthority) && a.Applicant != dept, "coordinate")
	}
	return out
}

func (c *Console) application(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	a, err := c.cfg.Apply.Show(r.Context(), c.applyCaller(r, s), id)
	if err != nil {
		// A refused view is an event like any refusal: who tried to open which case.
		if xe, ok := errors.AsType[*exchange.Error](err); ok && xe.Code != "audit_unavailable" {
			err = c.audit(r, s, "open", "", "", id, nil, withPath(err, r.URL.Path))
		}
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	p := c.newPage(r, s, "application")
	p.Data = applicationData{A: a, Steps: c.stepsFor(p, a, s)}
	c.render(w, http.StatusOK, "application", p)
}

// fields splits a form field of comma-, space- or line-separated values.
func fields(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '，' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// lines splits a text area into its non-empty lines.
func lines(v string) []string {
	var out []string
	for _, l := range strings.Split(v, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func (c *Console) submit(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	vol, _ := strconv.ParseInt(strings.TrimSpace(f.Get("case_volume")), 10, 64)
	req := apply.Request{
		System: strings.TrimSpace(f.Get("system")), Dataset: f.Get("dataset"), Columns: fields(f.Get("columns")),
		Purpose: strings.TrimSpace(f.Get("purpose")), LegalBasis: strings.TrimSpace(f.Get("legal_basis")),
		Scenario: strings.TrimSpace(f.Get("scenario")), CaseVolume: vol, RowScope: strings.TrimSpace(f.Get("row_scope")),
		Access: f["access"], ValidFrom: f.Get("valid_from"), ValidUntil: f.Get("valid_until"),
		Attachments: lines(f.Get("attachments")), Renews: strings.TrimSpace(f.Get("renews")),
	}
	a, err := c.cfg.Apply.Submit(r.Context(), c.applyCaller(r, s), req)
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	http.Redirect(w, r, "/applications/"+a.ID, http.StatusSeeOther)
}

// conditions reads a grant's conditions from a form; empty fields take what was
// applied for (exchange/apply decides).
func conditions(r *http.Request) *apply.Conditions {
	f := r.PostForm
	maxRows, _ := strconv.ParseInt(strings.TrimSpace(f.Get("max_rows")), 10, 64)
	return &apply.Conditions{Approval: strings.TrimSpace(f.Get("approval")), Columns: fields(f.Get("columns")),
		Unmasked: fields(f.Get("unmasked")), RowScope: strings.TrimSpace(f.Get("row_scope")), MaxRows: maxRows,
		Access: f["access"], ValidFrom: f.Get("valid_from"), ValidUntil: f.Get("valid_until")}
}

// step takes one step of an application, through exchange/apply as the CLI and the
// HTTP API do: the policy decides who may, and apply audits it, taken or refused.
func (c *Console) step(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, id, cl := r.Context(), r.PathValue("id"), c.applyCaller(r, s)
	grant := r.PostFormValue("grant") == "yes"
	outcome := func() apply.Outcome {
		o := apply.Outcome{Grant: grant, Reasons: lines(r.PostFormValue("reasons"))}
		if grant {
			o.Conditions = conditions(r)
		}
		return o
	}
	var err error
	switch r.PathValue("step") {
	case "review":
		_, err = c.cfg.Apply.Review(ctx, cl, id, outcome())
	case "approve":
		_, err = c.cfg.Apply.Approve(ctx, cl, id, conditions(r))
	case "refuse":
		_, err = c.cfg.Apply.Refuse(ctx, cl, id, lines(r.PostFormValue("reasons")))
	case "withdraw":
		_, err = c.cfg.Apply.Withdraw(ctx, cl, id)
	case "dispute":
		_, err = c.cfg.Apply.Dispute(ctx, cl, id, r.PostFormValue("grounds"))
	case "negotiate":
		_, err = c.cfg.Apply.Negotiate(ctx, cl, id, outcome())
	case "coordinate":
		_, err = c.cfg.Apply.Coordinate(ctx, cl, id, outcome())
	default:
		err = c.audit(r, s, "step", "", "", id, nil, exchange.E(exchange.NotFound, "unknown_step", "no such step: "+r.PathValue("step")))
	}
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	http.Redirect(w, r, "/applications/"+id, http.StatusSeeOther)
}

func (c *Console) corrections(w http.ResponseWriter, r *http.Request, s *session) {
	fixes, err := c.cfg.Apply.ListFixes(r.Context(), c.applyCaller(r, s), apply.Filter{State: apply.State(r.URL.Query().Get("state"))})
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	p := c.newPage(r, s, "corrections")
	p.Data = applicationsData{Title: "nav_corrections", Fixes: fixes, Datasets: c.catalogRows(), Form: true}
	c.render(w, http.StatusOK, "corrections", p)
}

func (c *Console) flag(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	_, err := c.cfg.Apply.FlagRecord(r.Context(), c.applyCaller(r, s), apply.Flag{Dataset: f.Get("dataset"),
		Key: strings.TrimSpace(f.Get("key")), Column: strings.TrimSpace(f.Get("column")), Value: f.Get("value"),
		Evidence: strings.TrimSpace(f.Get("evidence"))})
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	http.Redirect(w, r, "/corrections", http.StatusSeeOther)
}

func (c *Console) answer(w http.ResponseWriter, r *http.Request, s *session) {
	_, err := c.cfg.Apply.AnswerFlag(r.Context(), c.applyCaller(r, s), r.PathValue("id"),
		apply.Answer{Corrected: r.PostFormValue("corrected") == "yes", Note: r.PostFormValue("note")})
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	http.Redirect(w, r, "/queue/answer", http.StatusSeeOther)
}

// agreements lists the agreements in force: all of them for stewards, the data
// authority and auditors; a department's own (as consumer or provider) otherwise.
func (c *Console) agreements(w http.ResponseWriter, r *http.Request, s *session) {
	p := c.newPage(r, s, "agreements")
	all := p.Has(apply.RoleAuthority) || p.Has(apply.RoleAuditor) || p.Has(apply.RoleSteward)
	var out []policies.Agreement
	for _, a := range c.cfg.Policy.Bundle().Agreements {
		d, _ := c.cfg.Catalog.Dataset(a.Dataset)
		if all || a.Consumer == s.subj.Department || (d != nil && d.Provider.Code == s.subj.Department) {
			out = append(out, a)
		}
	}
	p.Data = out
	c.render(w, http.StatusOK, "agreements", p)
}

// explainData is an explanation: the request asked about and the decision, the same
// engine and the same request `govx policy explain` builds.
type explainData struct {
	Q        map[string]string
	Asked    bool
	Decision exchange.Decision
	Req      exchange.Request
	Agr      *policies.Agreement
	Datasets []datasetView
	Actions  []exchange.Action
}

// explain decides a request as the exchange would, and shows why. A department user
// explains its own department's requests; the other roles any department's. Each
// explanation is audited (it tells what the policy would grant).
func (c *Console) explain(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	p := c.newPage(r, s, "explain")
	d := explainData{Q: map[string]string{}, Datasets: c.catalogRows(), Actions: exchange.Actions()}
	for _, k := range []string{"department", "system", "dataset", "action", "purpose", "columns", "case_ref"} {
		d.Q[k] = strings.TrimSpace(q.Get(k))
	}
	if d.Q["department"] == "" {
		d.Q["department"], d.Q["system"] = s.subj.Department, s.subj.System
	}
	if d.Q["action"] == "" {
		d.Q["action"] = string(exchange.ActionRead)
	}
	if d.Q["dataset"] != "" {
		only := !(p.Has(apply.RoleAuthority) || p.Has(apply.RoleAuditor) || p.Has(apply.RoleSteward))
		if only && d.Q["department"] != s.subj.Department {
			err := c.audit(r, s, "explain", d.Q["dataset"], d.Q["purpose"], d.Q["case_ref"], nil,
				exchange.E(exchange.PermissionDenied, "not_own_department", "a department explains its own requests only"))
			c.fail(w, r, s, http.StatusForbidden, err)
			return
		}
		d.Req = exchange.Request{Subject: exchange.Subject{Department: d.Q["department"], System: d.Q["system"]},
			Action: exchange.Action(d.Q["action"]), Dataset: d.Q["dataset"], Columns: fields(d.Q["columns"]),
			Purpose: d.Q["purpose"], CaseRef: d.Q["case_ref"], Time: c.cfg.Now()}
		if err := c.audit(r, s, "explain", d.Req.Dataset, d.Req.Purpose, d.Req.CaseRef, nil, nil); err != nil {
			c.fail(w, r, s, statusOf(err), err)
			return
		}
		d.Asked = true
		d.Decision = c.cfg.Policy.Decide(r.Context(), d.Req)
		if a, ok := c.cfg.Policy.Bundle().Agreement(d.Decision.Agreement); ok {
			d.Agr = a
		}
	}
	p.Data = d
	c.render(w, http.StatusOK, "explain", p)
}
