//go:build race

package harness

// raceEnabled: the tests run with the race detector, and so does the
// binary Binary builds.
const raceEnabled = true
