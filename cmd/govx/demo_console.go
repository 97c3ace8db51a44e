package main

import (
	"fmt"
	"os"
	"path/filepath"

	"govx/exchange"
	"govx/exchange/auth"
	"govx/exchange/server"
)

// consoleRoles are the systems the demo issues console tokens for, beside the consumer
// departments' own: a provider's steward, the data authority's reviewer and an auditor
// (policies/applications/roles.yaml), each written to DIR/tokens/console-<name>.token.
var consoleRoles = []struct {
	name string
	subj exchange.Subject
}{
	{"steward-gab", exchange.Subject{Department: "gab", System: "steward"}},
	{"authority", demoAuthority},
	{"auditor", exchange.Subject{Department: "zwfw", System: "audit"}},
}

// consoleLines issues the console tokens and says where the console is and how to sign
// in; nothing when the demo runs without a console.
func consoleLines(dir string, cfg *server.Config, x *server.Exchange) []string {
	if x.ConsoleAddr() == "" {
		return nil
	}
	lines := []string{fmt.Sprintf("# The web console (中文 | English): open http://%s and sign in with a token file's contents, e.g.", x.ConsoleAddr())}
	tokens := auth.OpenTokens(cfg.TokensFile)
	for _, r := range consoleRoles {
		tok, _, err := tokens.Issue(r.subj, "govx demo console")
		if err != nil {
			return append(lines, "#   (console tokens could not be issued: "+err.Error()+")")
		}
		f := filepath.Join(dir, "tokens", "console-"+r.name+".token")
		if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
			return append(lines, "#   (console tokens could not be written: "+err.Error()+")")
		}
		lines = append(lines, fmt.Sprintf("#   %s (%s): %s", r.name, r.subj, f))
	}
	return append(lines, "#   a department user: "+filepath.Join(dir, "tokens", "mz-3301.token"))
}
