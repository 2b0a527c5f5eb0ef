package monitor

import (
	"maps"
	"sync"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
)

// PollDurationBuckets are the buckets of ct_source_poll_duration_seconds: a
// crt.sh poll of many watches takes minutes, a log poll well under a second.
var PollDurationBuckets = []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// SourceHealth is a copy of a source's health.
type SourceHealth struct {
	Name        string
	Type        string // the source's type (crtsh, ctlog, loglist); "" while it is not running
	Polled      bool   // false until the first poll ends
	Up          bool
	LastSuccess time.Time
	// Interval is the source's configured interval; 0 while it is not
	// running.
	Interval time.Duration
	// WatchLastSuccess is, for a search source, when each watch was last
	// searched successfully; a watch never searched successfully, or no
	// longer configured, is absent.
	WatchLastSuccess map[string]time.Time
	// LogListTimestamp is, for a loglist source, the log_list_timestamp of
	// the list in effect; zero before a list is accepted, or when the list
	// has none.
	LogListTimestamp time.Time
	Errors           map[string]uint64 // by reason; every reason present
	// Poll durations: cumulative counts per bucket upper bound.
	DurationCount   uint64
	DurationSum     float64
	DurationBuckets map[float64]uint64
}

type health struct {
	mu          sync.Mutex
	polled      bool
	up          bool
	lastSuccess time.Time
	watches     map[string]time.Time
	listTime    time.Time
	errors      map[string]uint64
	count       uint64
	sum         float64
	buckets     []uint64
}

func newHealth() *health {
	h := &health{errors: map[string]uint64{}, watches: map[string]time.Time{}, buckets: make([]uint64, len(PollDurationBuckets))}
	for _, r := range ctsource.Reasons {
		h.errors[r] = 0
	}
	return h
}

func (h *health) countError(reason string) {
	h.mu.Lock()
	h.errors[reason]++
	h.mu.Unlock()
}

func (h *health) watchSearched(w string, at time.Time) {
	h.mu.Lock()
	h.watches[w] = at
	h.mu.Unlock()
}

func (h *health) logListAccepted(timestamp time.Time) {
	h.mu.Lock()
	h.listTime = timestamp
	h.mu.Unlock()
}

// keepWatches forgets the watches keep does not keep: a watch removed on
// reload, or all of them when the source is no longer a search source.
func (h *health) keepWatches(keep func(string) bool) {
	h.mu.Lock()
	maps.DeleteFunc(h.watches, func(w string, _ time.Time) bool { return !keep(w) })
	h.mu.Unlock()
}

func (h *health) observe(ok bool, start time.Time, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.polled = true
	h.up = ok
	if ok {
		h.lastSuccess = start.Add(d)
	}
	s := d.Seconds()
	h.count++
	h.sum += s
	for i, b := range PollDurationBuckets {
		if s <= b {
			h.buckets[i]++
		}
	}
}

// snapshot copies the health; watches keeps the watches reported.
func (h *health) snapshot(name string, watches func(string) bool) SourceHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := SourceHealth{
		Name:             name,
		Polled:           h.polled,
		Up:               h.up,
		LastSuccess:      h.lastSuccess,
		Errors:           maps.Clone(h.errors),
		WatchLastSuccess: make(map[string]time.Time, len(h.watches)),
		LogListTimestamp: h.listTime,
		DurationCount:    h.count,
		DurationSum:      h.sum,
		DurationBuckets:  make(map[float64]uint64, len(PollDurationBuckets)),
	}
	for i, b := range PollDurationBuckets {
		s.DurationBuckets[b] = h.buckets[i]
	}
	for w, at := range h.watches {
		if watches(w) {
			s.WatchLastSuccess[w] = at
		}
	}
	return s
}
