package flight

import (
	"encoding/json"
	"io"
	"slices"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/flight"

	"govx/exchange"
	"govx/exchange/service/servicetest"
)

// doAction runs a Flight action with a JSON body and returns the error of the call or
// of reading its results.
func doAction(c flight.Client, token, typ string, body any) error {
	_, err := actionResult(c, token, typ, body)
	return err
}

func actionResult(c flight.Client, token, typ string, body any) ([]byte, error) {
	b, _ := json.Marshal(body)
	stream, err := c.DoAction(as(token), &flight.Action{Type: typ, Body: b})
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = r.GetBody()
	}
}

// TestSubjectViewAndLicenceVerifyOverFlight: the subject views and licence verification
// answer over Flight's DoAction exactly as the service does, from a plain Flight client.
func TestSubjectViewAndLicenceVerifyOverFlight(t *testing.T) {
	f := servicetest.New(t, servicetest.Config{Registers: true})
	_, lis := serve(t, f, "127.0.0.1:0")
	c := raw(t, lis.Addr().String())
	r := f.Registers
	b, err := actionResult(c, f.Token(t, "mz-3301/dibao-review"), exchange.ActionTypeSubjectPerson, exchange.SubjectCmd{ID: r.Person, Purpose: dibao})
	if err != nil {
		t.Fatal(err)
	}
	var v exchange.SubjectView
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, p := range v.Parts {
		if !p.Withheld && len(p.Records) == 1 {
			parts = append(parts, p.Part)
		}
	}
	if !slices.Equal(parts, []string{exchange.PartPerson, exchange.PartOrganizations, exchange.PartParcels, exchange.PartLicences}) {
		t.Errorf("parts returned over Flight: %v (%s)", parts, b)
	}
	b, err = actionResult(c, f.Token(t, "gxq-3301/window"), exchange.ActionTypeLicenceVerify,
		exchange.LicenceVerifyCmd{LicenceNo: r.OrgLicence, Digest: r.Digests[r.OrgLicence], Purpose: "enterprise-service-window"})
	if err != nil {
		t.Fatal(err)
	}
	var lv exchange.LicenceVerdict
	if err := json.Unmarshal(b, &lv); err != nil || lv.Result != exchange.LicenceValid || lv.Signature != exchange.SignatureHolds {
		t.Errorf("licence verification over Flight: %s, %v", b, err)
	}
	stream, err := c.ListActions(as(f.Token(t, "gxq-3301/window")), &flight.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for a, err := stream.Recv(); err == nil; a, err = stream.Recv() {
		types = append(types, a.GetType())
	}
	if !slices.Equal(types, []string{exchange.ActionTypeSubjectPerson, exchange.ActionTypeSubjectOrganization, exchange.ActionTypeLicenceVerify}) {
		t.Errorf("ListActions: %v", types)
	}
}
