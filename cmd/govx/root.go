package main

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var rootCmd = &cobra.Command{
	Use:   "govx",
	Short: "govx — a cross-department data sharing exchange for government",
	Long: `govx shares the base registers (population, legal entities, natural resources and
spatial geography, macro economy) between government departments.

Connectors publish a department's database onto Kafka; the exchange serves Apache Arrow
batches over Flight and HTTP, checking every request against OPA sharing policies; every
access, allowed or denied, lands in a tamper-evident audit log.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	// cobra's usage template lists flags with pflag's FlagUsages; flagUsages stands in.
	cobra.AddTemplateFunc("flagUsages", flagUsages)
	t := rootCmd.UsageTemplate()
	for _, set := range []string{"LocalFlags", "InheritedFlags"} {
		t = strings.ReplaceAll(t, "."+set+".FlagUsages", "flagUsages ."+set)
	}
	rootCmd.SetUsageTemplate(t)
}

// flagUsages lists flags as pflag does, except that a bool flag reads `--json`, not
// `--json[=true|false]`: pflag 1.1 writes out the optional value of every bool flag,
// noise in every command's help for a switch that is on when named (--json=false
// still works). The flags are copied, so parsing is untouched.
func flagUsages(fs *pflag.FlagSet) string {
	shown := pflag.NewFlagSet("", pflag.ContinueOnError)
	shown.SortFlags = fs.SortFlags
	fs.VisitAll(func(f *pflag.Flag) {
		c := *f
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			c.Value = plainBool{f.Value}
		}
		shown.AddFlag(&c)
	})
	return shown.FlagUsages()
}

// plainBool is a bool flag's value without its IsBoolFlag method, which is what makes
// pflag print [=true|false]; the flag still shows no value name and, when it defaults
// to true, "(default true)".
type plainBool struct{ pflag.Value }

// exitError carries a specific exit status out of a subcommand, for commands whose
// status means something beyond "failed" (e.g. "some rows were invalid").
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// groups sorts the subcommands in --help by who uses them (ARCHITECTURE.md's users).
var groups = []struct {
	id, title string
	commands  []string
}{
	{"consumer", "Department systems (consumers):", []string{"catalog", "pull", "lookup", "verify", "aggregate", "subject", "license", "apply", "corrections"}},
	{"provider", "Providing departments:", []string{"connector", "gen", "schemas"}},
	{"steward", "Data stewards:", []string{"policy", "applications"}},
	{"auditor", "Auditors:", []string{"audit"}},
	{"operator", "Operators:", []string{"exchange", "token", "pki", "demo"}},
}

// groupCommands assigns each subcommand its group; main calls it once all are registered.
func groupCommands() {
	for _, g := range groups {
		rootCmd.AddGroup(&cobra.Group{ID: g.id, Title: g.title})
		for _, name := range g.commands {
			if c, _, err := rootCmd.Find([]string{name}); err == nil && c != rootCmd {
				c.GroupID = g.id
			}
		}
	}
}
