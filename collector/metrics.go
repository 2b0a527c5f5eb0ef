package collector

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// Every metric the exporter defines, with its name, HELP, type and label
// names, is in this file. Other packages report values through Collector,
// Sources and Reloads, and define none.

// Label names.
const (
	labelWatch     = "watch"
	labelIssuer    = "issuer"
	labelVerdict   = "verdict"
	labelTBS       = "tbs_sha256"
	labelCert      = "cert_sha256"
	labelSerial    = "serial"
	labelSubjectCN = "subject_cn"
	labelDNSNames  = "dns_names"
	labelError     = "error"
	labelSource    = "source"
	labelReason    = "reason"
	labelLog       = "log"
	labelCheck     = "check"
)

// Issuances, from the state file.
var (
	newCertificates = counter("ct_new_certificates_total",
		"Issuances first seen for a watch, by the verdict they had then. Persisted in the state file.",
		labelWatch, labelIssuer, labelVerdict)
	parseErrors = counter("ct_certificate_parse_errors_total",
		"Issuances first seen for a watch with a certificate that a strict X.509 parser refuses (recorded all the same, from what the DER says). Persisted in the state file.",
		labelWatch)
	seriesDropped = counter("ct_certificate_series_dropped_total",
		"Recent issuances not exposed as series because of recent_series_limit, since the exporter started.",
		labelWatch)
	stateReadErrors = counter("ct_state_read_errors_total",
		"Reads of the state in PostgreSQL that failed: this replica's metrics stop following the other replicas' commits while they fail. Always 0 with a state file.")
	stateWriteErrors = counter("ct_state_write_errors_total",
		"Transactions on the state file that failed to be written.")
	stateCertificates = gauge("ct_state_certificates",
		"Issuances held in the state file.")
)

// The recent issuances: one series each (recent.go caches them).
var (
	firstSeen = gauge("ct_certificate_first_seen_timestamp_seconds",
		"When an issuance was first seen for a watch; one series per issuance within recent_window.",
		labelWatch, labelVerdict, labelTBS, labelCert, labelIssuer, labelSerial, labelSubjectCN, labelDNSNames)
	embeddedSCTs = gauge("ct_certificate_embedded_scts",
		"SCTs embedded in the final certificate of a recent issuance (absent while only the precertificate is known).",
		labelWatch, labelTBS)
	parseErrorInfo = gauge("ct_certificate_parse_error_info",
		"1 for a recent issuance with a certificate that a strict X.509 parser refuses; error says why. Such a certificate is more suspicious, not less.",
		labelWatch, labelTBS, labelError)
)

// CT logs, from the logs' status and the state file.
var (
	logTreeSize = gauge("ct_log_tree_size",
		"Size of the log's newest verified tree head.", labelLog)
	logSTHTime = gauge("ct_log_sth_timestamp_seconds",
		"Timestamp of the log's newest verified tree head.", labelLog)
	logSTHLag = gauge("ct_log_sth_lag_seconds",
		"Now minus the timestamp of the log's newest verified tree head.", labelLog)
	logBehind = gauge("ct_log_entries_behind",
		"Entries in the newest verified tree not processed yet.", labelLog)
	logProcessed = counter("ct_log_entries_processed_total",
		"Log entries processed (and proven to be in a verified tree). Persisted in the state file.", labelLog)
	logMalformed = counter("ct_log_malformed_entries_total",
		"Log entries that could not be read, counted and skipped. Persisted in the state file.", labelLog)
	logFailures = counter("ct_log_verification_failures_total",
		"Times the log failed a verification: a bad signature, a fork, a rollback, entries not in the tree.", labelLog, labelCheck)
	logOlderHeads = counter("ct_log_older_tree_heads_total",
		"Correctly signed tree heads older than the verified one and proven a prefix of it (caching frontends serve them); ignored.", labelLog)
	logMMD = gauge("ct_log_mmd_seconds",
		"The log's maximum merge delay.", labelLog)
	logFollowed = gauge("ct_log_followed",
		"1 for a log this replica follows now, 0 for one another replica follows (state in PostgreSQL, shared by lease).", labelLog)
	logReadonly = gauge("ct_log_readonly",
		"1 for a readonly log, followed up to the final tree head its log list gives.", labelLog)
)

// pollDurationBuckets are the buckets of ct_source_poll_duration_seconds: a
// crt.sh poll of many watches takes minutes, a log poll well under a second.
var pollDurationBuckets = []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// newSources defines the sources' health families: client_golang vectors
// that the monitor updates through Sources.
func newSources() *Sources {
	return &Sources{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ct_source_up",
			Help: "1 if the source's last poll succeeded, 0 if it failed; for crt.sh and Cert Spotter, 0 while any watch's last search failed or the API rate-limits the source. Absent until the first poll ends.",
		}, []string{labelSource}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ct_source_last_success_timestamp_seconds",
			Help: "When the source's last successful poll ended.",
		}, []string{labelSource}),
		watchLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ct_source_watch_last_success_timestamp_seconds",
			Help: "When the search source (crt.sh, Cert Spotter) last searched the watch successfully. Absent until it has.",
		}, []string{labelSource, labelWatch}),
		interval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ct_source_interval_seconds",
			Help: "The source's configured interval between polls.",
		}, []string{labelSource}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ct_source_errors_total",
			Help: "Failed requests to a source, and certificates it found that could not be recorded (reason record), by reason.",
		}, []string{labelSource, labelReason}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ct_source_poll_duration_seconds",
			Help:    "How long polls of the source took.",
			Buckets: pollDurationBuckets,
		}, []string{labelSource}),
		logListTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ct_loglist_timestamp_seconds",
			Help: "The log_list_timestamp of the log list in effect (Unix seconds). Absent until a list is accepted, and for a list without one.",
		}, []string{labelSource}),
	}
}

// NewReloads defines the configuration reload families, which the
// exporter's reloader updates; register it with the exporter's registry.
func NewReloads() *Reloads {
	return &Reloads{
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ct_config_last_reload_successful",
			Help: "1 if the last configuration reload succeeded (a failed one keeps the previous configuration).",
		}),
		timestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ct_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded successfully.",
		}),
		searchRound: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ct_source_search_round_seconds",
			Help: "Search sources (crt.sh, Cert Spotter): the least time a round of searches of all the watches takes, one request per watch at the source's request_interval. Above ct_source_interval_seconds, the watches are searched less often than every interval.",
		}, []string{labelSource}),
	}
}

// Describe sends the description of every family this package defines:
// for checks of dashboards, alerts and documentation against the code.
func Describe(ch chan<- *prometheus.Desc) {
	New(nil, nil, nil).Describe(ch)
	for _, f := range []constFamily{firstSeen, embeddedSCTs, parseErrorInfo, watchInfo} {
		ch <- f.desc
	}
	NewReloads().Describe(ch)
}

// constFamily is a family whose series are built from a snapshot.
type constFamily struct {
	name, help string
	typ        prometheus.ValueType
	labels     []string
	desc       *prometheus.Desc
	byName     []int // the labels' indices in name order, as client_golang writes them
}

func counter(name, help string, labels ...string) constFamily {
	return newConstFamily(prometheus.CounterValue, name, help, labels)
}

func gauge(name, help string, labels ...string) constFamily {
	return newConstFamily(prometheus.GaugeValue, name, help, labels)
}

func newConstFamily(typ prometheus.ValueType, name, help string, labels []string) constFamily {
	f := constFamily{name: name, help: help, typ: typ, labels: labels, desc: prometheus.NewDesc(name, help, labels, nil)}
	f.byName = make([]int, len(labels))
	for i := range f.byName {
		f.byName[i] = i
	}
	slices.SortFunc(f.byName, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	return f
}

// metric is one series; label values in the order the family names them.
func (f constFamily) metric(v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(f.desc, f.typ, v, labels...)
}

// family is an empty dto family, for series built in bulk with series.
func (f constFamily) family() *dto.MetricFamily {
	mf := &dto.MetricFamily{Name: proto.String(f.name), Help: proto.String(f.help), Type: dto.MetricType_GAUGE.Enum()}
	if f.typ == prometheus.CounterValue {
		mf.Type = dto.MetricType_COUNTER.Enum()
	}
	return mf
}

// series is what metric(v, labels...).Write writes, built directly: tens
// of thousands of recent series are built in a fraction of the time. The
// label values must be valid UTF-8, as metric checks.
func (f constFamily) series(v float64, labels ...string) *dto.Metric {
	pairs := make([]dto.LabelPair, len(labels))
	m := &dto.Metric{Label: make([]*dto.LabelPair, len(labels))}
	for i, j := range f.byName {
		pairs[i].Name, pairs[i].Value = &f.labels[j], &labels[j]
		m.Label[i] = &pairs[i]
	}
	if f.typ == prometheus.CounterValue {
		m.Counter = &dto.Counter{Value: &v}
	} else {
		m.Gauge = &dto.Gauge{Value: &v}
	}
	return m
}

// Watches' own labels (the labels key), for the alerting rules to join.
// Its label names are the watches' label names, chosen in the
// configuration, so its Desc is made at each scrape (WatchInfo is an
// unchecked collector); watchInfoHelp is its HELP, watchInfo its Desc with
// no label of the user's, for the checks of the documentation.
const (
	watchInfoName = "ct_watch_info"
	watchInfoHelp = "Always 1, one series per configured watch, carrying the watch's labels (the labels key; empty when a watch does not set one): join it in rules to route a watch's alerts, e.g. * on (watch) group_left (team) ct_watch_info."
)

var watchInfo = gauge(watchInfoName, watchInfoHelp, labelWatch)
