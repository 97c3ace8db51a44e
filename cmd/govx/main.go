// Command govx runs every role of the govx data sharing exchange: connectors, the
// exchange, the consumer tools, and the steward's and auditor's tools. Each subcommand
// lives in its own file and registers itself on the root command.
package main

import (
	"fmt"
	"os"
)

func main() {
	groupCommands()
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "govx:", err)
		os.Exit(exitCode(err))
	}
}
