// Package sourcetest is what the tests of the sources share: a state file
// with watches and what a source polls with (Harness), the adversarial
// certificate corpus run through a source into a state file, and helpers
// for certificates the state cannot record and for the searches a source
// sends.
package sourcetest

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

// Harness is a state file, its watches and a CA, and what a source polls
// with: the errors its sources count and the watches they searched are kept.
type Harness struct {
	T      *testing.T
	Store  *state.Store
	Path   string // of the state file
	Set    *watch.Set
	Env    *ctsource.Env
	CA     *testpki.CA
	Clock  *storetest.Clock // the watches' schedule's: backoffs pass when a test says
	mu     sync.Mutex
	Errors map[string]int
	// searched is the last successful search of each watch, as
	// Env.WatchSearched reports it.
	searched map[string]time.Time
}

// NewHarness watches domains and their subdomains, in a new state file.
func NewHarness(t *testing.T, domains ...string) *Harness {
	t.Helper()
	h := &Harness{T: t, Errors: map[string]int{}, CA: testpki.NewIssuer(t, "R11", "Let's Encrypt"),
		Clock: storetest.ClockAt(time.Now()), searched: map[string]time.Time{}}
	h.Path = filepath.Join(t.TempDir(), "s.state")
	store, err := state.Open(h.Path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h.Store = store
	h.Env = &ctsource.Env{
		Recorder: &ctsource.Recorder{Store: store, Policy: func() *watch.Set { return h.Set }},
		Logger:   promslog.NewNopLogger(),
		WatchSearched: func(w string, at time.Time) {
			h.mu.Lock()
			h.searched[w] = at
			h.mu.Unlock()
		},
	}
	h.SetWatches(domains...)
	return h
}

// CountError is the ErrorCounter of the sources under test: it counts in
// Errors.
func (h *Harness) CountError(reason string) {
	h.mu.Lock()
	h.Errors[reason]++
	h.mu.Unlock()
}

func (h *Harness) LastSearched(w string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.searched[w]
	return at, ok
}

func (h *Harness) SetWatches(domains ...string) {
	var ws []watch.Watch
	for _, d := range domains {
		n, why := watch.NormalizeDomain(d)
		if why != "" {
			h.T.Fatal(why)
		}
		ws = append(ws, watch.NewWatch(n, true))
	}
	h.Set = watch.NewSet(ws)
	err := h.Store.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 100, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return h.Set.Verdict(w, is.Candidate())
	}})
	if err != nil {
		h.T.Fatal(err)
	}
}

// Recorded is the issuance of iss in the state, nil when it is not there.
func (h *Harness) Recorded(iss *testpki.Issued) *state.Issuance {
	h.T.Helper()
	c, err := cert.Parse(iss.Final)
	if err != nil {
		h.T.Fatal(err)
	}
	var is *state.Issuance
	if err := h.Store.View(func(tx *state.Tx) error {
		is, err = tx.Issuance(c.TBSSHA256)
		return err
	}); err != nil {
		h.T.Fatal(err)
	}
	return is
}

func (h *Harness) ErrorCount(reason string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.Errors[reason]
}

func (h *Harness) NewCertificates() uint64 {
	return h.Counter(state.CounterNewCertificates)
}

// Counter sums a persisted counter over its labels.
func (h *Harness) Counter(name string) uint64 {
	var n uint64
	for _, c := range h.Store.Snapshot().Counters {
		if c.Name == name {
			n += c.Value
		}
	}
	return n
}
