package harness

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

// RequestTimeout bounds a request to the exporter: a guard against a hung
// exporter, not a measure of speed. An exporter starved of CPU (a test run
// under nice on a loaded machine) takes seconds to answer a scrape.
const RequestTimeout = 60 * time.Second

// Exporter is a running ct_exporter process, listening on Addr.
type Exporter struct {
	*Process
	t      testing.TB
	Addr   string
	Scheme string // http, or https when its web configuration sets TLS
	Client *http.Client
}

// StartExporter starts Binary with --web.listen-address (a free loopback
// address), --log.level=debug and args.
func StartExporter(t testing.TB, args ...string) *Exporter {
	t.Helper()
	return StartExporterWith(t, Binary(t), nil, args...)
}

// StartExporterWith starts the program bin (a ct_exporter) with
// --web.listen-address, --log.level=debug and args, in that order;
// configure, when not nil, adjusts the command first (user, directory,
// environment, a wrapper).
func StartExporterWith(t testing.TB, bin string, configure func(*exec.Cmd), args ...string) *Exporter {
	t.Helper()
	addr := testenv.FreeAddr(t)
	p := StartProcessWith(t, configure, bin, append([]string{"--web.listen-address=" + addr, "--log.level=debug"}, args...)...)
	return &Exporter{Process: p, t: t, Addr: addr, Scheme: "http", Client: &http.Client{Timeout: RequestTimeout}}
}

// URL is the exporter's URL for path.
func (e *Exporter) URL(path string) string { return e.Scheme + "://" + e.Addr + path }

// WaitReady polls /-/ready until it answers 200.
func (e *Exporter) WaitReady() {
	e.t.Helper()
	e.Eventually("ready", func() bool {
		res, err := e.Client.Get(e.URL("/-/ready"))
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
}

// Eventually polls cond until it holds; it fails the test after a minute,
// or at once if the exporter exits.
func (e *Exporter) Eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-e.Exited:
			e.t.Fatalf("exporter exited while waiting for %s", what)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Scrape reads /metrics, or fails the test.
func (e *Exporter) Scrape() map[string]*dto.MetricFamily {
	e.t.Helper()
	res, err := e.Client.Get(e.URL("/metrics"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		e.t.Fatalf("/metrics: %s", res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return families
}

// Value sums the samples of a family whose labels include the given pairs.
func Value(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	total := 0.0
	f := families[name]
	if f == nil {
		return 0
	}
	for _, m := range f.Metric {
		if !HasLabels(m, labels...) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total
}

// Count is the number of series of a family whose labels include the
// given pairs.
func Count(families map[string]*dto.MetricFamily, name string, labels ...string) int {
	n := 0
	if f := families[name]; f != nil {
		for _, m := range f.Metric {
			if HasLabels(m, labels...) {
				n++
			}
		}
	}
	return n
}

// HasLabels reports whether a series has every label name-value pair.
func HasLabels(m *dto.Metric, pairs ...string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range m.Label {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// LabelMap is a series' labels.
func LabelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.Label {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// Run runs Binary with args to its end and returns its exit code and
// combined output.
func Run(t testing.TB, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(Binary(t), args...).CombinedOutput()
	return exitCode(t, err), string(out)
}

// RunSplit runs Binary with args to its end and returns its exit code,
// standard output and standard error.
func RunSplit(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return exitCode(t, cmd.Run()), stdout.String(), stderr.String()
}

func exitCode(t testing.TB, err error) int {
	t.Helper()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}
