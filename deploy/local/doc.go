// Package local holds the scripts that install and start the real services govx is
// tested against — Kafka, ClickHouse, PostgreSQL, MariaDB and a Python with pyarrow —
// on loopback ports with their state under .local/, and the tests proving that each
// service really answers with the client library govx uses for it. `make test` runs
// up.sh, exports the addresses (see internal/testenv) and runs every test; nothing in
// govx imports this package.
package local
