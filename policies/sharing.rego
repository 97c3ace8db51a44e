# Sharing policy of the govx exchange: decides one request (never one row) of a
# department system for a dataset. The exchange evaluates data.govx.sharing.decision.
#
# Data (policies/*.yaml, loaded by the Go package policies):
#   data.catalog[dataset]                 share type, legal basis, region column, row cap,
#                                         smallest aggregate group (min_group_size)
#   data.departments[code]                name, region code (GB/T 2260), level
#   data.agreements_by_key[dept][dataset] that department's agreements for that dataset,
#                                         sorted by id
# The agreements are indexed by department and dataset in Go at load time, so that a
# decision looks them up by key instead of scanning every agreement; each also carries
# its lists as sets (purpose_set, action_set, column_set, unmasked_set: objects mapping
# each member to true) and its validity in Unix nanoseconds (valid_from_ns inclusive,
# valid_until_ns exclusive), so that every test on the allow path is one lookup.
#
# Every denial carries one reason with a stable code; docs/policies.md lists them.
package govx.sharing

actions := {"read", "changes", "lookup", "verify", "discover", "aggregate"}

# Sensitivities that are only ever shared masked, unless an agreement grants them
# unmasked.
masked_sensitivities := {"personal", "sensitive_personal"}

department := data.departments[input.subject.department]

entry := data.catalog[input.resource.dataset]

now := time.parse_rfc3339_ns(input.time)

# The exchange always sends these; the defaults keep the policy whole for inputs
# written by hand, where they may be omitted.
default purpose := ""

purpose := input.request.purpose

default requested := []

requested := input.request.columns

default system := ""

system := input.subject.system

fields := {f.name: f | some f in input.resource.fields}

unknown_columns := [c | some c in requested; not fields[c]]

# --- the department's agreements for the dataset ----------------------------------------

candidates := c if {
	c := data.agreements_by_key[input.subject.department][input.resource.dataset]
} else := []

# An agreement naming no system serves every system of its department.
systems := {"", system}

covers(a) if every c in requested { a.column_set[c] }

# The agreements that apply to this request, first by id: right system and purpose,
# live, granting the action. One pass, each test a key lookup or a comparison: this is
# the allow path and it must stay cheap (no function calls with several definitions).
applicable := [a |
	some a in candidates
	systems[a.system]
	a.purpose_set[purpose]
	a.valid_from_ns <= now
	now < a.valid_until_ns
	a.action_set[input.action]
] if input.action != "discover"

# Discovering a dataset (listing it in the caller's catalog) needs a live agreement, with
# any action and for any purpose: it returns no data.
applicable := [a |
	some a in candidates
	systems[a.system]
	a.valid_from_ns <= now
	now < a.valid_until_ns
] if input.action == "discover"

# The agreement that applies. On a conditional dataset it grants the request and must
# cover every column asked for; on an unconditional one it may unmask columns, widen the
# region or set a row cap.
agreement := [a | some a in applicable; covers(a)][0] if entry.share == "conditional"

agreement := applicable[0] if {
	entry.share == "unconditional"
	input.action != "aggregate"
}

# Aggregates need an agreement granting them on any dataset: its terms say what may be
# grouped and measured, and the smallest group shown.
agreement := [a | some a in applicable; covers(a)][0] if {
	entry.share == "unconditional"
	input.action == "aggregate"
}

terms := agreement if {
	agreement
} else := {"id": "", "unmasked_set": {}, "masks": {}, "region": "", "max_rows": 0}

# Narrowing step by step, for the reason of a denial only.
by_system := [a | some a in candidates; systems[a.system]]

by_purpose := by_system if {
	input.action == "discover"
} else := [a | some a in by_system; a.purpose_set[purpose]]

live := [a | some a in by_purpose; a.valid_from_ns <= now; now < a.valid_until_ns]

by_action := live if {
	input.action == "discover"
} else := [a | some a in live; a.action_set[input.action]]

# --- denials: the first that applies is the reason --------------------------------------

reason(code, message) := {"code": code, "message": message}

denial := reason("unknown_action", sprintf("action %v is not one of read, changes, lookup, verify, discover, aggregate", [input.action])) if {
	not actions[input.action]
} else := reason("unknown_department", sprintf("department %v is not registered with the exchange; the data steward adds departments to policies/departments.yaml", [input.subject.department])) if {
	not department
} else := reason("unknown_dataset", sprintf("dataset %v is not in the sharing catalog (policies/catalog.yaml), so it is not shared", [input.resource.dataset])) if {
	not entry
} else := reason("not_shared", sprintf("dataset %v is not shared (不予共享); legal basis: %v", [input.resource.dataset, entry.legal_basis])) if {
	entry.share == "none"
} else := reason("unknown_column", sprintf("dataset %v has no column %v", [input.resource.dataset, concat(", ", unknown_columns)])) if {
	count(unknown_columns) > 0
} else := r if {
	entry.share == "conditional"
	r := conditional_denial
} else := r if {
	entry.share == "unconditional"
	input.action == "aggregate"
	r := aggregate_denial
} else := reason("verify_masked", sprintf("verifying %v would reveal values %v shares only masked; verifying them needs an agreement (共享协议) that grants verify", [concat(", ", masked_verify_columns), input.resource.dataset])) if {
	entry.share == "unconditional"
	verify_masked
} else := reason("unknown_share_type", sprintf("dataset %v has share type %v, which the policy does not know; deny by default", [input.resource.dataset, entry.share])) if {
	not entry.share in {"conditional", "unconditional"}
}

conditional_denial := reason("no_agreement", sprintf("%v (%v) holds no sharing agreement (共享协议) for %v, which is shared conditionally (有条件共享); apply to the data steward for one", [department.name, input.subject.department, input.resource.dataset])) if {
	count(candidates) == 0
} else := reason("system_not_granted", sprintf("the agreements of %v for %v name other systems than %v", [input.subject.department, input.resource.dataset, system_label])) if {
	count(by_system) == 0
} else := reason("purpose_required", sprintf("%v is shared conditionally (有条件共享): state the purpose of the request", [input.resource.dataset])) if {
	input.action != "discover"
	purpose == ""
} else := reason("unknown_purpose", sprintf("purpose %v is not agreed for %v on %v; agreed purposes: %v", [purpose, input.subject.department, input.resource.dataset, concat(", ", agreed_purposes)])) if {
	count(by_purpose) == 0
} else := reason("agreement_not_yet_valid", sprintf("agreement %v becomes valid on %v", [a.id, a.valid_from])) if {
	count(live) == 0
	a := [x | some x in by_purpose; now < x.valid_from_ns][0]
} else := reason("agreement_expired", sprintf("agreement %v expired after %v; renew it with the data steward", [a.id, a.valid_until])) if {
	count(live) == 0
	a := by_purpose[0]
} else := r if {
	r := verb_denial
}

verb_denial := reason("verify_only", sprintf("agreement %v allows verification (核验) only; action %v would return values", [a.id, input.action])) if {
	count(by_action) == 0
	a := live[0]
	a.actions == ["verify"]
} else := reason("action_not_granted", sprintf("agreement %v does not grant action %v; granted: %v", [a.id, input.action, concat(", ", a.actions)])) if {
	count(by_action) == 0
	a := live[0]
} else := reason("column_not_granted", sprintf("columns outside agreement %v: %v; the whole request is denied, ask only for granted columns or for none", [a.id, concat(", ", outside)])) if {
	a := by_action[0]
	outside := [c | some c in requested; not a.column_set[c]]
	count(outside) > 0
}

aggregate_denial := reason("no_agreement", sprintf("%v (%v) holds no agreement (共享协议) granting aggregate on %v; aggregates are answered only under one, which names the groups and measures", [department.name, input.subject.department, input.resource.dataset])) if {
	count(by_action) == 0
} else := reason("column_not_granted", sprintf("columns outside agreement %v: %v; the whole request is denied, ask only for granted columns or for none", [a.id, concat(", ", outside)])) if {
	a := by_action[0]
	outside := [c | some c in requested; not a.column_set[c]]
	count(outside) > 0
}

agreed_purposes := sort({p | some a in by_system; some p in a.purposes})

system_label := system if {
	system != ""
} else := "(none)"

# --- the grant --------------------------------------------------------------------------

granted_columns := requested if {
	count(requested) > 0
} else := agreement.columns if {
	entry.share == "conditional"
} else := [f.name | some f in input.resource.fields]

# A column is masked when the agreement says how, or when it is personal and the
# agreement does not grant it unmasked; the mask is the agreement's or the field's
# default from the schema.
masks := object.union(default_masks, agreed_masks)

default_masks := {c: fields[c].mask |
	some c in granted_columns
	not terms.unmasked_set[c]
	masked_sensitivities[fields[c].sensitivity]
}

agreed_masks := {c: m | some c in granted_columns; m := terms.masks[c]}

scope := terms.region if {
	terms.region != ""
} else := object.get(department, "region", "")

# region_prefix turns a GB/T 2260 code into the prefix its rows share: a province
# (330000) "33", a city (330100) "3301", a county (330106) itself; "" or "000000" is
# nationwide.
region_prefix(code) := "" if {
	code in {"", "000000"}
} else := substring(code, 0, 2) if {
	endswith(code, "0000")
} else := substring(code, 0, 4) if {
	endswith(code, "00")
} else := code

prefix := region_prefix(scope)

row_filter := [] if {
	prefix == ""
} else := [{"column": entry.region_column, "op": "prefix", "value": prefix}]

max_rows := terms.max_rows if {
	terms.max_rows > 0
} else := object.get(entry, "max_rows", 0)

grant_ok if {
	entry.share == "unconditional"
	input.action != "aggregate"
	count(unknown_columns) == 0
	not verify_masked
}

grant_ok if {
	entry.share == "unconditional"
	input.action == "aggregate"
	agreement
}

# Verifying claims against a value the caller may see only masked would reveal it one
# guess at a time (a birth year in a few hundred tries): on an unconditional dataset,
# verify covers masked columns only under an agreement that grants verify.
masked_verify_columns := [c | some c in granted_columns; masks[c]] if {
	input.action == "verify"
	not agreement
}

verify_masked if count(masked_verify_columns) > 0

# The agreement covers every column asked for, and policy check keeps an agreement's
# columns within the dataset's schema (the engine rejects any other column too).
grant_ok if {
	entry.share == "conditional"
	agreement
}

granted := {
	"allow": true,
	"reasons": [],
	"columns": granted_columns,
	"masks": granted_masks,
	"row_filter": row_filter,
	"max_rows": max_rows,
	"agreement": terms.id,
	"aggregate": aggregate_terms,
} if {
	actions[input.action]
	department
	grant_ok
}

# An aggregate returns counts and sums over groups of at least min_group_size rows, never
# a record's values: nothing in it is masked. Its terms come from the agreement; the
# exchange plans the query against them (exchange/aggregate).
granted_masks := {} if {
	input.action == "aggregate"
} else := masks

aggregate_terms := {
	"group_by": terms.aggregate.group_by,
	"measures": terms.aggregate.measures,
	"min_group_size": min_group_size,
} if {
	input.action == "aggregate"
} else := {
	"group_by": terms.aggregate.group_by,
	"measures": terms.aggregate.measures,
	"min_group_size": min_group_size,
} if {
	aggregate_only
} else := {}

# A department whose live agreements on a conditional dataset grant only aggregates may
# discover it, and its discover decision carries the aggregate terms: the exchange then
# shows it no row count, which would count the rows of suppressed cells too.
aggregate_only if {
	input.action == "discover"
	entry.share == "conditional"
	count(applicable) > 0
	every a in applicable {
		every act, _ in a.action_set { act in {"aggregate", "discover"} }
	}
}

min_group_size := terms.aggregate.min_group_size if {
	terms.aggregate.min_group_size > 0
} else := entry.min_group_size

# --- the decision -----------------------------------------------------------------------

denied(r) := {"allow": false, "reasons": [r], "columns": [], "masks": {}, "row_filter": [], "max_rows": 0, "agreement": ""}

# granted requires every condition itself, so the allow path never evaluates the denial
# rules; those run only to explain a denial.
decision := granted if {
	granted
} else := denied(denial) if {
	denial
} else := denied(reason("no_grant", "no rule grants this request; deny by default"))
