# Tests of data.govx.sharing against the shipped demo data, at a fixed time. Run with
# `govx policy test` (or `opa test policies/`). Every rule and every reason code has a
# test here; docs/policies.md lists the codes.
package govx.sharing_test

import data.govx.sharing

now := "2026-11-26T12:00:00Z"

# The fields of each dataset as the exchange passes them from the schemas.
fields_of := {
	"population.person": [
		{"name": "id_number", "sensitivity": "sensitive_personal", "mask": "id_card"},
		{"name": "name", "sensitivity": "personal", "mask": "name"},
		{"name": "gender", "sensitivity": "personal", "mask": "null"},
		{"name": "birth_date", "sensitivity": "personal", "mask": "year"},
		{"name": "household_region", "sensitivity": "internal", "mask": "null"},
		{"name": "address", "sensitivity": "personal", "mask": "address"},
		{"name": "phone", "sensitivity": "personal", "mask": "phone"},
		{"name": "status", "sensitivity": "internal", "mask": "null"},
	],
	"legal_entity.organization": [
		{"name": "uscc", "sensitivity": "public", "mask": "hash"},
		{"name": "name", "sensitivity": "public", "mask": "null"},
		{"name": "legal_rep_id_number", "sensitivity": "sensitive_personal", "mask": "id_card"},
		{"name": "legal_rep_name", "sensitivity": "personal", "mask": "name"},
		{"name": "registered_capital", "sensitivity": "internal", "mask": "null"},
		{"name": "region_code", "sensitivity": "public", "mask": "null"},
		{"name": "status", "sensitivity": "public", "mask": "null"},
	],
	"resource.land_parcel": [
		{"name": "parcel_code", "sensitivity": "public", "mask": "hash"},
		{"name": "region_code", "sensitivity": "public", "mask": "null"},
		{"name": "land_use", "sensitivity": "public", "mask": "null"},
		{"name": "area_m2", "sensitivity": "public", "mask": "null"},
		{"name": "right_type", "sensitivity": "public", "mask": "null"},
		{"name": "holder_uscc", "sensitivity": "public", "mask": "hash"},
		{"name": "holder_id_number", "sensitivity": "sensitive_personal", "mask": "id_card"},
		{"name": "registered_on", "sensitivity": "public", "mask": "year"},
	],
	"economy.indicator": [
		{"name": "indicator_code", "sensitivity": "public", "mask": "null"},
		{"name": "region_code", "sensitivity": "public", "mask": "null"},
		{"name": "period", "sensitivity": "public", "mask": "null"},
		{"name": "value", "sensitivity": "public", "mask": "null"},
	],
	"license.certificate": [
		{"name": "licence_no", "sensitivity": "internal", "mask": "hash"},
		{"name": "licence_type", "sensitivity": "public", "mask": "null"},
		{"name": "holder_uscc", "sensitivity": "public", "mask": "hash"},
		{"name": "holder_id_number", "sensitivity": "sensitive_personal", "mask": "id_card"},
		{"name": "holder_name", "sensitivity": "personal", "mask": "name"},
		{"name": "issuer", "sensitivity": "public", "mask": "null"},
		{"name": "issuer_region", "sensitivity": "public", "mask": "null"},
		{"name": "issued_on", "sensitivity": "public", "mask": "year"},
		{"name": "valid_until", "sensitivity": "public", "mask": "year"},
		{"name": "status", "sensitivity": "public", "mask": "null"},
		{"name": "content_digest", "sensitivity": "internal", "mask": "null"},
		{"name": "issuer_signature", "sensitivity": "internal", "mask": "null"},
	],
}

# req builds an input the way exchange/policy does.
req(dept, system, action, dataset, columns, purpose) := {
	"subject": {"department": dept, "system": system},
	"action": action,
	"resource": {"dataset": dataset, "fields": object.get(fields_of, dataset, [])},
	"request": {"columns": columns, "purpose": purpose},
	"time": now,
}

at(inp, t) := object.union(inp, {"time": t})

dibao := req("mz-3301", "dibao-review", "read", "population.person", ["id_number", "name", "household_region", "birth_date"], "minimum-living-allowance-review")

codes(d) := [r.code | some r in d.reasons]

denied_with(d, code) if {
	not d.allow
	codes(d) == [code]
	d.columns == []
	d.masks == {}
}

# --- conditional sharing ----------------------------------------------------------------

test_conditional_read_with_agreement if {
	d := sharing.decision with input as dibao
	d.allow
	d.reasons == []
	d.agreement == "AGR-2026-0001"
	d.columns == ["id_number", "name", "household_region", "birth_date"]
	d.masks == {"id_number": "id_card"}
	d.row_filter == [{"column": "household_region", "op": "prefix", "value": "3301"}]
	d.max_rows == 100000
}

test_no_columns_gets_every_granted_column if {
	d := sharing.decision with input as req("mz-3301", "dibao-review", "read", "population.person", [], "minimum-living-allowance-review")
	d.allow
	d.columns == ["id_number", "name", "household_region", "birth_date"]
}

test_omitted_columns_and_purpose_keys if {
	inp := json.remove(dibao, ["request/columns"])
	d := sharing.decision with input as inp
	d.allow
	d.columns == ["id_number", "name", "household_region", "birth_date"]
	d2 := sharing.decision with input as json.remove(dibao, ["request/purpose"])
	denied_with(d2, "purpose_required")
}

test_column_outside_grant_denies_whole_request if {
	inp := req("mz-3301", "dibao-review", "read", "population.person", ["id_number", "phone", "address"], "minimum-living-allowance-review")
	d := sharing.decision with input as inp
	denied_with(d, "column_not_granted")
	contains(d.reasons[0].message, "phone, address")
	contains(d.reasons[0].message, "AGR-2026-0001")
}

test_no_agreement if {
	d := sharing.decision with input as req("mz-3201", "", "read", "resource.land_parcel", [], "housing-security-qualification")
	denied_with(d, "no_agreement")
	contains(d.reasons[0].message, "南京市民政局")
}

parcels := req("zj-3205", "housing-security", "read", "resource.land_parcel", ["parcel_code", "holder_id_number"], "housing-security-qualification")

test_system_not_granted if {
	d := sharing.decision with input as object.union(parcels, {"subject": {"system": "hr-portal"}})
	denied_with(d, "system_not_granted")
	contains(d.reasons[0].message, "hr-portal")
}

test_system_missing_is_not_the_named_system if {
	d := sharing.decision with input as json.remove(parcels, ["subject/system"])
	denied_with(d, "system_not_granted")
	contains(d.reasons[0].message, "(none)")
}

# mz-3301 also holds an agreement for any of its systems; another system falls to it.
test_other_system_falls_to_agreement_without_system if {
	d := sharing.decision with input as object.union(dibao, {"subject": {"system": "hr-portal"}})
	denied_with(d, "unknown_purpose")
}

test_purpose_required if {
	d := sharing.decision with input as object.union(dibao, {"request": {"purpose": ""}})
	denied_with(d, "purpose_required")
}

test_unknown_purpose if {
	d := sharing.decision with input as object.union(dibao, {"request": {"purpose": "marketing"}})
	denied_with(d, "unknown_purpose")
	contains(d.reasons[0].message, "minimum-living-allowance-review")
}

test_expired_agreement if {
	d := sharing.decision with input as req("rs-33", "", "read", "population.person", ["id_number"], "social-insurance-enrollment")
	denied_with(d, "agreement_expired")
	contains(d.reasons[0].message, "AGR-2025-0031")
}

test_not_yet_valid_agreement if {
	inp := req("mz-3301", "dibao-review", "read", "population.person", ["address"], "temporary-assistance")
	d := sharing.decision with input as inp
	denied_with(d, "agreement_not_yet_valid")
	contains(d.reasons[0].message, "2027-01-01")

	# valid_from 2027-01-01 is midnight China Standard Time, 16:00 UTC the day before.
	before := sharing.decision with input as at(inp, "2026-12-31T15:59:59.999999999Z")
	denied_with(before, "agreement_not_yet_valid")
	after := sharing.decision with input as at(inp, "2026-12-31T16:00:00Z")
	after.allow
	after.agreement == "AGR-2027-0001"
	after.masks == {"address": "address"}
}

test_valid_until_is_the_whole_last_day if {
	inp := req("mz-3201", "", "read", "population.person", ["name"], "temporary-assistance")
	last := sharing.decision with input as at(inp, "2026-12-31T23:59:59+08:00")
	last.allow
	last.masks == {}
	gone := sharing.decision with input as at(inp, "2027-01-01T00:00:00+08:00")
	denied_with(gone, "agreement_expired")
}

test_verify_only_agreement if {
	inp := req("wj-3302", "", "verify", "population.person", ["id_number", "name"], "birth-certificate-issuance")
	v := sharing.decision with input as inp
	v.allow
	v.agreement == "AGR-2026-0003"
	v.row_filter == [{"column": "household_region", "op": "prefix", "value": "3302"}]
	v.max_rows == 1000000 # the catalog's default: the agreement sets none

	every action in ["read", "lookup", "changes"] {
		r := sharing.decision with input as object.union(inp, {"action": action})
		denied_with(r, "verify_only")
		contains(r.reasons[0].message, "核验")
	}
}

test_action_not_granted if {
	d := sharing.decision with input as req("mz-3201", "", "changes", "population.person", [], "minimum-living-allowance-review")
	denied_with(d, "action_not_granted")
	contains(d.reasons[0].message, "read, lookup")
}

test_discover_needs_a_live_agreement_but_no_purpose if {
	d := sharing.decision with input as req("mz-3301", "dibao-review", "discover", "population.person", [], "")
	d.allow
	d.agreement == "AGR-2026-0001"
	n := sharing.decision with input as req("mz-3201", "", "discover", "resource.land_parcel", [], "")
	denied_with(n, "no_agreement")
}

test_agreement_mask_overrides_schema_default if {
	d := sharing.decision with input as parcels
	d.allow
	d.masks == {"holder_id_number": "hash"}
	d.row_filter == [{"column": "region_code", "op": "prefix", "value": "3205"}]
	d.max_rows == 50000
}

test_unmasked_grant if {
	d := sharing.decision with input as req("mz-3201", "", "read", "population.person", ["id_number", "name", "status"], "minimum-living-allowance-review")
	d.allow
	d.masks == {}
}

# --- unconditional sharing ----------------------------------------------------------------

test_unconditional_any_department_personal_masked if {
	d := sharing.decision with input as req("zj-3205", "", "read", "legal_entity.organization", [], "")
	d.allow
	d.agreement == ""
	count(d.columns) == 7
	d.masks == {"legal_rep_id_number": "id_card", "legal_rep_name": "name"}
	d.row_filter == [{"column": "region_code", "op": "prefix", "value": "3205"}]
	d.max_rows == 1000000
}

test_unconditional_agreement_unmasks if {
	inp := req("sw-33", "", "read", "legal_entity.organization", ["uscc", "legal_rep_id_number", "legal_rep_name"], "tax-registration-check")
	d := sharing.decision with input as inp
	d.allow
	d.agreement == "AGR-2026-0006"
	d.masks == {}
	d.row_filter == [{"column": "region_code", "op": "prefix", "value": "33"}]

	# Without the agreed purpose the base grant applies: masked.
	m := sharing.decision with input as object.union(inp, {"request": {"purpose": "curiosity"}})
	m.allow
	m.agreement == ""
	m.masks == {"legal_rep_id_number": "id_card", "legal_rep_name": "name"}
}

test_unconditional_verify_of_masked_columns_needs_an_agreement if {
	d := sharing.decision with input as req("zj-3205", "", "verify", "legal_entity.organization", ["legal_rep_id_number"], "")
	not d.allow
	d.reasons[0].code == "verify_masked"
	contains(d.reasons[0].message, "legal_rep_id_number")

	# Columns the caller may read unmasked anyway may be verified.
	p := sharing.decision with input as req("zj-3205", "", "verify", "legal_entity.organization", ["uscc", "status"], "")
	p.allow

	# An agreement that grants verify covers its masked columns.
	a := sharing.decision with input as req("sw-33", "", "verify", "legal_entity.organization", ["legal_rep_id_number"], "tax-registration-check")
	a.allow
	a.agreement == "AGR-2026-0006"
}

test_unconditional_ignores_agreement_for_other_action if {
	d := sharing.decision with input as req("sw-33", "", "discover", "legal_entity.organization", [], "")
	d.allow
	d.agreement == "AGR-2026-0006"
	e := sharing.decision with input as req("fgw-33", "", "lookup", "economy.indicator", [], "regional-economic-comparison")
	e.allow
	e.agreement == ""
	e.row_filter == [{"column": "region_code", "op": "prefix", "value": "33"}]
}

# --- region and level scope -------------------------------------------------------------

test_national_department_sees_all if {
	d := sharing.decision with input as req("tjj", "", "read", "economy.indicator", [], "")
	d.allow
	d.row_filter == []
}

test_province_department_sees_its_province if {
	d := sharing.decision with input as req("rs-33", "", "read", "population.person", ["id_number", "status"], "pension-qualification-review")
	d.allow
	d.row_filter == [{"column": "household_region", "op": "prefix", "value": "33"}]
	d.masks == {}
}

test_county_department_sees_its_county if {
	d := sharing.decision with input as req("gxq-3301", "", "read", "economy.indicator", [], "")
	d.allow
	d.row_filter == [{"column": "region_code", "op": "prefix", "value": "330108"}]
}

test_agreement_grants_wider_region if {
	d := sharing.decision with input as req("gxq-3301", "", "read", "resource.land_parcel", [], "industrial-land-review")
	d.allow
	d.row_filter == [{"column": "region_code", "op": "prefix", "value": "3301"}]
	n := sharing.decision with input as req("fgw-33", "", "read", "economy.indicator", [], "regional-economic-comparison")
	n.allow
	n.row_filter == []
}

# --- unknowns and not shared ------------------------------------------------------------

test_unknown_action if {
	d := sharing.decision with input as object.union(dibao, {"action": "delete"})
	denied_with(d, "unknown_action")
}

test_unknown_department if {
	d := sharing.decision with input as object.union(dibao, {"subject": {"department": "xx-0000"}})
	denied_with(d, "unknown_department")
	contains(d.reasons[0].message, "xx-0000")
}

test_unknown_dataset if {
	d := sharing.decision with input as req("mz-3301", "", "read", "population.pets", [], "")
	denied_with(d, "unknown_dataset")
}

test_unknown_column if {
	d := sharing.decision with input as req("tjj", "", "read", "economy.indicator", ["value", "shoe_size"], "")
	denied_with(d, "unknown_column")
	contains(d.reasons[0].message, "shoe_size")
}

test_none_always_denies_citing_legal_basis if {
	d := sharing.decision with input as req("gab", "", "read", "population.criminal_record", [], "")
	denied_with(d, "not_shared")
	contains(d.reasons[0].message, "刑事诉讼法")

	# Even an agreement cannot grant a none dataset.
	catalog := object.union(data.catalog, {"population.person": {"share": "none", "legal_basis": "测试依据"}})
	n := sharing.decision with input as dibao with data.catalog as catalog
	denied_with(n, "not_shared")
	contains(n.reasons[0].message, "测试依据")
}

test_unknown_share_type_denies if {
	catalog := {"population.person": {"share": "sometimes", "legal_basis": "", "region_column": "household_region", "max_rows": 0}}
	d := sharing.decision with input as dibao with data.catalog as catalog
	denied_with(d, "unknown_share_type")
}

test_missing_region_column_fails_closed if {
	catalog := {"economy.indicator": {"share": "unconditional", "legal_basis": "", "max_rows": 0}}
	d := sharing.decision with input as req("fgw-33", "", "read", "economy.indicator", [], "") with data.catalog as catalog
	denied_with(d, "no_grant")

	# A national department needs no region column.
	n := sharing.decision with input as req("tjj", "", "read", "economy.indicator", [], "") with data.catalog as catalog
	n.allow
	n.max_rows == 0
}

test_bad_time_never_allows if {
	d := sharing.decision with input as at(dibao, "yesterday")
	not d.allow
}

test_discover_denials if {
	early := sharing.decision with input as at(req("mz-3301", "dibao-review", "discover", "population.person", [], ""), "2025-06-01T00:00:00Z")
	denied_with(early, "agreement_not_yet_valid")
	cols := sharing.decision with input as req("mz-3301", "dibao-review", "discover", "population.person", ["phone"], "")
	denied_with(cols, "column_not_granted")
}

# --- the e-licence register ---------------------------------------------------------------

test_licence_lookup_nationwide_holder_unmasked if {
	d := sharing.decision with input as req("mz-3301", "dibao-review", "lookup", "license.certificate", ["licence_no", "licence_type", "holder_id_number", "holder_name", "status"], "minimum-living-allowance-review")
	d.allow
	d.agreement == "AGR-2026-0009"
	d.row_filter == []
	d.masks == {}
}

test_licence_lookup_never_returns_the_digest if {
	d := sharing.decision with input as req("mz-3301", "dibao-review", "lookup", "license.certificate", ["licence_no", "content_digest"], "minimum-living-allowance-review")
	denied_with(d, "column_not_granted")
	contains(d.reasons[0].message, "content_digest")
}

test_licence_verify_only_refuses_lookup if {
	v := sharing.decision with input as req("zj-3205", "housing-security", "verify", "license.certificate", ["licence_no", "content_digest", "status"], "housing-security-qualification")
	v.allow
	v.agreement == "AGR-2026-0010"
	l := sharing.decision with input as req("zj-3205", "housing-security", "lookup", "license.certificate", ["licence_no", "status"], "housing-security-qualification")
	denied_with(l, "verify_only")
}

test_licence_verify_scoped_to_issuer_region if {
	d := sharing.decision with input as req("wj-3302", "", "verify", "license.certificate", ["licence_no", "content_digest"], "medical-practice-supervision")
	d.allow
	d.row_filter == [{"column": "issuer_region", "op": "prefix", "value": "3302"}]
	g := sharing.decision with input as req("gxq-3301", "", "verify", "license.certificate", ["licence_no", "content_digest"], "enterprise-service-window")
	g.row_filter == [{"column": "issuer_region", "op": "prefix", "value": "3301"}]
}

test_licence_needs_an_agreement if {
	d := sharing.decision with input as req("rs-33", "", "lookup", "license.certificate", ["licence_no"], "pension-qualification-review")
	denied_with(d, "no_agreement")
}

# --- aggregate-only access ----------------------------------------------------------------

stats_people := req("tj-33", "", "aggregate", "population.person", ["household_region", "gender"], "population-statistics")

test_aggregate_grants_terms_without_masks if {
	d := sharing.decision with input as stats_people
	d.allow
	d.agreement == "AGR-2026-0016"
	d.columns == ["household_region", "gender"]
	d.masks == {}
	d.row_filter == [{"column": "household_region", "op": "prefix", "value": "33"}]
	d.aggregate == {"group_by": ["household_region", "gender", "status"], "measures": ["count"], "min_group_size": 10}
}

test_aggregate_agreement_grants_no_read if {
	d := sharing.decision with input as req("tj-33", "", "read", "population.person", ["household_region"], "population-statistics")
	denied_with(d, "action_not_granted")
}

test_aggregate_column_outside_agreement if {
	d := sharing.decision with input as req("tj-33", "", "aggregate", "population.person", ["household_region", "birth_date"], "population-statistics")
	denied_with(d, "column_not_granted")
	contains(d.reasons[0].message, "birth_date")
}

test_read_agreement_grants_no_aggregate if {
	d := sharing.decision with input as json.patch(dibao, [{"op": "replace", "path": "/action", "value": "aggregate"}])
	denied_with(d, "action_not_granted")
}

test_aggregate_only_discover_carries_terms if {
	d := sharing.decision with input as req("tj-33", "", "discover", "population.person", [], "")
	d.allow
	d.aggregate == {"group_by": ["household_region", "gender", "status"], "measures": ["count"], "min_group_size": 10}
	r := sharing.decision with input as req("mz-3301", "dibao-review", "discover", "population.person", [], "")
	r.allow
	r.aggregate == {}
}

test_aggregate_other_actions_carry_no_terms if {
	d := sharing.decision with input as dibao
	d.aggregate == {}
}

test_aggregate_min_group_size_from_agreement if {
	terms := {"group_by": ["region_code", "land_use", "right_type"], "measures": ["count"], "min_group_size": 25}
	agr := object.union(data.agreements_by_key["tj-33"]["resource.land_parcel"][0], {"aggregate": terms})
	d := sharing.decision with input as req("tj-33", "", "aggregate", "resource.land_parcel", ["land_use"], "land-resource-statistics")
		with data.agreements_by_key["tj-33"]["resource.land_parcel"] as [agr]
	d.allow
	d.aggregate.min_group_size == 25
}

indicator_stats := {
	"id": "AGR-T-1", "system": "", "purpose_set": {"regional-economic-comparison": true}, "action_set": {"aggregate": true},
	"column_set": {"region_code": true, "value": true}, "unmasked_set": {}, "masks": {}, "region": "", "max_rows": 0,
	"columns": ["region_code", "value"], "actions": ["aggregate"], "purposes": ["regional-economic-comparison"],
	"valid_from_ns": 0, "valid_until_ns": 9000000000000000000,
	"aggregate": {"group_by": ["region_code"], "measures": ["sum:value"], "min_group_size": 0},
}

test_aggregate_unconditional_needs_an_agreement if {
	inp := req("fgw-33", "", "aggregate", "economy.indicator", ["region_code"], "regional-economic-comparison")
	n := sharing.decision with input as inp
	denied_with(n, "no_agreement")
	d := sharing.decision with input as inp with data.agreements_by_key["fgw-33"]["economy.indicator"] as [indicator_stats]
	d.allow
	d.aggregate == {"group_by": ["region_code"], "measures": ["sum:value"], "min_group_size": 10}
	wide := json.patch(inp, [{"op": "replace", "path": "/request/columns", "value": ["period"]}])
	e := sharing.decision with input as wide with data.agreements_by_key["fgw-33"]["economy.indicator"] as [indicator_stats]
	denied_with(e, "column_not_granted")
}
