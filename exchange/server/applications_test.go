package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"govx/exchange"
	"govx/exchange/auth"
	"govx/internal/kafkatest"
	"govx/internal/testenv"
	"govx/policies"
)

// processExchange is an in-process exchange with a policy directory and tokens for an
// applicant, the population register's steward and the data authority.
func processExchange(t *testing.T) (*Exchange, *kafkatest.Broker, map[string]string) {
	t.Helper()
	var issued map[string]string
	x, b, _ := inProcess(t, func(c *Config) {
		c.PoliciesDir = filepath.Join(filepath.Dir(c.TokensFile), "policies")
		if err := policies.CopyEmbedded(c.PoliciesDir); err != nil {
			t.Fatal(err)
		}
		tokens := auth.OpenTokens(c.TokensFile)
		toks := map[string]string{}
		for name, s := range map[string]exchange.Subject{
			"applicant": {Department: "mz-3201", System: "social-assistance"},
			"steward":   {Department: "gab", System: "steward"},
			"authority": {Department: "zwfw", System: "sharing-review"},
		} {
			tok, _, err := tokens.Issue(s, "test")
			if err != nil {
				t.Fatal(err)
			}
			toks[name] = tok
		}
		issued = toks
	})
	t.Cleanup(func() { x.Close() })
	return x, b, issued
}

// call sends a JSON request with a token and decodes the JSON answer into out.
func call(t *testing.T, x *Exchange, token, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, "http://"+x.HTTPAddr()+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode
}

type appJSON struct {
	ID        string   `json:"id"`
	State     string   `json:"state"`
	Reasons   []string `json:"reasons"`
	Agreement string   `json:"agreement"`
	Overdue   bool     `json:"overdue"`
}

type errJSON struct {
	Error struct {
		Code    string            `json:"code"`
		Reasons []exchange.Reason `json:"reasons"`
	} `json:"error"`
}

func subsidyApplication() map[string]any {
	return map[string]any{"dataset": "population.person", "columns": []string{"id_number", "name", "household_region"},
		"purpose": "disability-subsidy-review", "legal_basis": "《残疾人保障法》：残疾人两项补贴资格审核", "scenario": "残疾人两项补贴审核",
		"case_volume": 3000, "access": []string{"read"}, "valid_from": "2026-01-01", "valid_until": "2027-12-31"}
}

// pullStatus pulls population.person as the applicant for the subsidy purpose.
func pullStatus(t *testing.T, x *Exchange, token string) (int, string) {
	req, _ := http.NewRequest("POST", "http://"+x.HTTPAddr()+"/v1/datasets/population.person/pull",
		strings.NewReader(`{"purpose":"disability-subsidy-review"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Submitted over HTTP, reviewed by the data authority, approved by the provider: the
// applicant's pull, denied before, succeeds within seconds, without a restart. A second
// application, refused, keeps the pull for its purpose denied and shows its reasons.
func TestApplicationToServedPull(t *testing.T) {
	x, _, tok := processExchange(t)
	if code, body := pullStatus(t, x, tok["applicant"]); code != http.StatusForbidden || !strings.Contains(body, "unknown_purpose") {
		t.Fatalf("before any application: %d %s", code, body)
	}
	var a appJSON
	if code := call(t, x, tok["applicant"], "POST", "/v1/applications", subsidyApplication(), &a); code != http.StatusCreated || a.State != "submitted" {
		t.Fatalf("submit: %d %+v", code, a)
	}
	var e errJSON
	if code := call(t, x, tok["applicant"], "POST", "/v1/applications/"+a.ID+"/approve", map[string]any{"approval": "x"}, &e); code != http.StatusForbidden || e.Error.Reasons[0].Code != "own_application" {
		t.Fatalf("the applicant approving: %d %+v", code, e)
	}
	if code := call(t, x, tok["authority"], "POST", "/v1/applications/"+a.ID+"/review", map[string]any{"grant": true}, &a); code != 200 || a.State != "with_provider" {
		t.Fatalf("review: %d %+v", code, a)
	}
	if code := call(t, x, tok["steward"], "POST", "/v1/applications/"+a.ID+"/approve", map[string]any{"approval": "宁数共〔2026〕21号", "colums": []string{"name"}}, &e); code != 400 || e.Error.Code != "malformed_request" {
		t.Fatalf("a misspelt condition: %d %+v", code, e)
	}
	if code := call(t, x, tok["steward"], "POST", "/v1/applications/"+a.ID+"/approve", map[string]any{"approval": "宁数共〔2026〕21号"}, &a); code != 200 || a.State != "approved" {
		t.Fatalf("approve: %d %+v", code, a)
	}
	approved := time.Now()
	testenv.WaitFor(t, 5*time.Second, "the applicant's pull allowed", func() bool {
		code, _ := pullStatus(t, x, tok["applicant"])
		return code == http.StatusOK
	})
	_, body := pullStatus(t, x, tok["applicant"])
	if !strings.Contains(body, `"household_region":"3201`) {
		t.Errorf("the pull returns no Nanjing rows:\n%s", body)
	}
	t.Logf("served %v after the approval", time.Since(approved).Round(time.Millisecond))
	if g, ok := x.Policy().Bundle().Agreement(a.Agreement); !ok || g.Application != a.ID {
		t.Errorf("the agreement in force does not name %s: %+v", a.ID, g)
	}

	r := subsidyApplication()
	r["purpose"] = "employment-assistance"
	var refused appJSON
	call(t, x, tok["applicant"], "POST", "/v1/applications", r, &refused)
	call(t, x, tok["authority"], "POST", "/v1/applications/"+refused.ID+"/review", map[string]any{"grant": true}, nil)
	if code := call(t, x, tok["steward"], "POST", "/v1/applications/"+refused.ID+"/refuse", map[string]any{"reasons": []string{}}, &e); code != 400 || e.Error.Code != "reasons_required" {
		t.Fatalf("refuse without reasons: %d %+v", code, e)
	}
	call(t, x, tok["steward"], "POST", "/v1/applications/"+refused.ID+"/refuse", map[string]any{"reasons": []string{"就业援助无需身份号码明文"}}, &refused)
	call(t, x, tok["applicant"], "GET", "/v1/applications/"+refused.ID, nil, &refused)
	if refused.State != "refused" || len(refused.Reasons) != 1 || refused.Reasons[0] != "就业援助无需身份号码明文" {
		t.Fatalf("refused: %+v", refused)
	}
	req, _ := http.NewRequest("POST", "http://"+x.HTTPAddr()+"/v1/datasets/population.person/pull", strings.NewReader(`{"purpose":"employment-assistance"}`))
	req.Header.Set("Authorization", "Bearer "+tok["applicant"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("pull for the refused purpose: %d", resp.StatusCode)
	}

	var list struct {
		Applications []appJSON `json:"applications"`
	}
	if code := call(t, x, tok["steward"], "GET", "/v1/applications?state=refused", nil, &list); code != 200 || len(list.Applications) != 1 {
		t.Errorf("the steward's list of refused: %d %+v", code, list)
	}
	if code, body := get(t, x, "/metrics"); code != 200 || !strings.Contains(body, "govx_applications_overdue 0") {
		t.Errorf("/metrics lacks the overdue gauge")
	}
	if code := call(t, x, "not-a-token", "GET", "/v1/applications", nil, &e); code != 401 || e.Error.Code != "unauthenticated" {
		t.Errorf("without a valid token: %d %+v", code, e)
	}
}

// A record flagged wrong, answered as corrected at source: the flag closes only once the
// corrected value arrives through Kafka into the store and is served.
func TestCorrectionClosesWhenServed(t *testing.T) {
	x, b, tok := processExchange(t)
	persons := makePersons(t, 20, 11)
	p := persons[2] // in Nanjing (320102), the applicant's region
	key := p["id_number"].(string)
	var c struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	flag := map[string]any{"dataset": "population.person", "key": key, "column": "name", "value": "李四光", "evidence": "宁民〔2026〕5号 户籍证明"}
	if code := call(t, x, tok["applicant"], "POST", "/v1/corrections", flag, &c); code != http.StatusCreated || c.State != "flagged" {
		t.Fatalf("flag: %d %+v", code, c)
	}
	var queue struct {
		Corrections []struct {
			ID string `json:"id"`
		} `json:"corrections"`
	}
	if call(t, x, tok["steward"], "GET", "/v1/corrections?state=flagged", nil, &queue); len(queue.Corrections) != 1 || queue.Corrections[0].ID != c.ID {
		t.Fatalf("the provider's queue: %+v", queue)
	}
	if code := call(t, x, tok["steward"], "POST", "/v1/corrections/"+c.ID+"/answer", map[string]any{"corrected": true, "note": "已在户籍系统更正"}, &c); code != 200 || c.State != "corrected" {
		t.Fatalf("answer: %d %+v", code, c)
	}
	// The source update, as the connector publishes it.
	p["name"] = "李四光"
	v, _ := json.Marshal(p)
	kafkatest.Produce(t, b.Addr(), "govx.population.person", kafka.Message{Key: []byte(key), Value: v})
	testenv.WaitFor(t, 10*time.Second, "the correction closed", func() bool {
		call(t, x, tok["applicant"], "GET", "/v1/corrections/"+c.ID, nil, &c)
		return c.State == "closed"
	})
	if got, ok := x.servedValue("population.person", key, "name"); !ok || got != "李四光" {
		t.Errorf("served %q", got)
	}
}
