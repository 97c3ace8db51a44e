package console

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"govx/exchange"
	"govx/exchange/apply"
	"govx/schemas"
)

// An application whose clock ran out is shown red (class overdue) and says so, with
// its last working day; text from the applicant is escaped.
func TestOverdueShownRed(t *testing.T) {
	c := &Console{cfg: Config{Log: slog.New(slog.DiscardHandler)}}
	if err := c.parseTemplates(); err != nil {
		t.Fatal(err)
	}
	due := time.Date(2026, 12, 2, 0, 0, 0, 0, schemas.ChinaTime) // the end of 1 December
	apps := []*apply.Application{
		{ID: "APP-2026-000007", Applicant: "mz-3201", System: "x", Dataset: "population.person", Purpose: "<b>p</b>",
			State: apply.Submitted, Clock: "review", Due: due, Overdue: true},
		{ID: "APP-2026-000008", Applicant: "mz-3201", System: "x", Dataset: "population.person", Purpose: "q",
			State: apply.Submitted, Clock: "review", Due: due.AddDate(0, 0, 7)},
	}
	for _, lang := range []string{"zh", "en"} {
		p := &page{Lang: lang, Name: "applications", Who: &exchange.Subject{Department: "mz-3201", System: "x"},
			Roles: []string{apply.RoleDepartment}, Data: applicationsData{Title: "nav_applications", Apps: apps}}
		w := httptest.NewRecorder()
		c.render(w, http.StatusOK, "applications", p)
		body := w.Body.String()
		row := body[strings.Index(body, "APP-2026-000007"):]
		row = row[:strings.Index(row, "</tr>")]
		start := strings.LastIndex(body[:strings.Index(body, "APP-2026-000007")], "<tr")
		if !strings.Contains(body[start:start+30], `class="overdue"`) || !strings.Contains(row, p.T("overdue")) || !strings.Contains(row, "2026-12-01") {
			t.Errorf("%s: the overdue application is not shown overdue:\n%s", lang, body[start:])
		}
		if strings.Contains(row, "<b>p</b>") || !strings.Contains(row, "&lt;b&gt;p&lt;/b&gt;") {
			t.Errorf("%s: the purpose is not escaped: %s", lang, row)
		}
		other := body[strings.LastIndex(body[:strings.Index(body, "APP-2026-000008")], "<tr"):]
		if strings.Contains(other[:strings.Index(other, "</tr>")], "overdue") {
			t.Errorf("%s: an application within its time limit is shown overdue", lang)
		}
	}
}
