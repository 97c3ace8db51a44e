// Package systemd holds the units, environment files and configs that run the exchange
// and the connectors on on-premises servers under systemd, and the test that checks
// their hardening and that they agree with the configs. It has no code of its own.
package systemd
