// Command govx runs every role of the govx data sharing exchange: connectors, the
// exchange, the consumer tools, and the steward's and auditor's tools. Each subcommand
// lives in its own file and registers itself on the root command.
package main

import (
	"fmt"
	"os"
	"strings"

	"govx/exchange/audit/review"
)

func main() {
	groupCommands()
	if err := rootCmd.Execute(); err != nil {
		// Errors carry text from elsewhere (policy reasons a steward wrote, names a
		// caller sent): never raw control characters on the terminal.
		lines := strings.Split(err.Error(), "\n")
		for i := range lines {
			lines[i] = review.Printable(lines[i])
		}
		fmt.Fprintln(os.Stderr, "govx:", strings.Join(lines, "\n"))
		os.Exit(exitCode(err))
	}
}
