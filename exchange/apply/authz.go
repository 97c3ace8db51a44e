package apply

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"govx/exchange"
	"govx/policies"
)

// authorizer decides who may take a step, by the process policy's Rego.
type authorizer struct {
	pq       rego.PreparedEvalQuery
	revision string
}

func newAuthorizer(p *policies.Process) (*authorizer, error) {
	mods := map[string]*ast.Module{}
	for _, m := range p.Modules {
		if m.Test {
			continue
		}
		mod, err := ast.ParseModuleWithOpts(m.File, m.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("process policy %s: %w", m.File, err)
		}
		mods[m.File] = mod
	}
	c := ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(mods); c.Failed() {
		return nil, fmt.Errorf("process policy %s: %w", p.Source, c.Errors)
	}
	pq, err := rego.New(rego.Query(policies.ProcessQuery), rego.Compiler(c),
		rego.Store(inmem.NewFromObject(p.Data())), rego.StrictBuiltinErrors(true)).PrepareForEval(context.Background())
	if err != nil {
		return nil, fmt.Errorf("process policy %s: %w", p.Source, err)
	}
	return &authorizer{pq: pq, revision: p.Revision}, nil
}

// caseOf is what the policy sees of the application or correction acted on.
type caseOf struct {
	Applicant, Provider, Dataset string
}

// decide returns nil when subj may take step on c, and otherwise the permission_denied
// error carrying the policy's one reason. Whatever goes wrong denies (fail closed).
func (a *authorizer) decide(ctx context.Context, subj exchange.Subject, registered bool, step string, c caseOf) error {
	in := map[string]any{
		"subject": map[string]any{"department": subj.Department, "system": subj.System, "registered": registered},
		"action":  step,
		"case":    map[string]any{"applicant": c.Applicant, "provider": c.Provider, "dataset": c.Dataset},
	}
	deny := func(code, msg string) error {
		return &exchange.Error{Kind: exchange.PermissionDenied, Code: "permission_denied",
			Message: "the sharing process policy refused the step", Reasons: []exchange.Reason{{Code: code, Message: msg}}}
	}
	rs, err := a.pq.Eval(ctx, rego.EvalInput(in))
	if err != nil {
		return deny("policy_error", "the process policy failed to evaluate: "+err.Error())
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return deny("policy_error", "the process policy's decision is undefined")
	}
	d, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return deny("policy_error", "the process policy's decision is not an object")
	}
	if allow, _ := d["allow"].(bool); allow {
		return nil
	}
	rsn, _ := d["reasons"].([]any)
	if len(rsn) == 0 {
		return deny("policy_error", "the process policy denied without a reason")
	}
	r, _ := rsn[0].(map[string]any)
	code, _ := r["code"].(string)
	msg, _ := r["message"].(string)
	if code == "" {
		return deny("policy_error", "the process policy gave a reason without a code")
	}
	return deny(code, msg)
}
