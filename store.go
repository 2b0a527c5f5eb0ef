package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/pgstate"
	"github.com/ct-exporter/ct_exporter/state/statecopy"
)

// stateLocation is where the state is: a file (--state.file) or a
// PostgreSQL database (--state.url).
type stateLocation struct {
	file    string
	fileSet bool // given on the command line
	url     string
}

// check refuses both at once.
func (l stateLocation) check() error {
	if l.url != "" && l.fileSet {
		return fmt.Errorf("--state.file and --state.url are exclusive: the state is either in a file or in PostgreSQL")
	}
	return nil
}

// String names the state for logs: the file, or the URL without its
// password.
func (l stateLocation) String() string {
	if l.url != "" {
		return pgstate.Redact(l.url)
	}
	return l.file
}

// openStore opens the state.
func openStore(l stateLocation, logger *slog.Logger) (monitor.Store, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	if l.url != "" {
		s, err := pgstate.Open(l.url, pgstate.Options{Logger: logger})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := state.Open(l.file, state.Options{})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// runStateCopy is `ct_exporter state copy`.
func runStateCopy(from, to string, replace bool, stdout, stderr io.Writer) int {
	st, err := statecopy.Copy(from, to, replace)
	if err != nil {
		fmt.Fprintf(stderr, "ct_exporter: state copy: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "Copied %s to %s: %d issuances (%d watch matches), %d counters, %d cursors, %d log positions, %d processed ids.\n",
		statecopy.Name(from), statecopy.Name(to), st.Issuances, st.Matches, st.Counters, st.Cursors, st.LogPositions, st.IDs)
	return 0
}
