package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestHelpShowsBoolFlagsPlainly: every command's --help lists its bool flags as
// `--flag`, never `--flag[=true|false]`, with their text in line with the others.
func TestHelpShowsBoolFlagsPlainly(t *testing.T) {
	var walk func(c *cobra.Command)
	checked := 0
	walk = func(c *cobra.Command) {
		args := append(strings.Fields(c.CommandPath())[1:], "--help")
		out, err := runGovx(t, args...)
		if err != nil {
			t.Errorf("govx %s: %v", strings.Join(args, " "), err)
		}
		if strings.Contains(out, "[=") {
			t.Errorf("govx %s shows a flag with an optional value:\n%s", strings.Join(args, " "), out)
		}
		if !regexp.MustCompile(`(?m)^  -h, --help {2,}help for ` + regexp.QuoteMeta(c.Name()) + `$`).MatchString(out) {
			t.Errorf("govx %s does not list -h, --help plainly:\n%s", strings.Join(args, " "), out)
		}
		checked++
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				walk(sub)
			}
		}
	}
	walk(rootCmd)
	if checked < 20 {
		t.Errorf("checked the help of %d commands, want every one (at least 20)", checked)
	}

	out, _ := runGovx(t, "policy", "explain", "--help")
	flags := regexp.MustCompile(`(?m)^ {6}--(json|purpose)( string)? {2,}.*$`).FindAllString(out, -1)
	if len(flags) != 2 || strings.Index(flags[0], "print the policy input") != strings.Index(flags[1], "the purpose of the request") {
		t.Errorf("--json's text is not in line with --purpose's:\n%s", strings.Join(flags, "\n"))
	}
}

// TestBoolFlagsStillParse: only the help text changed; --json, --json=true and
// --json=false mean what they did.
func TestBoolFlagsStillParse(t *testing.T) {
	base := []string{"policy", "explain", "--as", "mz-3301/dibao-review", "--dataset", "population.person",
		"--purpose", "minimum-living-allowance-review", "--time", "2026-06-01"}
	for _, tc := range []struct {
		flag string
		json bool
	}{{"--json", true}, {"--json=true", true}, {"--json=false", false}} {
		out, err := runGovx(t, append(base, tc.flag)...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.flag, err, out)
		}
		if got := strings.HasPrefix(out, "{"); got != tc.json {
			t.Errorf("%s: printed JSON %v, want %v:\n%s", tc.flag, got, tc.json, out)
		}
	}
}

// TestFlagUsagesDefaultTrue: a bool flag that is on unless turned off says so.
func TestFlagUsagesDefaultTrue(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Bool("color", true, "colour the output")
	fs.String("name", "", "a name")
	want := "      --color         colour the output (default true)\n      --name string   a name\n"
	if got := flagUsages(fs); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}
