// Package collector defines every metric of the exporter (metrics.go) and
// exposes them: the state and the logs' status read from in-memory
// snapshots at each scrape (Collector), the sources' health as vectors the
// monitor updates (Sources), the configuration reloads (Reloads), and the
// recent-issuance series, built once per state change (recent.go), all
// served by promhttp (NewHandler). A scrape never waits on the network or
// the disk.
package collector

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state"
)

// Sources of the snapshots; *state.Store and *monitor.Monitor in the exporter.
type (
	StateSnapshotter interface {
		SnapshotWithoutRecent() state.Snapshot
	}
	HealthReporter interface {
		Logs() []monitor.LogStatus
		Watches() []string
	}
	// FollowedReporter is what a HealthReporter may be too: it says which
	// logs this replica follows (ct_log_followed): every log it knows,
	// followed or not. Else the logs of Logs are those followed.
	FollowedReporter interface {
		Followed() map[string]bool
	}
)

// Collector is the exporter's prometheus.Collector: every family but the
// recent-issuance series, which NewHandler adds from its cache.
type Collector struct {
	state   StateSnapshotter
	health  HealthReporter
	logger  *slog.Logger
	sources *Sources
	now     func() time.Time
}

// New returns a collector over the given snapshots. Its Sources must be
// given to the monitor before sources start.
func New(st StateSnapshotter, h HealthReporter, logger *slog.Logger) *Collector {
	return &Collector{state: st, health: h, logger: logger, sources: newSources(), now: time.Now}
}

// Sources is where the monitor reports the sources' health.
func (c *Collector) Sources() *Sources { return c.sources }

// Describe sends every Desc.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range []constFamily{newCertificates, parseErrors, seriesDropped, stateWriteErrors, stateReadErrors, stateCertificates,
		logTreeSize, logSTHTime, logSTHLag, logBehind, logProcessed, logMalformed, logFailures, logOlderHeads, logMMD, logReadonly, logFollowed} {
		ch <- f.desc
	}
	c.sources.Describe(ch)
}

// Collect emits the current snapshots.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.state.SnapshotWithoutRecent()
	perLog := map[string]map[string]uint64{state.CounterLogProcessed: {}, state.CounterLogMalformed: {}}
	parseErrorsByWatch := map[string]uint64{}
	for _, ctr := range snap.Counters {
		switch {
		case ctr.Name == state.CounterNewCertificates && len(ctr.Labels) == 3:
			ch <- newCertificates.metric(float64(ctr.Value), ctr.Labels...)
		case ctr.Name == state.CounterParseErrors && len(ctr.Labels) == 1:
			parseErrorsByWatch[ctr.Labels[0]] = ctr.Value
		case perLog[ctr.Name] != nil && len(ctr.Labels) == 1:
			perLog[ctr.Name][ctr.Labels[0]] = ctr.Value
		}
	}
	now := c.now()
	logs := c.health.Logs()
	if f, ok := c.health.(FollowedReporter); ok {
		for log, followed := range f.Followed() {
			ch <- logFollowed.metric(boolValue(followed), log)
		}
	} else {
		for _, l := range logs {
			ch <- logFollowed.metric(1, l.Log)
		}
	}
	for _, l := range logs {
		// Counters of logs no longer followed stay in the state file, unexposed.
		ch <- logProcessed.metric(float64(perLog[state.CounterLogProcessed][l.Log]), l.Log)
		ch <- logMalformed.metric(float64(perLog[state.CounterLogMalformed][l.Log]), l.Log)
		for check, n := range l.Failures {
			ch <- logFailures.metric(float64(n), l.Log, check)
		}
		ch <- logOlderHeads.metric(float64(l.OlderTreeHeads), l.Log)
		ch <- logMMD.metric(l.MMD.Seconds(), l.Log)
		ch <- logReadonly.metric(boolValue(l.Readonly), l.Log)
		if !l.Known {
			continue
		}
		ch <- logTreeSize.metric(float64(l.TreeSize), l.Log)
		ch <- logSTHTime.metric(float64(l.STHTime.UnixMilli())/1e3, l.Log)
		ch <- logSTHLag.metric(now.Sub(l.STHTime).Seconds(), l.Log)
		ch <- logBehind.metric(float64(max(l.TreeSize-l.Position, 0)), l.Log)
	}
	for _, w := range c.health.Watches() {
		ch <- seriesDropped.metric(float64(snap.Dropped[w]), w)
		// Of every configured watch, so that an increase() sees the first.
		ch <- parseErrors.metric(float64(parseErrorsByWatch[w]), w)
	}
	ch <- stateWriteErrors.metric(float64(snap.WriteErrors))
	ch <- stateReadErrors.metric(float64(snap.ReadErrors))
	ch <- stateCertificates.metric(float64(snap.Certificates))
	c.sources.Collect(ch)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
