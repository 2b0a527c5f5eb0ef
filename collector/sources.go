package collector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sources holds the sources' health (ct_source_*), reported by the monitor
// as it runs them. A source's series appear when it starts (its errors by
// every reason at 0, its poll durations empty), up and last success when
// its first poll ends, and all of them go when the source is removed.
type Sources struct {
	up               *prometheus.GaugeVec
	lastSuccess      *prometheus.GaugeVec
	watchLastSuccess *prometheus.GaugeVec
	interval         *prometheus.GaugeVec
	errors           *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	logListTime      *prometheus.GaugeVec
}

// SourceStarted reports a source started, or restarted on reload, with its
// configured interval and every reason its errors are counted by.
// A restarted source has taken no log list yet (and a name reused on reload
// may now be another type of source): its list timestamp goes until it
// reports one.
func (s *Sources) SourceStarted(source string, interval time.Duration, reasons []string) {
	s.logListTime.DeleteLabelValues(source)
	if interval > 0 {
		s.interval.WithLabelValues(source).Set(interval.Seconds())
	}
	for _, r := range reasons {
		s.errors.WithLabelValues(source, r)
	}
	s.duration.WithLabelValues(source)
}

// ObservePoll reports a poll of the source that ended at end, took took,
// and succeeded or not.
func (s *Sources) ObservePoll(source string, ok bool, end time.Time, took time.Duration) {
	s.up.WithLabelValues(source).Set(boolValue(ok))
	if ok {
		s.lastSuccess.WithLabelValues(source).Set(unixSeconds(end))
	}
	s.duration.WithLabelValues(source).Observe(took.Seconds())
}

// CountError counts a failed request to the source, or a certificate it
// found that could not be recorded, under reason.
func (s *Sources) CountError(source, reason string) {
	s.errors.WithLabelValues(source, reason).Inc()
}

// WatchSearched reports a successful search of a watch by a search source.
func (s *Sources) WatchSearched(source, watch string, at time.Time) {
	s.watchLastSuccess.WithLabelValues(source, watch).Set(unixSeconds(at))
}

// WatchGone removes a watch's last search by the source: the watch was
// removed, or the source is no longer a search source.
func (s *Sources) WatchGone(source, watch string) {
	s.watchLastSuccess.DeleteLabelValues(source, watch)
}

// LogListAccepted reports the log_list_timestamp of the list a loglist
// source took; a list without one has no series.
func (s *Sources) LogListAccepted(source string, timestamp time.Time) {
	if timestamp.IsZero() {
		s.logListTime.DeleteLabelValues(source)
		return
	}
	s.logListTime.WithLabelValues(source).Set(unixSeconds(timestamp))
}

// SourceGone removes every series of a source no longer configured.
func (s *Sources) SourceGone(source string) {
	s.up.DeleteLabelValues(source)
	s.logListTime.DeleteLabelValues(source)
	s.lastSuccess.DeleteLabelValues(source)
	s.interval.DeleteLabelValues(source)
	s.duration.DeleteLabelValues(source)
	s.watchLastSuccess.DeletePartialMatch(prometheus.Labels{labelSource: source})
	s.errors.DeletePartialMatch(prometheus.Labels{labelSource: source})
}

func (s *Sources) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.up, s.lastSuccess, s.watchLastSuccess, s.interval, s.errors, s.duration, s.logListTime}
}

// Describe sends the sources' Descs.
func (s *Sources) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range s.collectors() {
		c.Describe(ch)
	}
}

// Collect sends the sources' series.
func (s *Sources) Collect(ch chan<- prometheus.Metric) {
	for _, c := range s.collectors() {
		c.Collect(ch)
	}
}

// Reloads holds ct_config_last_reload_successful and
// ct_config_last_reload_success_timestamp_seconds (NewReloads).
type Reloads struct {
	success, timestamp prometheus.Gauge
	searchRound        *prometheus.GaugeVec
}

// Configured reports, for each search source of the configuration in
// effect, the least time a round of searches of all its watches takes at
// its request spacing (config.SearchRound).
func (r *Reloads) Configured(rounds map[string]time.Duration) {
	r.searchRound.Reset()
	for source, d := range rounds {
		r.searchRound.WithLabelValues(source).Set(d.Seconds())
	}
}

// Succeeded reports the configuration loaded at at.
func (r *Reloads) Succeeded(at time.Time) {
	r.success.Set(1)
	r.timestamp.Set(unixSeconds(at))
}

// Failed reports a reload that failed; the previous configuration is kept.
func (r *Reloads) Failed() { r.success.Set(0) }

// Describe sends the Descs.
func (r *Reloads) Describe(ch chan<- *prometheus.Desc) {
	r.success.Describe(ch)
	r.timestamp.Describe(ch)
	r.searchRound.Describe(ch)
}

// Collect sends the series.
func (r *Reloads) Collect(ch chan<- prometheus.Metric) {
	r.success.Collect(ch)
	r.timestamp.Collect(ch)
	r.searchRound.Collect(ch)
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
