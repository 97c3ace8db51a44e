package server

import (
	"bytes"
	"testing"

	"govx/exchange/mask"
	"govx/exchange/policy"
	"govx/exchange/service"
	"govx/exchange/store"
	"govx/schemas"
)

// TestAgreementMasksMaterialized: the store is told every mask the shipped agreements
// apply — the schema's defaults on the granted columns and the agreements' overrides —
// with the consumer's own key for the hash mask, so their pulls are served from masked
// columns computed once.
func TestAgreementMasksMaterialized(t *testing.T) {
	cat, err := schemas.Load()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(cat)
	if err != nil {
		t.Fatal(err)
	}
	defer pol.Close()
	tables := map[string]*store.Table{}
	for _, id := range []string{"population.person", "resource.land_parcel"} {
		d, _ := cat.Dataset(id)
		tables[id] = store.New(d)
		defer tables[id].Close()
	}
	svc, err := service.New(cat, tables, pol, nil, bytes.Repeat([]byte("s"), 32))
	if err != nil {
		t.Fatal(err)
	}
	x := &Exchange{policy: pol, tables: tables, svc: svc}
	ms := x.agreementMasks()
	// AGR-2026-0004: zj-3205 reads resource.land_parcel with holder_id_number hashed.
	found := false
	for _, m := range ms["resource.land_parcel"] {
		if m.Column == "holder_id_number" && m.Mask == mask.Hash {
			found = true
			if !bytes.Equal(m.Key, svc.MaskKey("zj-3205")) {
				t.Fatal("the hash mask is materialized under a key other than the consumer's")
			}
		}
	}
	if !found {
		t.Fatalf("the land parcel agreement's hash mask is not materialized: %+v", ms["resource.land_parcel"])
	}
	var person []string
	for _, m := range ms["population.person"] {
		person = append(person, m.Column+":"+m.Mask)
	}
	if len(person) == 0 {
		t.Fatal("no person agreement masks")
	}
	for id, t2 := range tables {
		if err := t2.MaterializeMasks(ms[id]); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
}
