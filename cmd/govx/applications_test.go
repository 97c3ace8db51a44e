package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"govx/exchange"
	"govx/exchange/auth"
	"govx/exchange/server"
	"govx/internal/kafkatest"
	"govx/policies"
)

// TestApplicationsCLI walks the README's application with the commands: the applicant
// applies, the data authority reviews, the provider answers, the list flags nothing
// overdue, policy explain names the application, and a refusal without a reason is
// refused with its code.
func TestApplicationsCLI(t *testing.T) {
	b := kafkatest.Start(t)
	kafkatest.CreateTopic(t, b.Addr(), "govx.population.person")
	dir := t.TempDir()
	cfg := server.Defaults(dir)
	cfg.FlightAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kafka.Brokers = []string{b.Addr()}
	cfg.Datasets = []string{"population.person"}
	cfg.PoliciesDir = filepath.Join(dir, "policies")
	if err := policies.CopyEmbedded(cfg.PoliciesDir); err != nil {
		t.Fatal(err)
	}
	tokens := auth.OpenTokens(cfg.TokensFile)
	tok := map[string]string{}
	for name, s := range map[string]exchange.Subject{
		"applicant": {Department: "zj-3205", System: "housing-security"},
		"steward":   {Department: "gab", System: "steward"},
		"authority": {Department: "zwfw", System: "sharing-review"},
	} {
		v, _, err := tokens.Issue(s, "test")
		if err != nil {
			t.Fatal(err)
		}
		tok[name] = v
	}
	x, err := server.Start(context.Background(), cfg, server.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	base := "http://" + x.HTTPAddr()
	as := func(who string, args ...string) (string, error) {
		return runGovx(t, append(args, "--http", base, "--token", tok[who])...)
	}

	out, err := as("applicant", "apply", "--dataset", "population.person", "--columns", "id_number,name,household_region,status",
		"--purpose", "housing-security-qualification", "--legal-basis", "《城镇住房保障条例》：住房保障资格审核",
		"--scenario", "住房保障资格审核", "--access", "read,lookup", "--valid-from", "2026-01-01", "--valid-until", "2027-12-31")
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`application (APP-\d{4}-\d{6})  submitted`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "clock       review due by") {
		t.Fatalf("apply printed:\n%s", out)
	}
	id := m[1]
	if out, err := as("steward", "applications", "answer", id, "--approval", "x"); err == nil || !strings.Contains(err.Error(), "illegal_transition") {
		t.Fatalf("answering before the review: %v\n%s", err, out)
	}
	if out, err := as("authority", "applications", "review", id); err != nil || !strings.Contains(out, "with_provider") {
		t.Fatalf("review: %v\n%s", err, out)
	}
	if _, err := as("steward", "applications", "refuse", id); err == nil || !strings.Contains(err.Error(), "reasons_required") {
		t.Fatalf("a refusal without reasons: %v", err)
	}
	out, err = as("steward", "applications", "answer", id, "--approval", "苏数共〔2026〕9号", "--columns", "id_number,name,household_region")
	if err != nil || !strings.Contains(out, "approved") || !strings.Contains(out, "agreement   AGR-"+id) {
		t.Fatalf("answer: %v\n%s", err, out)
	}
	out, err = as("applicant", "applications", "list")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "approved") || strings.Contains(out, "OVERDUE") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = runGovx(t, "policy", "explain", "--policies", cfg.PoliciesDir, "--as", "zj-3205/housing-security",
		"--dataset", "population.person", "--purpose", "housing-security-qualification", "--time", time.Now().Format(time.DateOnly))
	if err != nil || !strings.Contains(out, "application "+id) {
		t.Fatalf("policy explain does not name the application: %v\n%s", err, out)
	}
	out, err = as("applicant", "corrections", "flag", "--dataset", "population.person", "--key", "320102199001011232",
		"--column", "name", "--value", "张叁", "--evidence", "户籍证明")
	if err != nil || !strings.Contains(out, "flagged") {
		t.Fatalf("flag: %v\n%s", err, out)
	}
	if out, err := as("steward", "corrections", "list"); err != nil || !strings.Contains(out, "COR-") {
		t.Fatalf("the provider's queue: %v\n%s", err, out)
	}
}
