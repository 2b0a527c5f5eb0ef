package main

import (
	"fmt"
	"log/slog"

	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/pgstate"
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
