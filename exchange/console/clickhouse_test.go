package console_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"govx/exchange/server"
	"govx/internal/testenv"
)

// With the audit log shipped to ClickHouse, the auditor's search reads ClickHouse (a
// pull appears once shipped), and verification checks the spool and ClickHouse together
// against the signed checkpoints.
func TestIntegrationConsoleClickHouse(t *testing.T) {
	addr := testenv.Require(t, testenv.ClickHouse)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	rand.Read(b[:])
	db := "govx_console_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		conn.Close()
	})
	var skew atomic.Int64
	x, _, tok, _ := consoleExchange(t, &skew, func(c *server.Config) {
		c.Audit.ClickHouse.Addr, c.Audit.ClickHouse.Database = addr, db
	})
	base := "http://" + x.ConsoleAddr()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp := formSignIn(t, c, base, url.Values{"token": {tok["auditor"]}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	// A pull the policy denies: mz-3201 holds no agreement for this purpose.
	if _, err := pull(t, x, tok["department"]); err == nil || !strings.Contains(err.Error(), "permission") {
		t.Fatalf("the department's pull without an agreement: %v", err)
	}
	testenv.WaitFor(t, 30*time.Second, "the denied pull found in ClickHouse", func() bool {
		code, body := page(t, c, base+"/audit?department=mz-3201&decision=deny&action=read")
		return code == http.StatusOK && strings.Contains(body, "disability-subsidy-review")
	})
	code, body := page(t, c, base+"/audit/verify")
	if code != http.StatusOK || !strings.Contains(body, `id="verify-status">✔`) {
		t.Fatalf("verification of the spool and ClickHouse: %d\n%s", code, body)
	}
}
