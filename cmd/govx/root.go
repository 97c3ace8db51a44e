package main

import (
	"errors"

	"github.com/spf13/cobra"
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
