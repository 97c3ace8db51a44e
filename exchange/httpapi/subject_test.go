package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"govx/exchange"
	"govx/exchange/service/servicetest"
)

// TestSubjectViewAndLicenceVerifyOverHTTP: a department granted fewer registers gets
// the granted parts and the reasons for the rest; licence verification answers without
// values and fails a tampered digest.
func TestSubjectViewAndLicenceVerifyOverHTTP(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Registers: true})
	a := serve(t, f, "127.0.0.1:0")
	r := f.Registers
	resp := a.do(t, req{path: "/v1/subjects/person", token: f.Token(t, "sw-33/tax"),
		body: map[string]any{"id": r.Person, "purpose": "tax-registration-check", "case_ref": "330000-2026-1"}})
	var v exchange.SubjectView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	got := map[string]string{}
	for _, p := range v.Parts {
		got[p.Part] = "returned"
		if p.Withheld {
			got[p.Part] = p.Reasons[0].Code
		}
	}
	want := map[string]string{exchange.PartPerson: "no_agreement", exchange.PartOrganizations: "returned",
		exchange.PartParcels: "no_agreement", exchange.PartLicences: "filter_not_granted"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("part %s: %s, want %s", k, got[k], w)
		}
	}
	gxq := f.Token(t, "gxq-3301/window")
	for digest, want := range map[string]string{r.Digests[r.OrgLicence]: exchange.LicenceValid, "0" + r.Digests[r.OrgLicence][1:]: exchange.LicenceNotValid} {
		resp := a.do(t, req{path: "/v1/licenses/verify", token: gxq,
			body: map[string]any{"licence_no": r.OrgLicence, "digest": digest, "purpose": "enterprise-service-window"}})
		var raw map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %v", resp.StatusCode, err)
		}
		resp.Body.Close()
		if raw["result"] != want || len(raw) != 5 {
			t.Errorf("verify with digest %s…: %v, want result %s and nothing of the licence", digest[:8], raw, want)
		}
	}
}
