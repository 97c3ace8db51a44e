package service_test

import (
	"context"
	"maps"
	"slices"
	"testing"

	"govx/exchange"
	"govx/exchange/audit"
	"govx/exchange/service"
	"govx/exchange/service/servicetest"
)

const dibao = "minimum-living-allowance-review"

func caller(subject string) service.Caller {
	dept, sys, _ := cut(subject)
	return service.Caller{Subject: exchange.Subject{Department: dept, System: sys}, ClientAddr: "127.0.0.1:1"}
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func view(t *testing.T, f *servicetest.Fixture, subject, kind, id, purpose string) *exchange.SubjectView {
	t.Helper()
	var got *exchange.SubjectView
	err := f.Svc.Subject(context.Background(), caller(subject), kind, exchange.SubjectCmd{ID: id, Purpose: purpose, CaseRef: "case-1"},
		func(v *exchange.SubjectView) (int64, error) { got = v; return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func part(t *testing.T, v *exchange.SubjectView, name string) exchange.SubjectPart {
	t.Helper()
	for _, p := range v.Parts {
		if p.Part == name {
			return p
		}
	}
	t.Fatalf("no part %s in %+v", name, v)
	return exchange.SubjectPart{}
}

func keysOf(p exchange.SubjectPart, col string) []string {
	var out []string
	for _, r := range p.Records {
		out = append(out, r[col].(string))
	}
	return out
}

func lookupAs(t *testing.T, f *servicetest.Fixture, subject, dataset, key string) map[string]any {
	t.Helper()
	var got map[string]any
	kj := []byte(`"` + key + `"`)
	if err := f.Svc.Lookup(context.Background(), caller(subject), dataset, exchange.LookupCmd{Key: kj, Purpose: dibao},
		func(rec map[string]any) (int64, error) { got = rec; return 1, nil }); err != nil {
		t.Fatalf("lookup %s %s: %v", dataset, key, err)
	}
	return got
}

// TestSubjectViewAllParts: a department granted all four registers gets all four parts
// of a person who is a legal representative and holds a parcel and a licence, each
// record exactly as a lookup of it returns it; every part is audited under one request
// id naming the person, and completed.
func TestSubjectViewAllParts(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Registers: true})
	r := f.Registers
	v := view(t, f, "mz-3301/dibao-review", exchange.SubjectPerson, r.Person, dibao)
	if len(v.Parts) != 4 {
		t.Fatalf("parts %+v", v.Parts)
	}
	for _, p := range v.Parts {
		if p.Withheld || p.Agreement == "" {
			t.Errorf("part %s withheld: %+v", p.Part, p)
		}
	}
	for _, tc := range []struct {
		part, dataset, key string
	}{
		{exchange.PartPerson, "population.person", r.Person},
		{exchange.PartOrganizations, "legal_entity.organization", r.Org},
		{exchange.PartParcels, "resource.land_parcel", r.Parcel},
		{exchange.PartLicences, "license.certificate", r.Licence},
	} {
		p := part(t, v, tc.part)
		if len(p.Records) != 1 {
			t.Fatalf("%s: %d records, want 1: %+v", tc.part, len(p.Records), p.Records)
		}
		if want := lookupAs(t, f, "mz-3301/dibao-review", tc.dataset, tc.key); !maps.Equal(p.Records[0], want) {
			t.Errorf("%s: %v, a lookup returns %v", tc.part, p.Records[0], want)
		}
	}
	if id := part(t, v, exchange.PartPerson).Records[0]["id_number"]; id == r.Person {
		t.Errorf("the person's id_number is not masked as the agreement says: %v", id)
	}
	var decisions, completes int
	for _, ev := range f.Events(t) {
		if ev.RequestID != v.RequestID {
			continue
		}
		if ev.Action != "lookup" || !slices.Contains(ev.Keys, r.Person) || ev.CaseRef != "case-1" {
			t.Errorf("event %+v does not name the subject view's person, action and case", ev)
		}
		switch ev.Kind {
		case audit.KindDecision:
			decisions++
			if ev.Decision != audit.Allow {
				t.Errorf("decision %+v", ev)
			}
		case audit.KindComplete:
			completes++
		}
	}
	f.Svc.Wait()
	completes = 0
	for _, ev := range f.Events(t) {
		if ev.RequestID == v.RequestID && ev.Kind == audit.KindComplete && ev.Rows == 1 && ev.Status == audit.StatusOK {
			completes++
		}
	}
	if decisions != 4 || completes != 4 {
		t.Errorf("%d decision and %d complete events under the view's request id, want 4 and 4", decisions, completes)
	}
}

// TestSubjectViewWithholdsUngrantedParts: a department granted fewer registers gets
// only those parts; the rest are withheld with the policy's reasons and audited as
// denials under the same request id.
func TestSubjectViewWithholdsUngrantedParts(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Registers: true})
	r := f.Registers
	v := view(t, f, "sw-33/tax", exchange.SubjectPerson, r.Person, "tax-registration-check")
	want := map[string]string{
		exchange.PartPerson:        "no_agreement",
		exchange.PartParcels:       "no_agreement",
		exchange.PartLicences:      "filter_not_granted", // holder_id_number is not granted
		exchange.PartOrganizations: "",
	}
	for _, p := range v.Parts {
		code := want[p.Part]
		switch {
		case code == "" && (p.Withheld || !slices.Equal(keysOf(p, "uscc"), []string{r.Org})):
			t.Errorf("%s: %+v, want the organization %s", p.Part, p, r.Org)
		case code != "" && (!p.Withheld || len(p.Records) != 0 || len(p.Reasons) == 0 || p.Reasons[0].Code != code || p.Reasons[0].Message == ""):
			t.Errorf("%s: %+v, want withheld with reason %s", p.Part, p, code)
		}
	}
	denied := 0
	for _, ev := range f.Events(t) {
		if ev.RequestID == v.RequestID && ev.Kind == audit.KindDecision && ev.Decision == audit.Deny {
			denied++
		}
	}
	if denied != 3 {
		t.Errorf("%d denials audited under the view's request id, want 3", denied)
	}
}

// TestSubjectViewOrganization: an organization's view links its legal representative
// through legal_rep_id_number; a department that may not see that column unmasked gets
// the part withheld (link_not_granted), not a person it could not have found.
func TestSubjectViewOrganization(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Registers: true})
	r := f.Registers
	v := view(t, f, "mz-3301/dibao-review", exchange.SubjectOrganization, r.Org, dibao)
	if p := part(t, v, exchange.PartOrganization); p.Withheld || !slices.Equal(keysOf(p, "uscc"), []string{r.Org}) {
		t.Errorf("organization: %+v", p)
	}
	rep := part(t, v, exchange.PartLegalRepresentative)
	if rep.Withheld || len(rep.Records) != 1 || !maps.Equal(rep.Records[0], lookupAs(t, f, "mz-3301/dibao-review", "population.person", r.Person)) {
		t.Errorf("legal representative: %+v", rep)
	}
	// The tax bureau sees the organization but not the person register.
	v = view(t, f, "sw-33/tax", exchange.SubjectOrganization, r.Org, "tax-registration-check")
	if p := part(t, v, exchange.PartLegalRepresentative); !p.Withheld || p.Reasons[0].Code != "no_agreement" {
		t.Errorf("legal representative for sw-33: %+v", p)
	}
	// Nanjing's civil affairs may read persons but not organizations: the link is not
	// followed.
	v = view(t, f, "mz-3201", exchange.SubjectOrganization, r.Org, dibao)
	if p := part(t, v, exchange.PartLegalRepresentative); !p.Withheld || p.Reasons[0].Code != "link_not_granted" {
		t.Errorf("legal representative without the organization part: %+v", p)
	}
}

// TestSubjectViewFollowsTheRegisters: revoking a licence at the source changes both the
// subject view and licence verification; a person who moved out of the caller's region
// disappears from the caller's view (the part answers as for nobody).
func TestSubjectViewFollowsTheRegisters(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Registers: true})
	r := f.Registers
	verify := func() *exchange.LicenceVerdict {
		t.Helper()
		v, err := f.Svc.VerifyLicence(context.Background(), caller("zj-3205/housing-security"),
			exchange.LicenceVerifyCmd{LicenceNo: r.Licence, Digest: r.Digests[r.Licence], Purpose: "housing-security-qualification"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := verify(); v.Result != exchange.LicenceValid || !v.DigestMatch || v.Signature != exchange.SignatureHolds {
		t.Fatalf("before: %+v", v)
	}
	lic := maps.Clone(r.Records["license.certificate"][r.Licence])
	lic["status"] = "revoked"
	f.Apply(t, f.Tables["license.certificate"], lic)
	if v := verify(); v.Result != exchange.LicenceRevoked || v.Signature != exchange.SignatureHolds {
		t.Errorf("after the revocation: %+v", v)
	}
	v := view(t, f, "mz-3301/dibao-review", exchange.SubjectPerson, r.Person, dibao)
	if p := part(t, v, exchange.PartLicences); len(p.Records) != 1 || p.Records[0]["status"] != "revoked" {
		t.Errorf("licences after the revocation: %+v", p)
	}
	snap := f.Tables["population.person"].Snapshot()
	person, _ := snap.Lookup(r.Person)
	snap.Release()
	person["household_region"] = "320102" // moved to Nanjing
	f.Apply(t, f.Tables["population.person"], person)
	v = view(t, f, "mz-3301/dibao-review", exchange.SubjectPerson, r.Person, dibao)
	if p := part(t, v, exchange.PartPerson); p.Withheld || len(p.Records) != 0 {
		t.Errorf("the person moved out of Hangzhou is still in mz-3301's view: %+v", p)
	}
}

// TestVerifyLicence: a genuine copy of a licence in force is valid; a tampered digest,
// or a register record altered without the issuer's signature, is not; none of the
// licence's values is returned.
func TestVerifyLicence(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Registers: true})
	r := f.Registers
	gxq := caller("gxq-3301/window")
	verify := func(no, digest string) *exchange.LicenceVerdict {
		t.Helper()
		v, err := f.Svc.VerifyLicence(context.Background(), gxq, exchange.LicenceVerifyCmd{LicenceNo: no, Digest: digest, Purpose: "enterprise-service-window"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	good := r.Digests[r.OrgLicence]
	if v := verify(r.OrgLicence, good); v.Result != exchange.LicenceValid || !v.DigestMatch || v.Signature != exchange.SignatureHolds || v.RequestID == "" {
		t.Errorf("genuine copy: %+v", v)
	}
	tampered := []byte(good)
	tampered[10] ^= 1
	if v := verify(r.OrgLicence, string(tampered)); v.Result != exchange.LicenceNotValid || v.DigestMatch {
		t.Errorf("tampered digest: %+v", v)
	}
	lic := maps.Clone(r.Records["license.certificate"][r.OrgLicence])
	lic["holder_name"] = "另一家公司"
	f.Apply(t, f.Tables["license.certificate"], lic)
	if v := verify(r.OrgLicence, good); v.Result != exchange.LicenceNotValid || !v.DigestMatch || v.Signature != exchange.SignatureDoesNotHold {
		t.Errorf("register record altered after signing: %+v", v)
	}
	// Not in scope, or unknown: not found, alike.
	_, err := f.Svc.VerifyLicence(context.Background(), gxq, exchange.LicenceVerifyCmd{LicenceNo: "YYZZ-000000-999999", Digest: good, Purpose: "enterprise-service-window"})
	if xe, ok := err.(*exchange.Error); !ok || xe.Code != "not_found" {
		t.Errorf("unknown licence: %v", err)
	}
	// A department without a verify agreement is denied, audited.
	_, err = f.Svc.VerifyLicence(context.Background(), caller("mz-3201"), exchange.LicenceVerifyCmd{LicenceNo: r.OrgLicence, Digest: good, Purpose: dibao})
	if xe, ok := err.(*exchange.Error); !ok || xe.Code != "permission_denied" {
		t.Errorf("no agreement: %v", err)
	}
	if _, err := service.ParseLicenceVerify([]byte(`{"licence_no":"X","digest":"abc","purpose":"p"}`)); err == nil {
		t.Error("a short digest was accepted")
	}
}
