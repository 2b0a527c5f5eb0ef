package e2e

import (
	"fmt"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// The disk fills up (simulated with RLIMIT_FSIZE on the running exporter:
// its writes past the limit fail with EFBIG, as with ENOSPC): commits fail
// and are counted in ct_state_write_errors_total, nothing is counted that
// is not written, and once space returns every issuance is recorded,
// exactly once.
func TestDiskFull(t *testing.T) {
	crtsh := crtshfake.New()
	defer crtsh.Close()
	ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")
	issue := func(name string) {
		iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{name}, SCTs: 2})
		if err != nil {
			t.Fatal(err)
		}
		crtsh.Add(iss.Precert)
		crtsh.Add(iss.Final)
	}
	issue("a.example.com")
	issue("b.example.com")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, fmt.Sprintf("watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh, url: %q, interval: 200ms, request_interval: 0s}]\n", crtsh.URL+"/"))
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "ct.state"))
	e.WaitReady()
	e.Eventually("the first issuances", func() bool { return harness.Value(e.Scrape(), "ct_new_certificates_total") == 2 })

	pid := e.Cmd.Process.Pid
	full := unix.Rlimit{Cur: 8192, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &full, nil); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	for _, n := range []string{"c.example.com", "d.example.com", "e.example.com"} {
		issue(n)
	}
	var m map[string]*dto.MetricFamily
	e.Eventually("write errors", func() bool {
		m = e.Scrape()
		return harness.Value(m, "ct_state_write_errors_total") >= 3
	})
	// A write error is counted in the middle of a poll, ct_source_up only
	// when the poll ends (with its duration, under the same lock): wait for
	// the poll whose writes failed to end. Every poll from then on fails
	// its writes, as each tries to record c, d and e again.
	failing := pollCount(m, "crtsh")
	e.Eventually("the end of a poll whose writes failed", func() bool {
		m = e.Scrape()
		return pollCount(m, "crtsh") > failing
	})
	if got := harness.Value(m, "ct_new_certificates_total"); got != 2 {
		t.Fatalf("counted %v while nothing could be written", got)
	}
	if harness.Count(m, "ct_source_up", "source", "crtsh") != 1 || harness.Value(m, "ct_source_up", "source", "crtsh") != 0 {
		t.Error("polls whose results cannot be written look successful")
	}

	space := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &space, nil); err != nil {
		t.Fatal(err)
	}
	e.Eventually("recovery", func() bool { return harness.Value(e.Scrape(), "ct_new_certificates_total") >= 5 })
	m = e.Scrape()
	if got := harness.Value(m, "ct_new_certificates_total"); got != 5 {
		t.Fatalf("counted %v, want 5", got)
	}
	if got := harness.Count(m, "ct_certificate_first_seen_timestamp_seconds"); got != 5 {
		t.Fatalf("%d series, want 5", got)
	}
	errs := harness.Value(m, "ct_state_write_errors_total")
	polls := pollCount(m, "crtsh")
	e.Eventually("two more polls", func() bool { return pollCount(e.Scrape(), "crtsh") >= polls+2 })
	if harness.Value(e.Scrape(), "ct_state_write_errors_total") != errs {
		t.Error("write errors continue after space returned")
	}
	t.Logf("%v write errors while the disk was full; all 5 issuances recorded once space returned", errs)
}

func pollCount(m map[string]*dto.MetricFamily, source string) uint64 {
	for _, s := range m["ct_source_poll_duration_seconds"].GetMetric() {
		if harness.HasLabels(s, "source", source) {
			return s.GetHistogram().GetSampleCount()
		}
	}
	return 0
}
