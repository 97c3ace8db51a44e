// Package testenv gives tests the addresses of the real services they run against
// (Kafka, ClickHouse, PostgreSQL, MariaDB, Python with pyarrow). Under `make test` the
// services are started by deploy/local and their addresses exported; a missing address
// is a test failure naming the service, never a skip. It also holds the one
// wait-for-condition helper of govx's tests (WaitFor). Only test code imports this
// package.
package testenv

import (
	"os"
	"testing"
)

// Service environment variables, exported by deploy/local/env.sh.
const (
	Kafka      = "GOVX_TEST_KAFKA"      // host:port of a Kafka broker
	ClickHouse = "GOVX_TEST_CLICKHOUSE" // host:port of ClickHouse's native protocol
	Postgres   = "GOVX_TEST_POSTGRES"   // a PostgreSQL URL with a superuser
	MySQL      = "GOVX_TEST_MYSQL"      // mysql://user:pass@host:port/ of MariaDB
	Python     = "GOVX_TEST_PYTHON"     // a python3 with pyarrow and python-stdnum
)

// Require returns the value of the service variable name, failing the test (not
// skipping it) when it is unset: a missing service must never pass quietly.
func Require(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: this test needs a real service; run it through `make test`, which starts the services (deploy/local/up.sh) and exports their addresses", name)
	}
	return v
}
