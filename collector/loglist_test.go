package collector

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/monitor"
)

// ct_loglist_timestamp_seconds is the log_list_timestamp a loglist source's
// health reports, one series per list that has one; none for other
// sources, nor for a list before it is accepted.
func TestCollectorLogListTimestamp(t *testing.T) {
	listed := time.Date(2026, 10, 1, 12, 30, 0, 0, time.UTC)
	h := health{sources: []monitor.SourceHealth{
		{Name: "google", Type: "loglist", Polled: true, Up: true, LogListTimestamp: listed, Errors: map[string]uint64{"bad_signature": 2}},
		{Name: "apple", Type: "loglist", Polled: true, Errors: map[string]uint64{"bad_signature": 0}},
		{Name: "crtsh", Type: "crtsh", Polled: true, Up: true, Errors: map[string]uint64{"bad_signature": 0}},
	}}
	c := New(newStore(t), h, promslog.NewNopLogger())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ct_loglist_timestamp_seconds The log_list_timestamp of the log list in effect (Unix seconds). Absent until a list is accepted, and for a list without one.
# TYPE ct_loglist_timestamp_seconds gauge
ct_loglist_timestamp_seconds{source="google"} 1.7908578e+09
# HELP ct_source_errors_total Failed requests to a source, and certificates it found that could not be recorded (reason record), by reason.
# TYPE ct_source_errors_total counter
ct_source_errors_total{reason="bad_signature",source="apple"} 0
ct_source_errors_total{reason="bad_signature",source="crtsh"} 0
ct_source_errors_total{reason="bad_signature",source="google"} 2
`), "ct_loglist_timestamp_seconds", "ct_source_errors_total"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}
