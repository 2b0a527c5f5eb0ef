// Package collector exposes the state and the sources' health as Prometheus
// metrics. Collect reads in-memory snapshots only: a scrape never waits on
// the network or the disk.
package collector

import (
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state"
)

// Sources of the snapshots; *state.Store and *monitor.Monitor in the exporter.
type (
	StateSnapshotter interface {
		Snapshot() state.Snapshot
		SnapshotWithoutRecent() state.Snapshot
	}
	HealthReporter interface {
		Health() []monitor.SourceHealth
		Logs() []monitor.LogStatus
		Watches() []string
	}
)

// Collector is the exporter's prometheus.Collector.
type Collector struct {
	state  StateSnapshotter
	health HealthReporter
	logger *slog.Logger
	// cacheRecent: the recent-issuance series are served by NewHandler's
	// cache instead of Collect.
	cacheRecent bool

	newCertificates  *prometheus.Desc
	firstSeen        *prometheus.Desc
	embeddedSCTs     *prometheus.Desc
	parseErrors      *prometheus.Desc
	parseErrorInfo   *prometheus.Desc
	seriesDropped    *prometheus.Desc
	sourceUp         *prometheus.Desc
	sourceLastOK     *prometheus.Desc
	sourceWatchOK    *prometheus.Desc
	sourceInterval   *prometheus.Desc
	sourceErrors     *prometheus.Desc
	sourceDuration   *prometheus.Desc
	stateWriteErrors *prometheus.Desc
	stateCerts       *prometheus.Desc
	logTreeSize      *prometheus.Desc
	logSTHTime       *prometheus.Desc
	logSTHLag        *prometheus.Desc
	logBehind        *prometheus.Desc
	logProcessed     *prometheus.Desc
	logMalformed     *prometheus.Desc
	logFailures      *prometheus.Desc
	logOlderHeads    *prometheus.Desc
	logMMD           *prometheus.Desc
	logReadonly      *prometheus.Desc
	loglistTimestamp *prometheus.Desc
	now              func() time.Time
}

// New returns a collector over the given snapshots.
func New(st StateSnapshotter, h HealthReporter, logger *slog.Logger) *Collector {
	return &Collector{
		state:  st,
		health: h,
		logger: logger,
		newCertificates: prometheus.NewDesc("ct_new_certificates_total",
			"Issuances first seen for a watch, by the verdict they had then. Persisted in the state file.",
			[]string{"watch", "issuer", "verdict"}, nil),
		firstSeen: prometheus.NewDesc("ct_certificate_first_seen_timestamp_seconds", helpFirstSeen,
			[]string{"watch", "verdict", "tbs_sha256", "cert_sha256", "issuer", "serial", "subject_cn", "dns_names"}, nil),
		embeddedSCTs: prometheus.NewDesc("ct_certificate_embedded_scts", helpEmbeddedSCTs,
			[]string{"watch", "tbs_sha256"}, nil),
		parseErrors: prometheus.NewDesc("ct_certificate_parse_errors_total",
			"Issuances first seen for a watch with a certificate that a strict X.509 parser refuses (recorded all the same, from what the DER says). Persisted in the state file.",
			[]string{"watch"}, nil),
		parseErrorInfo: prometheus.NewDesc("ct_certificate_parse_error_info", helpParseErrorInfo,
			[]string{"watch", "tbs_sha256", "error"}, nil),
		seriesDropped: prometheus.NewDesc("ct_certificate_series_dropped_total",
			"Recent issuances not exposed as series because of recent_series_limit, since the exporter started.",
			[]string{"watch"}, nil),
		sourceUp: prometheus.NewDesc("ct_source_up",
			"1 if the source's last poll succeeded, 0 if it failed; for crt.sh and Cert Spotter, 0 while any watch's last search failed or the API rate-limits the source. Absent until the first poll ends.",
			[]string{"source"}, nil),
		sourceLastOK: prometheus.NewDesc("ct_source_last_success_timestamp_seconds",
			"When the source's last successful poll ended.",
			[]string{"source"}, nil),
		sourceWatchOK: prometheus.NewDesc("ct_source_watch_last_success_timestamp_seconds",
			"When the search source (crt.sh, Cert Spotter) last searched the watch successfully. Absent until it has.",
			[]string{"source", "watch"}, nil),
		sourceInterval: prometheus.NewDesc("ct_source_interval_seconds",
			"The source's configured interval between polls.",
			[]string{"source"}, nil),
		sourceErrors: prometheus.NewDesc("ct_source_errors_total",
			"Failed requests to a source, and certificates it found that could not be recorded (reason record), by reason.",
			[]string{"source", "reason"}, nil),
		sourceDuration: prometheus.NewDesc("ct_source_poll_duration_seconds",
			"How long polls of the source took.",
			[]string{"source"}, nil),
		stateWriteErrors: prometheus.NewDesc("ct_state_write_errors_total",
			"Transactions on the state file that failed to be written.", nil, nil),
		stateCerts: prometheus.NewDesc("ct_state_certificates",
			"Issuances held in the state file.", nil, nil),
		logTreeSize: prometheus.NewDesc("ct_log_tree_size",
			"Size of the log's newest verified tree head.", []string{"log"}, nil),
		logSTHTime: prometheus.NewDesc("ct_log_sth_timestamp_seconds",
			"Timestamp of the log's newest verified tree head.", []string{"log"}, nil),
		logSTHLag: prometheus.NewDesc("ct_log_sth_lag_seconds",
			"Now minus the timestamp of the log's newest verified tree head.", []string{"log"}, nil),
		logBehind: prometheus.NewDesc("ct_log_entries_behind",
			"Entries in the newest verified tree not processed yet.", []string{"log"}, nil),
		logProcessed: prometheus.NewDesc("ct_log_entries_processed_total",
			"Log entries processed (and proven to be in a verified tree). Persisted in the state file.", []string{"log"}, nil),
		logMalformed: prometheus.NewDesc("ct_log_malformed_entries_total",
			"Log entries that could not be read, counted and skipped. Persisted in the state file.", []string{"log"}, nil),
		logFailures: prometheus.NewDesc("ct_log_verification_failures_total",
			"Times the log failed a verification: a bad signature, a fork, a rollback, entries not in the tree.", []string{"log", "check"}, nil),
		logOlderHeads: prometheus.NewDesc("ct_log_older_tree_heads_total",
			"Correctly signed tree heads older than the verified one and proven a prefix of it (caching frontends serve them); ignored.", []string{"log"}, nil),
		logMMD: prometheus.NewDesc("ct_log_mmd_seconds",
			"The log's maximum merge delay.", []string{"log"}, nil),
		logReadonly: prometheus.NewDesc("ct_log_readonly",
			"1 for a readonly log, followed up to the final tree head its log list gives.", []string{"log"}, nil),
		loglistTimestamp: prometheus.NewDesc("ct_loglist_timestamp_seconds",
			"The log_list_timestamp of the log list in effect (Unix seconds). Absent until a list is accepted, and for a list without one.", []string{"source"}, nil),
		now: time.Now,
	}
}

// Describe sends every Desc.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.newCertificates, c.firstSeen, c.embeddedSCTs, c.parseErrors, c.parseErrorInfo, c.seriesDropped,
		c.sourceUp, c.sourceLastOK, c.sourceWatchOK, c.sourceInterval, c.sourceErrors, c.sourceDuration, c.stateWriteErrors, c.stateCerts,
		c.logTreeSize, c.logSTHTime, c.logSTHLag, c.logBehind, c.logProcessed, c.logMalformed, c.logFailures, c.logOlderHeads, c.logMMD, c.logReadonly, c.loglistTimestamp} {
		ch <- d
	}
}

// Collect emits the current snapshots.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var snap state.Snapshot
	if c.cacheRecent {
		snap = c.state.SnapshotWithoutRecent()
	} else {
		snap = c.state.Snapshot()
	}
	perLog := map[string]map[string]uint64{state.CounterLogProcessed: {}, state.CounterLogMalformed: {}}
	parseErrors := map[string]uint64{}
	for _, ctr := range snap.Counters {
		switch {
		case ctr.Name == state.CounterNewCertificates && len(ctr.Labels) == 3:
			ch <- prometheus.MustNewConstMetric(c.newCertificates, prometheus.CounterValue, float64(ctr.Value), ctr.Labels...)
		case ctr.Name == state.CounterParseErrors && len(ctr.Labels) == 1:
			parseErrors[ctr.Labels[0]] = ctr.Value
		case perLog[ctr.Name] != nil && len(ctr.Labels) == 1:
			perLog[ctr.Name][ctr.Labels[0]] = ctr.Value
		}
	}
	now := c.now()
	for _, l := range c.health.Logs() {
		// Counters of logs no longer followed stay in the state file, unexposed.
		ch <- prometheus.MustNewConstMetric(c.logProcessed, prometheus.CounterValue, float64(perLog[state.CounterLogProcessed][l.Log]), l.Log)
		ch <- prometheus.MustNewConstMetric(c.logMalformed, prometheus.CounterValue, float64(perLog[state.CounterLogMalformed][l.Log]), l.Log)
		for check, n := range l.Failures {
			ch <- prometheus.MustNewConstMetric(c.logFailures, prometheus.CounterValue, float64(n), l.Log, check)
		}
		ch <- prometheus.MustNewConstMetric(c.logOlderHeads, prometheus.CounterValue, float64(l.OlderTreeHeads), l.Log)
		ch <- prometheus.MustNewConstMetric(c.logMMD, prometheus.GaugeValue, l.MMD.Seconds(), l.Log)
		ch <- prometheus.MustNewConstMetric(c.logReadonly, prometheus.GaugeValue, boolValue(l.Readonly), l.Log)
		if !l.Known {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.logTreeSize, prometheus.GaugeValue, float64(l.TreeSize), l.Log)
		ch <- prometheus.MustNewConstMetric(c.logSTHTime, prometheus.GaugeValue, float64(l.STHTime.UnixMilli())/1e3, l.Log)
		ch <- prometheus.MustNewConstMetric(c.logSTHLag, prometheus.GaugeValue, now.Sub(l.STHTime).Seconds(), l.Log)
		ch <- prometheus.MustNewConstMetric(c.logBehind, prometheus.GaugeValue, float64(max(l.TreeSize-l.Position, 0)), l.Log)
	}
	for _, r := range snap.Recent {
		tbs := hex.EncodeToString(r.TBSSHA256[:])
		ch <- prometheus.MustNewConstMetric(c.firstSeen, prometheus.GaugeValue,
			float64(r.FirstSeen.UnixNano())/1e9,
			r.Watch, r.Verdict.String(), tbs, state.CertHex(r.CertSHA256),
			r.Issuer, r.Serial, r.SubjectCN, r.DNSNames)
		if r.EmbeddedSCTs >= 0 {
			ch <- prometheus.MustNewConstMetric(c.embeddedSCTs, prometheus.GaugeValue, float64(r.EmbeddedSCTs), r.Watch, tbs)
		}
		if r.ParseError != "" {
			ch <- prometheus.MustNewConstMetric(c.parseErrorInfo, prometheus.GaugeValue, 1, r.Watch, tbs, r.ParseError)
		}
	}
	for _, w := range c.health.Watches() {
		ch <- prometheus.MustNewConstMetric(c.seriesDropped, prometheus.CounterValue, float64(snap.Dropped[w]), w)
		// Of every configured watch, so that an increase() sees the first.
		ch <- prometheus.MustNewConstMetric(c.parseErrors, prometheus.CounterValue, float64(parseErrors[w]), w)
	}
	ch <- prometheus.MustNewConstMetric(c.stateWriteErrors, prometheus.CounterValue, float64(snap.WriteErrors))
	ch <- prometheus.MustNewConstMetric(c.stateCerts, prometheus.GaugeValue, float64(snap.Certificates))

	for _, h := range c.health.Health() {
		if h.Polled {
			ch <- prometheus.MustNewConstMetric(c.sourceUp, prometheus.GaugeValue, boolValue(h.Up), h.Name)
		}
		if !h.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.sourceLastOK, prometheus.GaugeValue, float64(h.LastSuccess.UnixNano())/1e9, h.Name)
		}
		for w, at := range h.WatchLastSuccess {
			ch <- prometheus.MustNewConstMetric(c.sourceWatchOK, prometheus.GaugeValue, float64(at.UnixNano())/1e9, h.Name, w)
		}
		if h.Interval > 0 {
			ch <- prometheus.MustNewConstMetric(c.sourceInterval, prometheus.GaugeValue, h.Interval.Seconds(), h.Name)
		}
		for reason, n := range h.Errors {
			ch <- prometheus.MustNewConstMetric(c.sourceErrors, prometheus.CounterValue, float64(n), h.Name, reason)
		}
		ch <- prometheus.MustNewConstHistogram(c.sourceDuration, h.DurationCount, h.DurationSum, h.DurationBuckets, h.Name)
		if !h.LogListTimestamp.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.loglistTimestamp, prometheus.GaugeValue, float64(h.LogListTimestamp.UnixNano())/1e9, h.Name)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
