package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"govx/exchange"
	"govx/exchange/apply"
)

// MountApplications serves the sharing application process and corrections under
// /v1/applications and /v1/corrections, authenticated as every other API call; who may
// take each step is the process policy's decision, inside apply.
func (h *Handler) MountApplications(p *apply.Service) {
	a := &appAPI{h: h, p: p}
	h.processRoute("POST /v1/applications", "application.submit", a.submit)
	h.processRoute("GET /v1/applications", "application.list", a.list)
	h.processRoute("GET /v1/applications/{id}", "application.show", a.show)
	h.processRoute("POST /v1/applications/{id}/{step}", "application.step", a.step)
	h.processRoute("POST /v1/corrections", "correction.flag", a.flag)
	h.processRoute("GET /v1/corrections", "correction.list", a.listFixes)
	h.processRoute("GET /v1/corrections/{id}", "correction.show", a.showFix)
	h.processRoute("POST /v1/corrections/{id}/answer", "correction.answer", a.answer)
}

type appAPI struct {
	h *Handler
	p *apply.Service
}

// processRoute is route for the process's endpoints: the caller is authenticated (a
// failure audited and refused) before fn runs, and the request counted by route.
func (h *Handler) processRoute(pattern, name string, fn func(http.ResponseWriter, *http.Request, apply.Caller)) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			h.requests.WithLabelValues(name, strconv.Itoa(sw.status)).Inc()
			h.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
		}()
		c, err := h.caller(r)
		if err != nil {
			writeError(sw, h.svc.Unauthenticated(r.Context(), c, exchange.Action(name), "", err))
			return
		}
		fn(sw, r, apply.Caller{Subject: c.Subject, ClientAddr: c.ClientAddr})
	})
}

// decode reads a JSON body strictly into v: an unknown field is an error, not ignored,
// so a misspelt condition never turns into a wider grant.
func (a *appAPI) decode(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := a.h.body(w, r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return exchange.E(exchange.Invalid, "malformed_request", "the request is not valid JSON of the expected shape: "+err.Error())
	}
	if dec.More() {
		return exchange.E(exchange.Invalid, "malformed_request", "unexpected data after the JSON object")
	}
	return nil
}

func (a *appAPI) submit(w http.ResponseWriter, r *http.Request, c apply.Caller) {
	var req apply.Request
	if err := a.decode(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	app, err := a.p.Submit(r.Context(), c, req)
	reply(w, http.StatusCreated, app, err)
}

func filterOf(r *http.Request) (apply.Filter, error) {
	q := r.URL.Query()
	f := apply.Filter{State: apply.State(q.Get("state"))}
	if v := q.Get("overdue"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, exchange.E(exchange.Invalid, "malformed_request", "overdue is true or false")
		}
		f.Overdue = b
	}
	return f, nil
}

func (a *appAPI) list(w http.ResponseWriter, r *http.Request, c apply.Caller) {
	f, err := filterOf(r)
	if err != nil {
		writeError(w, err)
		return
	}
	as, err := a.p.List(r.Context(), c, f)
	if as == nil {
		as = []*apply.Application{}
	}
	reply(w, http.StatusOK, map[string]any{"applications": as}, err)
}

func (a *appAPI) show(w http.ResponseWriter, r *http.Request, c apply.Caller) {
	app, err := a.p.Show(r.Context(), c, r.PathValue("id"))
	reply(w, http.StatusOK, app, err)
}

// step takes one step of an application; the body is the step's answer.
func (a *appAPI) step(w http.ResponseWriter, r *http.Request, c apply.Caller) {
	ctx, id := r.Context(), r.PathValue("id")
	var (
		app *apply.Application
		err error
	)
	switch r.PathValue("step") {
	case "review", "negotiate", "coordinate":
		var o apply.Outcome
		if err = a.decode(w, r, &o); err == nil {
			switch r.PathValue("step") {
			case "review":
				app, err = a.p.Review(ctx, c, id, o)
			case "negotiate":
				app, err = a.p.Negotiate(ctx, c, id, o)
			default:
				app, err = a.p.Coordinate(ctx, c, id, o)
			}
		}
	case "approve":
		var cond apply.Conditions
		if err = a.decode(w, r, &cond); err == nil {
			app, err = a.p.Approve(ctx, c, id, &cond)
		}
	case "refuse":
		var body struct {
			Reasons []string `json:"reasons"`
		}
		if err = a.decode(w, r, &body); err == nil {
			app, err = a.p.Refuse(ctx, c, id, body.Reasons)
		}
	case "dispute":
		var body struct {
			Grounds string `json:"grounds"`
		}
		if err = a.decode(w, r, &body); err == nil {
			app, err = a.p.Dispute(ctx, c, id, body.Grounds)
		}
	case "withdraw":
		app, err = a.p.Withdraw(ctx, c, id)
	default:
		err = exchange.E(exchange.NotFound, "no_route", "no step "+strconv.Quote(r.PathValue("step"))+
			"; the steps are review, approve, refuse, withdraw, dispute, negotiate, coordinate")
	}
	reply(w, http.StatusOK, app, err)
}

func (a *appAPI) flag(w http.ResponseWriter, r *http.Request, c apply.Caller) {
	var f apply.Flag
	if err := a.decode(w, r, &f); err != nil {
		writeError(w, err)
		return
	}
	x, err := a.p.FlagRecord(r.Context(), c, f)
	reply(w, http.StatusCreated, x, err)
}

func (a *appAPI) listFixes(w http.ResponseWriter, r *http.Request, c apply.Caller) {
	f, err := filterOf(r)
	if err != nil {
		writeError(w, err)
		return
	}
	xs, err := a.p.ListFixes(r.Context(), c, f)
	if xs == nil {
		xs = []*apply.Correction{}
	}
	reply(w, http.StatusOK, map[string]any{"corrections": xs}, err)
}

func (a *appAPI) showFix(w http.ResponseWriter, r *http.Request, c apply.Caller) {
	x, err := a.p.ShowFix(r.Context(), c, r.PathValue("id"))
	reply(w, http.StatusOK, x, err)
}

func (a *appAPI) answer(w http.ResponseWriter, r *http.Request, c apply.Caller) {
	var ans apply.Answer
	if err := a.decode(w, r, &ans); err != nil {
		writeError(w, err)
		return
	}
	x, err := a.p.AnswerFlag(r.Context(), c, r.PathValue("id"), ans)
	reply(w, http.StatusOK, x, err)
}

func reply(w http.ResponseWriter, code int, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, code, v)
}
