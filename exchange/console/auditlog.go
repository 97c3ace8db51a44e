package console

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/audit/review"
	"govx/schemas"
)

// maxShown is how many events a search shows, newest first; the count says how many
// matched.
const maxShown = 500

// searchFields are the audit search's form fields, in the order shown.
var searchFields = []string{"department", "dataset", "decision", "purpose", "case", "action", "since", "until"}

// filterOf reads an audit search from a query. Times are China Standard Time, as
// `govx audit query` takes them by default: a date, or a date and a time.
func filterOf(q url.Values) (audit.Filter, error) {
	f := audit.Filter{Department: strings.TrimSpace(q.Get("department")), Dataset: strings.TrimSpace(q.Get("dataset")),
		Decision: q.Get("decision"), Purpose: strings.TrimSpace(q.Get("purpose")), CaseRef: strings.TrimSpace(q.Get("case")),
		Action: strings.TrimSpace(q.Get("action"))}
	if f.Decision != "" && f.Decision != audit.Allow && f.Decision != audit.Deny {
		return f, exchange.E(exchange.Invalid, "bad_decision", "decision is allow or deny")
	}
	for name, t := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		v := strings.TrimSpace(q.Get(name))
		if v == "" {
			continue
		}
		var err error
		for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04", time.DateOnly} {
			if *t, err = time.ParseInLocation(layout, v, schemas.ChinaTime); err == nil {
				break
			}
		}
		if err != nil {
			return f, exchange.E(exchange.Invalid, "bad_time", name+": a date (2026-11-29) or a date and time (2026-11-29 08:30)")
		}
	}
	return f, nil
}

// scan calls fn with each event f selects, in time order, holding none of them: a
// search of a large log costs time, not memory.
func (c *Console) scan(ctx context.Context, f audit.Filter, fn func(*audit.Event)) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	if c.cfg.Audit.ClickHouse == nil {
		defer st.Close()
	}
	it, err := st.Events(ctx, f)
	if err != nil {
		return unavailable(err)
	}
	defer it.Close()
	for it.Next() {
		fn(it.Event())
	}
	return unavailable(it.Err())
}

// store is the audit store searched: ClickHouse when configured, else the spool.
func (c *Console) store() (audit.Store, error) {
	if c.cfg.Audit.ClickHouse != nil {
		return c.cfg.Audit.ClickHouse, nil
	}
	st, err := audit.OpenSpoolStore(c.cfg.Audit.SpoolDir)
	return st, unavailable(err)
}

func unavailable(err error) error {
	if err == nil {
		return nil
	}
	return &exchange.Error{Kind: exchange.Unavailable, Code: "audit_store_unavailable", Message: "the audit log cannot be read now: " + err.Error(), Err: err}
}

// searchData is the audit search page.
type searchData struct {
	Q      map[string]string
	Fields []string
	Count  int
	Events []*audit.Event
	Charts []chartRef
}

// chartRef is one chart of a search: its image URL, carrying the search, and caption.
type chartRef struct {
	Src     template.URL
	Caption string
}

// chartsOf are the charts of the search q. The URL is built here from encoded values
// (template.URL: html/template would otherwise escape the query's own & and =).
func chartsOf(q url.Values) []chartRef {
	v := url.Values{}
	for _, k := range searchFields {
		if q.Get(k) != "" {
			v.Set(k, q.Get(k))
		}
	}
	var out []chartRef
	for _, c := range []string{"requests", "rows", "offhours"} {
		out = append(out, chartRef{Src: template.URL("/charts/" + c + ".svg?" + v.Encode()), Caption: "chart_" + c})
	}
	return out
}

func (c *Console) auditSearch(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f, err := filterOf(q)
	if err == nil {
		err = c.audit(r, s, "audit.search", f.Dataset, f.Purpose, f.CaseRef, nil, nil)
	}
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	d := searchData{Q: map[string]string{}, Fields: searchFields}
	// The newest maxShown, kept as they pass: the oldest half is dropped whenever the
	// window fills twice over.
	var newest []*audit.Event
	err = c.scan(r.Context(), f, func(ev *audit.Event) {
		d.Count++
		e := *ev
		newest = append(newest, &e)
		if len(newest) == 2*maxShown {
			newest = append(newest[:0], newest[maxShown:]...)
		}
	})
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	if d.Count > 0 {
		d.Charts = chartsOf(q)
	}
	for _, k := range searchFields {
		d.Q[k] = q.Get(k)
	}
	for i := len(newest) - 1; i >= 0 && len(d.Events) < maxShown; i-- {
		d.Events = append(d.Events, newest[i])
	}
	p := c.newPage(r, s, "audit")
	p.Data = d
	c.render(w, http.StatusOK, "audit", p)
}

// subjectData is the data-subject report page.
type subjectData struct {
	Key, Dataset string
	Rep          *review.SubjectReport
	Datasets     []datasetView
}

// auditSubject is "who saw this person's record": review.BuildSubject over the log,
// with bulk pulls matched against the record as the exchange serves it now (the CLI
// takes the record's versions from a file instead).
func (c *Console) auditSubject(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := subjectData{Key: strings.TrimSpace(q.Get("key")), Dataset: strings.TrimSpace(q.Get("dataset")), Datasets: c.catalogRows()}
	p := c.newPage(r, s, "subject")
	if d.Key != "" {
		// Who asked about whom is recorded as a keyed HMAC of the key, not as the key: the
		// event must not read as an access to the record in the next subject report, and
		// a reader of the log cannot recover the key (SubjectTag).
		if err := c.audit(r, s, "audit.subject", d.Dataset, "", "", []string{"subject-hmac-sha256:" + SubjectTag(c.subjectKey, d.Key)}, nil); err != nil {
			c.fail(w, r, s, statusOf(err), err)
			return
		}
		f, err := filterOf(q)
		if err != nil {
			c.fail(w, r, s, statusOf(err), err)
			return
		}
		f.Dataset = d.Dataset
		opt := review.SubjectOptions{Key: d.Key, Dataset: d.Dataset}
		if d.Dataset == "" {
			f.Key = d.Key
		} else {
			opt.InScope = func(ev *audit.Event) (bool, error) { return c.inScope(d.Dataset, d.Key, ev) }
		}
		st, err := c.store()
		if err == nil {
			if c.cfg.Audit.ClickHouse == nil {
				defer st.Close()
			}
			var it audit.Iterator
			if it, err = st.Events(r.Context(), f); err == nil {
				d.Rep, err = review.BuildSubject(r.Context(), it, opt)
			}
		}
		if err != nil {
			err = unavailable(err)
			c.fail(w, r, s, statusOf(err), err)
			return
		}
		if d.Dataset == "" {
			// The report's own note names the CLI's --record; here the dataset is the way.
			d.Rep.Notes = []string{p.T("subject_pulls_note")}
		}
	}
	p.Data = d
	c.render(w, http.StatusOK, "subject", p)
}

// inScope reports whether the scope a pull's decision event recorded includes the
// record as served now.
func (c *Console) inScope(dataset, key string, ev *audit.Event) (bool, error) {
	filters, err := review.RecordedScope(ev)
	if err != nil {
		return false, err
	}
	return c.cfg.Scope(dataset, key, filters)
}

func (c *Console) auditReport(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f, err := filterOf(q)
	if err == nil {
		err = c.audit(r, s, "audit.report", f.Dataset, f.Purpose, f.CaseRef, nil, nil)
	}
	var rep *review.Report
	if err == nil {
		var st audit.Store
		if st, err = c.store(); err == nil {
			if c.cfg.Audit.ClickHouse == nil {
				defer st.Close()
			}
			var it audit.Iterator
			if it, err = st.Events(r.Context(), f); err == nil {
				opt := review.ReportOptions{Location: schemas.ChinaTime, Agreements: review.AgreementsOf(c.cfg.Policy.Bundle())}
				if rep, err = review.BuildReport(r.Context(), it, opt); err != nil {
					err = unavailable(err)
				}
			} else {
				err = unavailable(err)
			}
		}
	}
	if err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	p := c.newPage(r, s, "report")
	p.Data = map[string]any{"Rep": rep, "Q": map[string]string{"since": q.Get("since"), "until": q.Get("until")}}
	c.render(w, http.StatusOK, "report", p)
}

// verifyData is the verification page: audit.Verify's result over the chain the
// exchange keeps, and the last signed checkpoint.
type verifyData struct {
	Res  *audit.VerifyResult
	Last *audit.Checkpoint
	Err  string
}

func (c *Console) auditVerify(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.audit(r, s, "audit.verify", "", "", "", nil, nil); err != nil {
		c.fail(w, r, s, statusOf(err), err)
		return
	}
	var d verifyData
	res, last, err := c.verify(r.Context())
	if err != nil {
		d.Err = err.Error()
	}
	d.Res, d.Last = res, last
	p := c.newPage(r, s, "verify")
	p.Data = d
	c.render(w, http.StatusOK, "verify", p)
}

// verify checks the exchange's chain as `govx audit verify` does: the spool (and the
// ClickHouse copy, when configured) against the signed checkpoints.
func (c *Console) verify(ctx context.Context) (*audit.VerifyResult, *audit.Checkpoint, error) {
	a := c.cfg.Audit
	opt := audit.VerifyOptions{}
	var last *audit.Checkpoint
	if a.Checkpoints != "" {
		cps, err := audit.ReadCheckpoints(a.Checkpoints)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
		opt.Checkpoints, opt.CheckpointsGiven = cps, err == nil
		if len(cps) > 0 {
			last = &cps[len(cps)-1]
		}
	}
	if a.PublicKey != "" {
		key, err := audit.LoadPublicKey(a.PublicKey)
		if err != nil {
			return nil, last, err
		}
		opt.PublicKey = key
	}
	sp, err := audit.OpenSpoolStore(a.SpoolDir)
	if err != nil {
		return nil, last, err
	}
	defer sp.Close()
	m, err := sp.Shipped()
	if err != nil {
		return nil, last, err
	}
	opt.Spool = &audit.SpoolSource{Instance: sp.Instance(), Shipped: m, WithSink: a.ClickHouse != nil}
	it, err := sp.Chain(ctx)
	if err != nil {
		return nil, last, err
	}
	if a.ClickHouse != nil {
		ch, err := a.ClickHouse.Chain(ctx)
		if err != nil {
			it.Close()
			return nil, last, err
		}
		it = audit.MergeChains(ch, it)
	}
	res, err := audit.Verify(ctx, it, opt)
	return res, last, err
}
