package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"govx/exchange"
	"govx/exchange/apply"
	"govx/exchange/auth"
	"govx/exchange/server"
)

// demoAuthority is the data authority's reviewing system (policies/applications/roles.yaml).
var demoAuthority = exchange.Subject{Department: "zwfw", System: "sharing-review"}

// seedApplications files, through the exchange's own sharing process, a few applications
// in each state (in compliance review, with the provider, approved into an agreement,
// refused with reasons, disputed, coordinated, withdrawn) and two corrections, so that
// `govx applications list` has something to show. Every step is a real, audited step.
// It does nothing when the applications database already holds applications, so a demo
// that reuses its database never files them twice. It writes a profile for the data
// authority's reviewing system and returns its path.
func seedApplications(ctx context.Context, dir string, cfg *server.Config, x *server.Exchange, hzID, nbID string) (string, error) {
	tok, _, err := auth.OpenTokens(cfg.TokensFile).Issue(demoAuthority, "govx demo")
	if err != nil {
		return "", err
	}
	prof := filepath.Join(dir, "profiles", demoAuthority.Department+"-"+demoAuthority.System+".yaml")
	body := fmt.Sprintf("# the data authority's compliance review (%s)\nflight: %s\nhttp: http://%s\ntoken: %s\n", demoAuthority, x.FlightAddr(), x.HTTPAddr(), tok)
	if err := os.WriteFile(prof, []byte(body), 0o600); err != nil {
		return "", err
	}

	svc := x.Applications()
	authority := apply.Caller{Subject: demoAuthority, ClientAddr: "govx demo"}
	if have, err := svc.List(ctx, authority, apply.Filter{}); err != nil {
		return "", err
	} else if len(have) > 0 {
		return prof, nil
	}
	b := x.Policy().Bundle()
	as := func(dept string) apply.Caller {
		return apply.Caller{Subject: exchange.Subject{Department: dept, System: demoSystem(b, dept)}, ClientAddr: "govx demo"}
	}
	steward := func(dept string) apply.Caller {
		return apply.Caller{Subject: exchange.Subject{Department: dept, System: "steward"}, ClientAddr: "govx demo"}
	}
	var firstErr error
	must := func(a *apply.Application, err error) *apply.Application {
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if a == nil {
			return &apply.Application{}
		}
		return a
	}
	submit := func(dept, dataset, purpose, basis, scenario string, columns ...string) *apply.Application {
		if firstErr != nil {
			return &apply.Application{}
		}
		return must(svc.Submit(ctx, as(dept), apply.Request{Dataset: dataset, Columns: columns, Purpose: purpose,
			LegalBasis: basis, Scenario: scenario, Access: []string{"read"}, ValidFrom: "2026-01-01", ValidUntil: "2027-12-31"}))
	}
	step := func(a *apply.Application, err error) {
		if firstErr == nil {
			must(a, err)
		}
	}

	// In compliance review.
	submit("rs-33", "legal_entity.organization", "social-insurance-employer-check", "《社会保险法》：用人单位社会保险登记核查", "参保单位登记核查",
		"uscc", "name", "org_type")
	// Reviewed, with the provider.
	a := submit("mz-3301", "resource.land_parcel", "assistance-property-check", "《社会救助暂行办法》：救助对象家庭财产核查", "临时救助家庭财产核查",
		"parcel_code", "land_use", "area_m2")
	step(svc.Review(ctx, authority, a.ID, apply.Outcome{Grant: true}))
	// Approved by the provider: an agreement in force.
	a = submit("sw-33", "resource.land_parcel", "land-tax-source-check", "《城镇土地使用税暂行条例》：土地使用税税源核查", "土地使用税税源核查",
		"parcel_code", "land_use", "area_m2")
	step(svc.Review(ctx, authority, a.ID, apply.Outcome{Grant: true}))
	step(svc.Approve(ctx, steward("zrzyb"), a.ID, &apply.Conditions{Approval: "浙自然资共〔2026〕12号"}))
	// Refused by the provider, with reasons.
	a = submit("fgw-33", "population.person", "investment-project-review", "《企业投资项目核准和备案管理条例》：项目核准", "投资项目核准",
		"id_number", "name", "birth_date")
	step(svc.Review(ctx, authority, a.ID, apply.Outcome{Grant: true}))
	step(svc.Refuse(ctx, steward("gab"), a.ID, []string{"项目核准不需要自然人的身份信息", "申请字段超出履职所需"}))
	// Refused, then disputed: awaiting negotiation or coordination.
	a = submit("wj-3302", "license.certificate", "medical-licence-check", "《医师法》：医师执业注册审核", "医师执业注册审核",
		"licence_no", "licence_type", "holder_name")
	step(svc.Review(ctx, authority, a.ID, apply.Outcome{Grant: true}))
	step(svc.Refuse(ctx, steward("zwfw"), a.ID, []string{"执业注册审核宜以核验方式办理，不需批量读取"}))
	step(svc.Dispute(ctx, as("wj-3302"), a.ID, "执业注册审核需查验申请人持有的全部证照，逐一核验无法满足"))
	// Failed the review, disputed, and granted by the data authority's coordination.
	a = submit("gxq-3301", "economy.indicator", "industrial-policy-evaluation", "《浙江省数字经济促进条例》：产业政策评估", "产业政策评估",
		"indicator_code", "region_code", "period", "value")
	step(svc.Review(ctx, authority, a.ID, apply.Outcome{Reasons: []string{"未附产业政策评估的立项文件"}}))
	step(svc.Dispute(ctx, as("gxq-3301"), a.ID, "立项文件已于2026年第3号会议纪要印发，附后补交"))
	step(svc.Coordinate(ctx, authority, a.ID, apply.Outcome{Grant: true, Conditions: &apply.Conditions{Approval: "浙数协〔2026〕7号"}}))
	// Withdrawn by the applicant.
	a = submit("wj-3302", "population.person", "maternal-health-followup", "《母婴保健法》：孕产妇健康管理", "孕产妇随访",
		"id_number", "name", "phone")
	step(svc.Withdraw(ctx, as("wj-3302"), a.ID))

	// Corrections: one awaiting the provider, one rejected with its reason.
	if firstErr == nil {
		_, firstErr = svc.FlagRecord(ctx, as("mz-3301"), apply.Flag{Dataset: "population.person", Key: hzID, Column: "household_region",
			Value: "330108", Evidence: "杭民救〔2026〕入户核查记录 0412"})
	}
	if firstErr == nil {
		var x *apply.Correction
		x, firstErr = svc.FlagRecord(ctx, as("wj-3302"), apply.Flag{Dataset: "population.person", Key: nbID, Column: "name",
			Value: "（出生医学证明所载姓名）", Evidence: "甬卫出生证明 2026-0815"})
		if firstErr == nil {
			_, firstErr = svc.AnswerFlag(ctx, steward("gab"), x.ID, apply.Answer{Note: "经户籍档案核对，登记姓名无误"})
		}
	}
	if firstErr != nil {
		return "", fmt.Errorf("the demo's sharing applications: %w", firstErr)
	}
	return prof, nil
}
