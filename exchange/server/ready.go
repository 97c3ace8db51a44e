package server

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Readiness is the set of named checks behind /readyz: the exchange is ready when every
// check passes, and not ready, naming each failing check and why, otherwise. A part
// either sets its state whenever it changes (Set) or registers a function asked at every
// /readyz (Check). Names say which part and what of it: "ingest/population.person",
// "flight", "audit". It is safe for concurrent use.
type Readiness struct {
	mu     sync.Mutex
	states map[string]error
	checks map[string]func() error
}

// Set records the named check's state: nil passes, an error fails with that reason. A
// later Set of the same name replaces it.
func (r *Readiness) Set(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.states == nil {
		r.states = map[string]error{}
	}
	r.states[name] = err
}

// Check registers fn as the named check, asked at every readiness query; it must be
// quick and must not block (a cached state, a flag). A later Check of the same name
// replaces it.
func (r *Readiness) Check(name string, fn func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checks == nil {
		r.checks = map[string]func() error{}
	}
	r.checks[name] = fn
}

// Err returns nil when every check passes, else an error listing each failing check as
// "name: reason", sorted by name and separated by "; ".
func (r *Readiness) Err() error {
	r.mu.Lock()
	failing := map[string]error{}
	for name, err := range r.states {
		if err != nil {
			failing[name] = err
		}
	}
	checks := maps.Clone(r.checks)
	r.mu.Unlock()
	// Functions run outside the lock: one may take its own part's locks.
	for name, fn := range checks {
		if err := fn(); err != nil {
			failing[name] = errors.Join(failing[name], err)
		}
	}
	if len(failing) == 0 {
		return nil
	}
	var b strings.Builder
	for i, name := range slices.Sorted(maps.Keys(failing)) {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(name + ": " + failing[name].Error())
	}
	return errors.New(b.String())
}
