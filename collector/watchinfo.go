package collector

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ct-exporter/ct_exporter/watch"
)

// WatchInfo exposes ct_watch_info: one series per watch with the watch's
// labels. It is an unchecked collector (its Describe sends nothing): the
// label names are the configuration's, and change on a reload.
type WatchInfo struct {
	watches func() *watch.Set

	// A watch set never changes (a reload makes a new one), so its series
	// are built once, not at every scrape: 10,000 watches are 10,000
	// series.
	mu      sync.Mutex
	set     *watch.Set
	metrics []prometheus.Metric
}

// NewWatchInfo returns the ct_watch_info collector over the watches in
// effect (the monitor's WatchSet in the exporter).
func NewWatchInfo(watches func() *watch.Set) *WatchInfo { return &WatchInfo{watches: watches} }

// Describe sends nothing: WatchInfo is unchecked.
func (*WatchInfo) Describe(chan<- *prometheus.Desc) {}

// Collect sends one series per watch.
func (wi *WatchInfo) Collect(ch chan<- prometheus.Metric) {
	for _, m := range wi.series(wi.watches()) {
		ch <- m
	}
}

// series returns the series of set, built when set is new.
func (wi *WatchInfo) series(set *watch.Set) []prometheus.Metric {
	wi.mu.Lock()
	defer wi.mu.Unlock()
	if set == wi.set {
		return wi.metrics
	}
	wi.set, wi.metrics = set, nil
	if set == nil {
		return nil
	}
	names := set.LabelNames()
	desc := prometheus.NewDesc(watchInfoName, watchInfoHelp, append([]string{labelWatch}, names...), nil)
	for _, w := range set.Watches() {
		values := make([]string, 1+len(names))
		values[0] = w.Domain
		for i, n := range names {
			values[1+i] = w.Labels[n]
		}
		wi.metrics = append(wi.metrics, prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, 1, values...))
	}
	return wi.metrics
}
