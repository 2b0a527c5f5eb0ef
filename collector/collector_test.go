package collector

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

type health struct {
	logs []monitor.LogStatus
}

func (h health) Logs() []monitor.LogStatus { return h.logs }
func (h health) Watches() []string         { return []string{"example.com", "example.org"} }

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func newStore(t *testing.T) *state.Store {
	t.Helper()
	s, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	err = s.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 10, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		for _, m := range is.Watches {
			if m.Watch == w {
				return m.Verdict, true
			}
		}
		return 0, false
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func add(t *testing.T, s *state.Store, i int, scts int, issuer watch.Issuer, names []string, m ...state.Match) {
	t.Helper()
	addWithParseError(t, s, i, scts, issuer, names, "", m...)
}

func addWithParseError(t *testing.T, s *state.Store, i int, scts int, issuer watch.Issuer, names []string, parseError string, m ...state.Match) {
	t.Helper()
	is := &state.Issuance{
		ParseError:   parseError,
		TBSSHA256:    sha256.Sum256([]byte(fmt.Sprint("tbs", i))),
		CertSHA256:   sha256.Sum256([]byte(fmt.Sprint("cert", i))),
		Serial:       fmt.Sprintf("%04x", i),
		Issuer:       issuer,
		SubjectCN:    names[0],
		DNSNames:     names,
		NotAfter:     now.Add(90 * 24 * time.Hour),
		EmbeddedSCTs: scts,
	}
	if err := s.Update(func(tx *state.Tx) error { _, err := tx.Observe(is, m); return err }); err != nil {
		t.Fatal(err)
	}
}

func TestCollectorExposition(t *testing.T) {
	s := newStore(t)
	r11 := watch.Issuer{CN: "R11", O: "Let's Encrypt"}
	evil := watch.Issuer{O: "Evil \"Corp\"\n"}
	bad := watch.Issuer{CN: "\xff\xfeCA"} // invalid UTF-8 must not break the exposition
	add(t, s, 1, 2, r11, []string{"www.example.com", "example.com"}, state.Match{Watch: "example.com", Verdict: watch.IssuerAllowed})
	addWithParseError(t, s, 2, -1, evil, []string{"<b>x</b>.example.com"}, "x509: cannot parse URI \"http://[::1\": \xff",
		state.Match{Watch: "example.com", Verdict: watch.IssuerUnexpected})
	add(t, s, 3, -1, bad, []string{"\xffexample.org"}, state.Match{Watch: "example.org", Verdict: watch.Unreviewed})
	c := New(s, health{}, promslog.NewNopLogger())
	src := c.Sources()
	src.SourceStarted("crtsh", time.Hour, []string{"http_429", "timeout"})
	for range 3 {
		src.CountError("crtsh", "http_429")
	}
	src.ObservePoll("crtsh", false, now.Add(-time.Hour), 1500*time.Millisecond)
	src.ObservePoll("crtsh", true, now, 2*time.Second)
	src.WatchSearched("crtsh", "example.com", now)
	src.WatchSearched("crtsh", "example.org", now.Add(-90*time.Minute))
	// A source removed on reload, and a removed watch, leave no series.
	src.SourceStarted("gone", time.Minute, []string{"timeout"})
	src.ObservePoll("gone", true, now, time.Second)
	src.WatchSearched("gone", "example.com", now)
	src.SourceGone("gone")
	src.WatchSearched("crtsh", "example.net", now)
	src.WatchGone("crtsh", "example.net")

	tbs1 := fmt.Sprintf("%x", sha256.Sum256([]byte("tbs1")))
	cert1 := fmt.Sprintf("%x", sha256.Sum256([]byte("cert1")))
	tbs2 := fmt.Sprintf("%x", sha256.Sum256([]byte("tbs2")))
	cert2 := fmt.Sprintf("%x", sha256.Sum256([]byte("cert2")))
	tbs3 := fmt.Sprintf("%x", sha256.Sum256([]byte("tbs3")))
	cert3 := fmt.Sprintf("%x", sha256.Sum256([]byte("cert3")))
	expected := `
# HELP ct_certificate_embedded_scts SCTs embedded in the final certificate of a recent issuance (absent while only the precertificate is known).
# TYPE ct_certificate_embedded_scts gauge
ct_certificate_embedded_scts{tbs_sha256="` + tbs1 + `",watch="example.com"} 2
# HELP ct_certificate_first_seen_timestamp_seconds When an issuance was first seen for a watch; one series per issuance within recent_window.
# TYPE ct_certificate_first_seen_timestamp_seconds gauge
ct_certificate_first_seen_timestamp_seconds{cert_sha256="` + cert1 + `",dns_names="www.example.com,example.com",issuer="R11",serial="0001",subject_cn="www.example.com",tbs_sha256="` + tbs1 + `",verdict="issuer_allowed",watch="example.com"} 1.7955216e+09
ct_certificate_first_seen_timestamp_seconds{cert_sha256="` + cert2 + `",dns_names="<b>x</b>.example.com",issuer="Evil \"Corp\"\\u{a}",serial="0002",subject_cn="<b>x</b>.example.com",tbs_sha256="` + tbs2 + `",verdict="issuer_unexpected",watch="example.com"} 1.7955216e+09
ct_certificate_first_seen_timestamp_seconds{cert_sha256="` + cert3 + `",dns_names="\\xffexample.org",issuer="\\xff\\xfeCA",serial="0003",subject_cn="\\xffexample.org",tbs_sha256="` + tbs3 + `",verdict="unreviewed",watch="example.org"} 1.7955216e+09
# HELP ct_certificate_parse_error_info 1 for a recent issuance with a certificate that a strict X.509 parser refuses; error says why. Such a certificate is more suspicious, not less.
# TYPE ct_certificate_parse_error_info gauge
ct_certificate_parse_error_info{error="x509: cannot parse URI \"http://[::1\": \\xff",tbs_sha256="` + tbs2 + `",watch="example.com"} 1
# HELP ct_certificate_parse_errors_total Issuances first seen for a watch with a certificate that a strict X.509 parser refuses (recorded all the same, from what the DER says). Persisted in the state file.
# TYPE ct_certificate_parse_errors_total counter
ct_certificate_parse_errors_total{watch="example.com"} 1
ct_certificate_parse_errors_total{watch="example.org"} 0
# HELP ct_certificate_series_dropped_total Recent issuances not exposed as series because of recent_series_limit, since the exporter started.
# TYPE ct_certificate_series_dropped_total counter
ct_certificate_series_dropped_total{watch="example.com"} 0
ct_certificate_series_dropped_total{watch="example.org"} 0
# HELP ct_new_certificates_total Issuances first seen for a watch, by the verdict they had then. Persisted in the state file.
# TYPE ct_new_certificates_total counter
ct_new_certificates_total{issuer="Evil \"Corp\"\\u{a}",verdict="issuer_unexpected",watch="example.com"} 1
ct_new_certificates_total{issuer="R11",verdict="issuer_allowed",watch="example.com"} 1
ct_new_certificates_total{issuer="\\xff\\xfeCA",verdict="unreviewed",watch="example.org"} 1
# HELP ct_source_errors_total Failed requests to a source, and certificates it found that could not be recorded (reason record), by reason.
# TYPE ct_source_errors_total counter
ct_source_errors_total{reason="http_429",source="crtsh"} 3
ct_source_errors_total{reason="timeout",source="crtsh"} 0
# HELP ct_source_interval_seconds The source's configured interval between polls.
# TYPE ct_source_interval_seconds gauge
ct_source_interval_seconds{source="crtsh"} 3600
# HELP ct_source_last_success_timestamp_seconds When the source's last successful poll ended.
# TYPE ct_source_last_success_timestamp_seconds gauge
ct_source_last_success_timestamp_seconds{source="crtsh"} 1.7955216e+09
# HELP ct_source_poll_duration_seconds How long polls of the source took.
# TYPE ct_source_poll_duration_seconds histogram
ct_source_poll_duration_seconds_bucket{source="crtsh",le="0.1"} 0
ct_source_poll_duration_seconds_bucket{source="crtsh",le="0.5"} 0
ct_source_poll_duration_seconds_bucket{source="crtsh",le="1"} 0
ct_source_poll_duration_seconds_bucket{source="crtsh",le="2.5"} 2
ct_source_poll_duration_seconds_bucket{source="crtsh",le="5"} 2
ct_source_poll_duration_seconds_bucket{source="crtsh",le="10"} 2
ct_source_poll_duration_seconds_bucket{source="crtsh",le="30"} 2
ct_source_poll_duration_seconds_bucket{source="crtsh",le="60"} 2
ct_source_poll_duration_seconds_bucket{source="crtsh",le="120"} 2
ct_source_poll_duration_seconds_bucket{source="crtsh",le="300"} 2
ct_source_poll_duration_seconds_bucket{source="crtsh",le="600"} 2
ct_source_poll_duration_seconds_bucket{source="crtsh",le="1800"} 2
ct_source_poll_duration_seconds_bucket{source="crtsh",le="+Inf"} 2
ct_source_poll_duration_seconds_sum{source="crtsh"} 3.5
ct_source_poll_duration_seconds_count{source="crtsh"} 2
# HELP ct_source_up 1 if the source's last poll succeeded, 0 if it failed; for crt.sh and Cert Spotter, 0 while any watch's last search failed or the API rate-limits the source. Absent until the first poll ends.
# TYPE ct_source_up gauge
ct_source_up{source="crtsh"} 1
# HELP ct_source_watch_last_success_timestamp_seconds When the search source (crt.sh, Cert Spotter) last searched the watch successfully. Absent until it has.
# TYPE ct_source_watch_last_success_timestamp_seconds gauge
ct_source_watch_last_success_timestamp_seconds{source="crtsh",watch="example.com"} 1.7955216e+09
ct_source_watch_last_success_timestamp_seconds{source="crtsh",watch="example.org"} 1.7955162e+09
# HELP ct_state_certificates Issuances held in the state file.
# TYPE ct_state_certificates gauge
ct_state_certificates 3
# HELP ct_state_read_errors_total Reads of the state in PostgreSQL that failed: this replica's metrics stop following the other replicas' commits while they fail. Always 0 with a state file.
# TYPE ct_state_read_errors_total counter
ct_state_read_errors_total 0
# HELP ct_state_write_errors_total Transactions on the state file that failed to be written.
# TYPE ct_state_write_errors_total counter
ct_state_write_errors_total 0
`
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	// As NewHandler serves them: the collector's and the recent series.
	served := prometheus.Gatherers{reg, newRecent(s)}
	if err := testutil.GatherAndCompare(served, strings.NewReader(expected)); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(served); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}

// A source that has not finished a poll exposes no up and no last success,
// so that a long first poll cannot look like an outage.
func TestCollectorBeforeFirstPoll(t *testing.T) {
	s := newStore(t)
	c := New(s, health{}, promslog.NewNopLogger())
	c.Sources().SourceStarted("crtsh", time.Hour, []string{"timeout"})
	if n := testutil.CollectAndCount(c, "ct_source_up", "ct_source_last_success_timestamp_seconds", "ct_source_watch_last_success_timestamp_seconds"); n != 0 {
		t.Fatalf("%d up/last-success series before the first poll", n)
	}
	if n := testutil.CollectAndCount(c, "ct_source_errors_total"); n != 1 {
		t.Fatalf("errors_total series = %d, want 1", n)
	}
}

func TestCollectorLogMetrics(t *testing.T) {
	s := newStore(t)
	err := s.Update(func(tx *state.Tx) error {
		if err := tx.AddCounter(state.CounterLogProcessed, []string{"argon"}, 1000); err != nil {
			return err
		}
		if err := tx.AddCounter(state.CounterLogProcessed, []string{"retired"}, 5); err != nil {
			return err
		}
		return tx.AddCounter(state.CounterLogMalformed, []string{"argon"}, 2)
	})
	if err != nil {
		t.Fatal(err)
	}
	h := health{logs: []monitor.LogStatus{
		{Log: "argon", Known: true, TreeSize: 1500, STHTime: now.Add(-30 * time.Second), Position: 1000, MMD: 24 * time.Hour,
			Failures: map[string]uint64{"consistency": 1, "sth_signature": 0}, OlderTreeHeads: 3},
		{Log: "pending", MMD: time.Hour, Readonly: true, Failures: map[string]uint64{"consistency": 0}},
	}}
	c := New(s, h, promslog.NewNopLogger())
	c.now = func() time.Time { return now }
	expected := `
# HELP ct_log_entries_behind Entries in the newest verified tree not processed yet.
# TYPE ct_log_entries_behind gauge
ct_log_entries_behind{log="argon"} 500
# HELP ct_log_entries_processed_total Log entries processed (and proven to be in a verified tree). Persisted in the state file.
# TYPE ct_log_entries_processed_total counter
ct_log_entries_processed_total{log="argon"} 1000
ct_log_entries_processed_total{log="pending"} 0
# HELP ct_log_malformed_entries_total Log entries that could not be read, counted and skipped. Persisted in the state file.
# TYPE ct_log_malformed_entries_total counter
ct_log_malformed_entries_total{log="argon"} 2
ct_log_malformed_entries_total{log="pending"} 0
# HELP ct_log_mmd_seconds The log's maximum merge delay.
# TYPE ct_log_mmd_seconds gauge
ct_log_mmd_seconds{log="argon"} 86400
ct_log_mmd_seconds{log="pending"} 3600
# HELP ct_log_older_tree_heads_total Correctly signed tree heads older than the verified one and proven a prefix of it (caching frontends serve them); ignored.
# TYPE ct_log_older_tree_heads_total counter
ct_log_older_tree_heads_total{log="argon"} 3
ct_log_older_tree_heads_total{log="pending"} 0
# HELP ct_log_followed 1 for a log this replica follows now, 0 for one another replica follows (state in PostgreSQL, shared by lease).
# TYPE ct_log_followed gauge
ct_log_followed{log="argon"} 1
ct_log_followed{log="pending"} 1
# HELP ct_log_readonly 1 for a readonly log, followed up to the final tree head its log list gives.
# TYPE ct_log_readonly gauge
ct_log_readonly{log="argon"} 0
ct_log_readonly{log="pending"} 1
# HELP ct_log_sth_lag_seconds Now minus the timestamp of the log's newest verified tree head.
# TYPE ct_log_sth_lag_seconds gauge
ct_log_sth_lag_seconds{log="argon"} 30
# HELP ct_log_sth_timestamp_seconds Timestamp of the log's newest verified tree head.
# TYPE ct_log_sth_timestamp_seconds gauge
ct_log_sth_timestamp_seconds{log="argon"} 1.79552157e+09
# HELP ct_log_tree_size Size of the log's newest verified tree head.
# TYPE ct_log_tree_size gauge
ct_log_tree_size{log="argon"} 1500
# HELP ct_log_verification_failures_total Times the log failed a verification: a bad signature, a fork, a rollback, entries not in the tree.
# TYPE ct_log_verification_failures_total counter
ct_log_verification_failures_total{check="consistency",log="argon"} 1
ct_log_verification_failures_total{check="consistency",log="pending"} 0
ct_log_verification_failures_total{check="sth_signature",log="argon"} 0
`
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	names := []string{"ct_log_entries_behind", "ct_log_entries_processed_total", "ct_log_malformed_entries_total", "ct_log_mmd_seconds",
		"ct_log_older_tree_heads_total", "ct_log_followed", "ct_log_readonly", "ct_log_sth_lag_seconds", "ct_log_sth_timestamp_seconds", "ct_log_tree_size", "ct_log_verification_failures_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), names...); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}

// Beyond max_issuers_per_watch, ct_new_certificates_total shows a watch's
// further issuers as issuer="other", while their first-seen series keep
// their own (bounded) issuer label.
func TestCollectorIssuersBeyondLimit(t *testing.T) {
	s := newStore(t)
	err := s.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 10, MaxIssuersPerWatch: 2, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return is.Watches[0].Verdict, true
	}})
	if err != nil {
		t.Fatal(err)
	}
	m := state.Match{Watch: "example.com", Verdict: watch.Unreviewed}
	long := strings.Repeat("Rogue CA ", 4000)
	for i, cn := range []string{"R11", "E5", long, "R11", "R10"} {
		add(t, s, i, -1, watch.Issuer{CN: cn}, []string{fmt.Sprintf("h%d.example.com", i)}, m)
	}
	c := New(s, health{}, promslog.NewNopLogger())
	expected := `
# HELP ct_new_certificates_total Issuances first seen for a watch, by the verdict they had then. Persisted in the state file.
# TYPE ct_new_certificates_total counter
ct_new_certificates_total{issuer="E5",verdict="unreviewed",watch="example.com"} 1
ct_new_certificates_total{issuer="R11",verdict="unreviewed",watch="example.com"} 2
ct_new_certificates_total{issuer="other",verdict="unreviewed",watch="example.com"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(expected), "ct_new_certificates_total"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := prometheus.Gatherers{reg, newRecent(s)}.Gather()
	if err != nil {
		t.Fatal(err)
	}
	issuers := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "ct_certificate_first_seen_timestamp_seconds" {
			continue
		}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "issuer" {
					issuers[l.GetValue()] = true
					if len(l.GetValue()) > watch.MaxLabel {
						t.Errorf("issuer label of %d bytes", len(l.GetValue()))
					}
				}
			}
		}
	}
	if len(issuers) != 4 || !issuers["R10"] || !issuers[watch.Label(long)] || issuers["other"] {
		t.Fatalf("first-seen series issuers %v: want their own, R10 and the long one included", issuers)
	}
}
