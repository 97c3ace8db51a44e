package main

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runGovx runs the govx command tree in-process with args and returns what it printed
// to standard output and the error Execute returned. Every flag starts from its default,
// as in a new process: cobra keeps the values of an earlier Execute, and a repeatable
// flag would gather the values of every run.
func runGovx(t *testing.T, args ...string) (string, error) {
	t.Helper()
	resetFlags(rootCmd)
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	t.Cleanup(func() { rootCmd.SetOut(nil); rootCmd.SetErr(nil); rootCmd.SetArgs(nil) })
	err := rootCmd.Execute()
	return out.String(), err
}

func resetFlags(cmd *cobra.Command) {
	reset := func(f *pflag.Flag) {
		if s, ok := f.Value.(pflag.SliceValue); ok {
			// Set would add to the list; the default is printed as [a,b] in CSV.
			var def []string
			if text := strings.TrimSuffix(strings.TrimPrefix(f.DefValue, "["), "]"); text != "" {
				def, _ = csv.NewReader(strings.NewReader(text)).Read()
			}
			s.Replace(def)
		} else {
			f.Value.Set(f.DefValue)
		}
		f.Changed = false
	}
	cmd.Flags().VisitAll(reset)
	cmd.PersistentFlags().VisitAll(reset)
	for _, c := range cmd.Commands() {
		resetFlags(c)
	}
}
