// Package archtest holds the test that keeps govx's imports flowing one way, as
// ARCHITECTURE.md draws them: schemas depends on nothing of ours; connectors on schemas;
// the exchange on schemas and policies; only cmd/govx (and the bench commands) wire
// everything together. It has no code of its own.
package archtest
