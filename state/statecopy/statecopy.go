// Package statecopy copies a whole state between stores: a state file and
// a PostgreSQL database, either way (`ct_exporter state copy`). Everything
// is copied — issuances with their watch matches, first-seen times and
// verdicts, persisted counters, cursors, CT log positions and crt.sh's
// processed ids — so that an exporter started on the copy neither loses nor
// reports again anything.
package statecopy

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/pgstate"
)

// Store is a state Copy reads or writes.
type Store interface {
	Export(fn func(state.Item) error) error
	Import(replace bool, items func(yield func(state.Item) error) error) (state.ImportStats, error)
	Close() error
}

var (
	_ Store = (*state.Store)(nil)
	_ Store = (*pgstate.Store)(nil)
)

// IsURL reports whether a location names a PostgreSQL database (a
// postgres:// or postgresql:// URL, or libpq's key=value form) rather than
// a state file.
func IsURL(loc string) bool {
	if strings.HasPrefix(loc, "postgres://") || strings.HasPrefix(loc, "postgresql://") {
		return true
	}
	// key=value: the first word is a key followed by '='.
	first, _, _ := strings.Cut(strings.TrimSpace(loc), " ")
	k, _, ok := strings.Cut(first, "=")
	return ok && k != "" && !strings.ContainsAny(k, "/\\.")
}

// Name is a location as it may be printed: a URL's password redacted.
func Name(loc string) string {
	if IsURL(loc) {
		return pgstate.Redact(loc)
	}
	return loc
}

// Open opens a location. A state file that does not exist is created only
// when create is true: a source must exist.
func Open(loc string, create bool) (Store, error) {
	if IsURL(loc) {
		return pgstate.Open(loc, pgstate.Options{})
	}
	if !create {
		if _, err := os.Stat(loc); err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
	}
	return state.Open(loc, state.Options{})
}

// ErrNotEmpty is returned when the destination holds a state and Replace
// was not asked.
var ErrNotEmpty = state.ErrNotEmpty

// Copy copies the state at from into the state at to, in one transaction
// of the destination. It refuses a destination that is not empty unless
// replace is true: then the destination's state is replaced.
func Copy(from, to string, replace bool) (state.ImportStats, error) {
	if from == to {
		return state.ImportStats{}, errors.New("the source and the destination are the same")
	}
	src, err := Open(from, false)
	if err != nil {
		return state.ImportStats{}, err
	}
	defer src.Close()
	dst, err := Open(to, true)
	if err != nil {
		return state.ImportStats{}, err
	}
	st, err := dst.Import(replace, src.Export)
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if errors.Is(err, state.ErrNotEmpty) {
		return st, fmt.Errorf("%s: %w: nothing was copied. "+
			"Copy into an empty file or database, or pass --replace to replace what it holds", Name(to), err)
	}
	return st, err
}
