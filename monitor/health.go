package monitor

import (
	"maps"
	"sync"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
)

// Metrics is where the monitor reports its sources' health as it runs
// them: collector.Sources in the exporter, which defines the metrics.
type Metrics interface {
	// SourceStarted: a source started, or restarted on reload, with its
	// interval and every reason its errors are counted by.
	SourceStarted(source string, interval time.Duration, reasons []string)
	// ObservePoll: a poll that ended at end, took took, and succeeded or not.
	ObservePoll(source string, ok bool, end time.Time, took time.Duration)
	CountError(source, reason string)
	// WatchSearched: a search source searched a watch successfully.
	WatchSearched(source, watch string, at time.Time)
	// WatchGone: the watch's last search by the source is forgotten.
	WatchGone(source, watch string)
	// SourceGone: the source is no longer configured.
	SourceGone(source string)
	// LogListAccepted: a loglist source took a list with this
	// log_list_timestamp (zero: the list has none).
	LogListAccepted(source string, timestamp time.Time)
}

// ReportTo makes the monitor report its sources' health to metrics. Call
// it before Apply: a source reports where it was told when it started.
func (m *Monitor) ReportTo(metrics Metrics) {
	m.mu.Lock()
	m.metrics = metrics
	m.mu.Unlock()
}

// watching reports whether the configured watches include domain.
func (m *Monitor) watching(domain string) bool {
	_, ok := m.policy.Load().Get(domain)
	return ok
}

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
	Errors           map[string]uint64 // by reason; every reason present
	// Poll durations: how many, and their sum in seconds.
	DurationCount uint64
	DurationSum   float64
}

// health is a source's health, kept for Health (the status page) and
// reported to the metrics as it changes.
type health struct {
	name    string
	metrics Metrics
	watched func(string) bool // the configured watches, as of now

	mu          sync.Mutex
	polled      bool
	up          bool
	lastSuccess time.Time
	watches     map[string]time.Time
	errors      map[string]uint64
	count       uint64
	sum         float64
}

// newHealth is the health of the source name; watched reports the
// configured watches.
func newHealth(name string, metrics Metrics, watched func(string) bool) *health {
	if metrics == nil {
		metrics = noMetrics{}
	}
	h := &health{name: name, metrics: metrics, watched: watched, errors: map[string]uint64{}, watches: map[string]time.Time{}}
	for _, r := range ctsource.Reasons {
		h.errors[r] = 0
	}
	return h
}

// started reports the source (re)started with its interval.
func (h *health) started(interval time.Duration) {
	h.metrics.SourceStarted(h.name, interval, ctsource.Reasons)
}

// gone reports the source removed: its series go with it.
func (h *health) gone() { h.metrics.SourceGone(h.name) }

func (h *health) countError(reason string) {
	h.mu.Lock()
	h.errors[reason]++
	h.mu.Unlock()
	h.metrics.CountError(h.name, reason)
}

// watchSearched records a successful search of w, unless w is no longer
// watched: a search that ended after its watch was removed on reload must
// not bring it back. Checked under mu, which keepWatches holds after the
// watches changed, so that the removal cannot come in between.
func (h *health) watchSearched(w string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.watched(w) {
		return
	}
	h.watches[w] = at
	h.metrics.WatchSearched(h.name, w, at)
}

// logListAccepted reports the log_list_timestamp of the list a loglist
// source took.
func (h *health) logListAccepted(timestamp time.Time) {
	h.metrics.LogListAccepted(h.name, timestamp)
}

// keepWatches forgets the watches keep does not keep: a watch removed on
// reload, or all of them when the source is no longer a search source.
func (h *health) keepWatches(keep func(string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watches {
		if !keep(w) {
			delete(h.watches, w)
			h.metrics.WatchGone(h.name, w)
		}
	}
}

func (h *health) observe(ok bool, start time.Time, d time.Duration) {
	h.mu.Lock()
	h.polled = true
	h.up = ok
	if ok {
		h.lastSuccess = start.Add(d)
	}
	h.count++
	h.sum += d.Seconds()
	h.mu.Unlock()
	h.metrics.ObservePoll(h.name, ok, start.Add(d), d)
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
		DurationCount:    h.count,
		DurationSum:      h.sum,
	}
	for w, at := range h.watches {
		if watches(w) {
			s.WatchLastSuccess[w] = at
		}
	}
	return s
}

// noMetrics reports nowhere: a monitor not told where to report.
type noMetrics struct{}

func (noMetrics) SourceStarted(string, time.Duration, []string)      {}
func (noMetrics) ObservePoll(string, bool, time.Time, time.Duration) {}
func (noMetrics) CountError(string, string)                          {}
func (noMetrics) WatchSearched(string, string, time.Time)            {}
func (noMetrics) WatchGone(string, string)                           {}
func (noMetrics) LogListAccepted(string, time.Time)                  {}
func (noMetrics) SourceGone(string)                                  {}
