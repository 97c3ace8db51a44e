// Package examples embeds the example connector configurations, one per providing
// department and source kind, so `govx demo` runs the same files a department would
// start from. A test in package connectors loads and checks each one.
package examples

import "embed"

// FS holds every *.yaml example.
//
//go:embed *.yaml
var FS embed.FS
