package ctsource

import "github.com/ct-exporter/ct_exporter/state"

// Store is what a source reads from and records into: the state file
// (*state.Store), PostgreSQL (*pgstate.Store), or any database that keeps the same things. Nothing in it
// is particular to one: each read is a consistent read on its own, and
// Commit is the one transaction that records issuances and moves a
// source's position, cursor or ids together.
type Store interface {
	// Commit writes c in one transaction: all of it, but for the issuances
	// the store cannot record (each says why in its Observed), or none of
	// it. It returns what became of each observation, in order.
	Commit(c *state.Commit) ([]state.Observed, error)
	// Issuance returns the issuance with this tbs_sha256, or nil.
	Issuance(tbs [32]byte) (*state.Issuance, error)
	// LogPosition returns what the last Commit with a LogPosition stored
	// for a CT log, or nil.
	LogPosition(log string) ([]byte, error)
	// Cursor returns what the last Commit with a Cursor stored for a
	// source, or nil.
	Cursor(source string) ([]byte, error)
	// SeenID reports whether a source committed the certificate with this
	// id (Commit.IDs), and its tbs_sha256.
	SeenID(source string, id uint64) (tbs [32]byte, seen bool, err error)
}

var _ Store = (*state.Store)(nil)
