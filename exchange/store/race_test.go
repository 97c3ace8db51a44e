//go:build race

package store

// raceEnabled reports whether the race detector is on: heavy tests run a smaller count
// under it, which slows them about tenfold.
const raceEnabled = true
