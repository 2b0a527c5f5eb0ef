package collector

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/promslog"
)

// ct_loglist_timestamp_seconds is the log_list_timestamp a loglist source
// reports, one series per list that has one; none for a list before it is
// accepted or without one, and none once the source is gone.
func TestCollectorLogListTimestamp(t *testing.T) {
	listed := time.Date(2026, 10, 1, 12, 30, 0, 0, time.UTC)
	c := New(newStore(t), health{}, promslog.NewNopLogger())
	src := c.Sources()
	for _, s := range []string{"google", "apple", "gone"} {
		src.SourceStarted(s, time.Hour, []string{"bad_signature"})
	}
	src.LogListAccepted("google", listed)
	src.CountError("google", "bad_signature")
	src.CountError("google", "bad_signature")
	src.LogListAccepted("apple", time.Time{})
	src.LogListAccepted("gone", listed)
	src.SourceGone("gone")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ct_loglist_timestamp_seconds The log_list_timestamp of the log list in effect (Unix seconds). Absent until a list is accepted, and for a list without one.
# TYPE ct_loglist_timestamp_seconds gauge
ct_loglist_timestamp_seconds{source="google"} 1.7908578e+09
# HELP ct_source_errors_total Failed requests to a source, and certificates it found that could not be recorded (reason record), by reason.
# TYPE ct_source_errors_total counter
ct_source_errors_total{reason="bad_signature",source="apple"} 0
ct_source_errors_total{reason="bad_signature",source="google"} 2
`), "ct_loglist_timestamp_seconds", "ct_source_errors_total"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
	// Restarted (a reload, or the name reused by another type of source),
	// the source has taken no list yet.
	src.SourceStarted("google", time.Hour, []string{"bad_signature"})
	if n := testutil.CollectAndCount(c, "ct_loglist_timestamp_seconds"); n != 0 {
		t.Fatalf("%d ct_loglist_timestamp_seconds series after the restart, want 0", n)
	}
}
