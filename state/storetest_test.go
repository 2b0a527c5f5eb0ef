package state_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/storetest"
)

// The behavioural tests every store passes, against the state file.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) func() storetest.Store {
		path := filepath.Join(t.TempDir(), "s.state")
		return func() storetest.Store {
			s, err := state.Open(path, state.Options{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}
