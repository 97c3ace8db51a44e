package auth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"govx/exchange"
)

func TestTokensIssueAuthenticateRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	admin := OpenTokens(path)        // `govx token …`
	exchangeView := OpenTokens(path) // a running exchange reading the same file
	subj := exchange.Subject{Department: "mz-3301", System: "dibao-review"}

	token, rec, err := admin.Issue(subj, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "govx_") || len(token) < 40 {
		t.Fatalf("token %q", token)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), token) || strings.Contains(string(data), strings.TrimPrefix(token, "govx_")) {
		t.Fatal("the token file holds the token itself, not only its hash")
	}
	if got, err := exchangeView.Authenticate(token); err != nil || got != subj {
		t.Fatalf("Authenticate = %v, %v", got, err)
	}
	other, _, _ := admin.Issue(exchange.Subject{Department: "rs-33"}, "")
	if got, _ := exchangeView.Authenticate(other); got.Department != "rs-33" {
		t.Fatalf("second token authenticates as %v", got)
	}
	for _, bad := range []string{"", "govx_", token + "x", "Bearer " + token, strings.ToUpper(token)} {
		if _, err := exchangeView.Authenticate(bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want unauthenticated", bad, err)
		}
	}
	// The scheme in any case (RFC 7235); nothing else but a token after it.
	for _, h := range []string{"Bearer " + token, "bearer " + token, "BEARER  " + token} {
		if got, err := exchangeView.Subject(h, nil); err != nil || got != subj {
			t.Errorf("Subject(%q) = %v, %v", h, got, err)
		}
	}
	for _, h := range []string{token, "Basic " + token, "Bearer" + token, "Bearers " + token} {
		if _, err := exchangeView.Subject(h, nil); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Subject(%q) = %v, want unauthenticated", h, err)
		}
	}
	if _, err := admin.Revoke(rec.ID); err != nil {
		t.Fatal(err)
	}
	// No restart and no wait: the next request already fails.
	if _, err := exchangeView.Authenticate(token); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked token still authenticates: %v", err)
	}
	if _, err := exchangeView.Authenticate(other); err != nil {
		t.Fatalf("revoking one token broke another: %v", err)
	}
	if _, err := admin.Revoke("tok-nope"); err == nil || !strings.Contains(err.Error(), "govx token list") {
		t.Fatalf("revoking an unknown id: %v", err)
	}
	recs, _ := admin.List()
	if len(recs) != 2 || !recs[0].Revoked() || recs[1].Revoked() {
		t.Fatalf("List = %+v", recs)
	}
	if ErrUnauthenticated.Error() == "" || strings.Contains(ErrUnauthenticated.Error(), token) {
		t.Fatal("error echoes the token")
	}
}

func TestUnreadableTokenFileFailsClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	tok := OpenTokens(path)
	token, _, err := tok.Issue(exchange.Subject{Department: "mz-3301"}, "")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("{broken"), 0o600)
	if _, err := OpenTokens(path).Authenticate(token); exchange.KindOf(err) != exchange.Unavailable {
		t.Fatalf("broken token file: %v, want unavailable", err)
	}
}

func TestParseSubject(t *testing.T) {
	for in, ok := range map[string]bool{
		"mz-3301": true, "mz-3301/dibao-review": true, "gab": true,
		"": false, "MZ": false, "mz-3301/": false, "mz 3301": false, "mz-3301/a/b": false, "../etc": false,
	} {
		_, err := ParseSubject(in)
		if (err == nil) != ok {
			t.Errorf("ParseSubject(%q) err = %v", in, err)
		}
	}
}

// TestCertSubjectOrganizationMustMatch: a client certificate whose O or OU names another
// department or system than its common name is refused (as unauthenticated, the path
// every authentication failure takes to the audit log), not read by its CN alone.
func TestCertSubjectOrganizationMustMatch(t *testing.T) {
	cert := func(cn string, o, ou []string) [][]*x509.Certificate {
		return [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: cn, Organization: o, OrganizationalUnit: ou}}}}
	}
	tokens := OpenTokens(filepath.Join(t.TempDir(), "tokens.json"))
	for _, tt := range []struct {
		name    string
		chains  [][]*x509.Certificate
		refused string
	}{
		{"as govx pki issues it", cert("mz-3301/dibao-review", []string{"mz-3301"}, []string{"dibao-review"}), ""},
		{"CN only", cert("mz-3301/dibao-review", nil, nil), ""},
		{"another department in O", cert("mz-3301/x", []string{"gab"}, nil), `organization (O) "gab"`},
		{"a second O", cert("mz-3301/x", []string{"mz-3301", "gab"}, []string{"x"}), `organization (O) "gab"`},
		{"another system in OU", cert("mz-3301/x", []string{"mz-3301"}, []string{"steward"}), `organizational unit (OU) "steward"`},
	} {
		subj, err := tokens.Subject("", tt.chains)
		switch {
		case tt.refused == "" && (err != nil || subj.Department != "mz-3301"):
			t.Errorf("%s: %+v, %v", tt.name, subj, err)
		case tt.refused != "" && (exchange.KindOf(err) != exchange.Unauthenticated || !strings.Contains(err.Error(), tt.refused)):
			t.Errorf("%s: %+v, %v, want refused naming %s", tt.name, subj, err, tt.refused)
		}
	}
}

func TestSealOpen(t *testing.T) {
	s, err := NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	type payload struct {
		Expiring
		Dept string `json:"dept"`
	}
	in := payload{Expiring{time.Now().Add(time.Minute)}, "mz-3301"}
	sealed, err := s.Seal("ticket", in)
	if err != nil {
		t.Fatal(err)
	}
	var out payload
	if err := s.Open("ticket", sealed, &out); err != nil || out.Dept != "mz-3301" || out.Check(time.Now()) != nil {
		t.Fatalf("Open = %+v, %v", out, err)
	}
	if err := out.Check(time.Now().Add(2 * time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expiry: %v", err)
	}
	if err := s.Open("cursor", sealed, &out); !errors.Is(err, ErrBadSeal) {
		t.Fatal("a ticket opened as a cursor")
	}
	// Changing the payload (another department) breaks the MAC.
	forged, _ := (&Signer{key: []byte(strings.Repeat("x", 32))}).Seal("ticket", payload{in.Expiring, "rs-33"})
	if err := s.Open("ticket", forged, &out); !errors.Is(err, ErrBadSeal) {
		t.Fatal("a value sealed with another key opened")
	}
	p, m, _ := strings.Cut(sealed, ".")
	if err := s.Open("ticket", forged[:strings.Index(forged, ".")]+"."+m, &out); !errors.Is(err, ErrBadSeal) || p == "" {
		t.Fatal("a payload swapped under a valid MAC opened")
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
}

// TestSealHasOneEncoding: a sealed value (a ticket, a cursor) has exactly one spelling:
// flipping the unused low bits of a base64 part's last character is refused, not
// decoded to the same bytes.
func TestSealHasOneEncoding(t *testing.T) {
	s, err := NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal("ticket", map[string]string{"dept": "mz-3301"})
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sealed[len(sealed)-1]) // the MAC: 32 bytes, 2 unused bits
	twin := sealed[:len(sealed)-1] + string(alphabet[last^1])
	var out map[string]string
	if err := s.Open("ticket", twin, &out); !errors.Is(err, ErrBadSeal) {
		t.Errorf("a second spelling of a sealed value opened: %v", err)
	}
	if err := s.Open("ticket", sealed, &out); err != nil {
		t.Errorf("the sealed value itself: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	s, _ := NewSigner([]byte(strings.Repeat("k", 32)))
	good, _ := s.Seal("ticket", map[string]string{"a": "b"})
	f.Add(good)
	f.Add("")
	f.Add(".")
	f.Add("e30.AAAA")
	f.Fuzz(func(t *testing.T, sealed string) {
		var v map[string]any
		if err := s.Open("ticket", sealed, &v); err != nil {
			return
		}
		// Without the key, the only payload that can open is the one sealed with it.
		if len(v) != 1 || v["a"] != "b" {
			t.Fatalf("forged value opened: %q -> %v", sealed, v)
		}
	})
}
