# Who may act on a sharing application (共享申请) or a correction (校核纠错). The
# exchange's apply service evaluates data.govx.applications.decision once per action,
# after checking that the action is legal in the application's state; the roles come
# from roles.yaml (data.roles), the rest from the input:
#
#   input.subject      {department, system, registered}: from the caller's credentials;
#                      registered says whether departments.yaml lists the department
#   input.action       application.submit | application.withdraw | application.dispute |
#                      application.review | application.coordinate | application.approve |
#                      application.refuse | application.negotiate | application.read |
#                      correction.flag | correction.answer | correction.read |
#                      audit.read (the console's audit pages: auditors only)
#   input.case         {applicant, provider, dataset}: the application or correction acted
#                      on; applicant is the applying (or flagging) department, provider the
#                      dataset's providing department
#
# The decision is {allow, reasons}: deny by default, one reason with a stable code. A
# reason goes to whoever was refused, a non-party included, so it names no party.
package govx.applications

applicant_actions := {"application.submit", "application.withdraw", "application.dispute", "correction.flag"}

authority_actions := {"application.review", "application.coordinate"}

provider_actions := {"application.approve", "application.refuse", "application.negotiate", "correction.answer"}

read_actions := {"application.read", "correction.read"}

auditor_actions := {"audit.read"}

known_actions := (((applicant_actions | authority_actions) | provider_actions) | read_actions) | auditor_actions

holds(role_map) if {
	r := role_map[input.subject.department]
	r.any_system
}

holds(role_map) if {
	r := role_map[input.subject.department]
	r.systems[input.subject.system]
}

is_authority if holds(data.roles.data_authority)

is_steward if holds(data.roles.stewards)

is_auditor if holds(data.roles.auditors)

is_provider if {
	is_steward
	input.subject.department == input.case.provider
}

is_applicant if input.subject.department == input.case.applicant

# The reasons, in order: the first that applies is the one given.
reasons contains r if {
	not known_actions[input.action]
	r := {"code": "unknown_action", "message": sprintf("%q is not an action of the sharing process", [input.action])}
}

reasons contains r if {
	known_actions[input.action]
	not input.subject.registered
	r := {"code": "unknown_department", "message": sprintf("department %q is not registered with the exchange", [input.subject.department])}
}

reasons contains r if {
	known_actions[input.action]
	input.subject.registered
	input.action in {"application.withdraw", "application.dispute"}
	not is_applicant
	r := {"code": "not_applicant", "message": "only the applying department may do this"}
}

reasons contains r if {
	known_actions[input.action]
	input.subject.registered
	authority_actions[input.action]
	not is_authority
	r := {"code": "not_data_authority", "message": "only the data authority may review applications and coordinate disputes"}
}

reasons contains r if {
	known_actions[input.action]
	input.subject.registered
	provider_actions[input.action]
	is_applicant
	r := {"code": "own_application", "message": "a department never answers its own application or correction"}
}

# The data authority is also a department that may apply: it never reviews or
# coordinates its own application, or it could grant itself what a provider refused.
reasons contains r if {
	known_actions[input.action]
	input.subject.registered
	authority_actions[input.action]
	is_authority
	is_applicant
	r := {"code": "own_application", "message": "the data authority never reviews or coordinates its own application; the provider answers it, and a dispute goes to the level above"}
}

# A provider corrects its own data at its source: a flag it could not answer itself
# would sit in its queue for ever.
reasons contains r if {
	known_actions[input.action]
	input.subject.registered
	input.action == "correction.flag"
	input.subject.department == input.case.provider
	r := {"code": "own_application", "message": "a provider corrects its own data at the source; it does not flag it"}
}

reasons contains r if {
	known_actions[input.action]
	input.subject.registered
	provider_actions[input.action]
	not is_applicant
	not is_provider
	r := {"code": "not_provider", "message": "only a data steward of the department providing the dataset may answer this"}
}

reasons contains r if {
	known_actions[input.action]
	input.subject.registered
	read_actions[input.action]
	not is_applicant
	not is_provider
	not is_authority
	r := {"code": "not_party", "message": "only the applicant, the provider's stewards and the data authority may see this"}
}

reasons contains r if {
	known_actions[input.action]
	input.subject.registered
	auditor_actions[input.action]
	not is_auditor
	r := {"code": "not_auditor", "message": "only the auditors (roles.yaml) may read the audit log"}
}

default decision := {"allow": false, "reasons": [{"code": "not_authorized", "message": "no rule allows the action"}]}

decision := {"allow": false, "reasons": [first]} if {
	count(reasons) > 0
	order := ["unknown_action", "unknown_department", "not_applicant", "not_data_authority", "own_application", "not_provider", "not_party", "not_auditor"]
	first := [r | some code in order; some r in reasons; r.code == code][0]
}

decision := {"allow": true, "reasons": []} if {
	count(reasons) == 0
	known_actions[input.action]
}
