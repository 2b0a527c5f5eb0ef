package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ct-exporter/ct_exporter/watch"
)

// WatchInfo exposes ct_watch_info: one series per watch with the watch's
// labels. It is an unchecked collector (its Describe sends nothing): the
// label names are the configuration's, and change on a reload.
type WatchInfo struct {
	watches func() *watch.Set
}

// NewWatchInfo returns the ct_watch_info collector over the watches in
// effect (the monitor's WatchSet in the exporter).
func NewWatchInfo(watches func() *watch.Set) *WatchInfo { return &WatchInfo{watches: watches} }

// Describe sends nothing: WatchInfo is unchecked.
func (*WatchInfo) Describe(chan<- *prometheus.Desc) {}

// Collect sends one series per watch.
func (wi *WatchInfo) Collect(ch chan<- prometheus.Metric) {
	set := wi.watches()
	if set == nil {
		return
	}
	names := set.LabelNames()
	desc := prometheus.NewDesc(watchInfoName, watchInfoHelp, append([]string{labelWatch}, names...), nil)
	values := make([]string, 1+len(names))
	for _, w := range set.Watches() {
		values[0] = w.Domain
		for i, n := range names {
			values[1+i] = w.Labels[n]
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, 1, values...)
	}
}
