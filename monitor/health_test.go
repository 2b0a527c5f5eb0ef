package monitor

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
)

// reports records what the monitor reports, one line per call.
type reports struct {
	mu    sync.Mutex
	lines []string
}

func (r *reports) add(format string, args ...any) {
	r.mu.Lock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *reports) SourceStarted(source string, interval time.Duration, reasons []string) {
	r.add("started %s %v %s", source, interval, strings.Join(reasons, ","))
}
func (r *reports) ObservePoll(source string, ok bool, end time.Time, took time.Duration) {
	r.add("poll %s %v", source, ok)
}
func (r *reports) CountError(source, reason string) { r.add("error %s %s", source, reason) }
func (r *reports) WatchSearched(source, watch string, at time.Time) {
	r.add("searched %s %s", source, watch)
}
func (r *reports) WatchGone(source, watch string) { r.add("watch gone %s %s", source, watch) }
func (r *reports) SourceGone(source string)       { r.add("gone %s", source) }
func (r *reports) LogListAccepted(source string, at time.Time) {
	r.add("log list %s %s", source, at.UTC().Format(time.RFC3339))
}

// count is how many lines are line.
func (r *reports) count(line string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		if l == line {
			n++
		}
	}
	return n
}

func (r *reports) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

func TestHealthReports(t *testing.T) {
	r := &reports{}
	watched := map[string]bool{"example.com": true, "example.org": true}
	var mu sync.Mutex
	h := newHealth("crtsh", r, func(w string) bool { mu.Lock(); defer mu.Unlock(); return watched[w] })
	h.started(time.Hour)
	start := time.Now()
	h.observe(true, start, 2*time.Second)
	h.countError(ctsource.ReasonTimeout)
	h.observe(false, start.Add(time.Hour), time.Second)
	h.watchSearched("example.com", start)
	h.watchSearched("example.org", start)
	// example.org removed on reload: forgotten, and a search of it that
	// ends after the removal does not bring it back.
	mu.Lock()
	delete(watched, "example.org")
	mu.Unlock()
	h.keepWatches(func(w string) bool { return w != "example.org" })
	h.watchSearched("example.org", start.Add(time.Minute))
	h.gone()

	want := []string{
		"started crtsh 1h0m0s " + strings.Join(ctsource.Reasons, ","),
		"poll crtsh true",
		"error crtsh " + ctsource.ReasonTimeout,
		"poll crtsh false",
		"searched crtsh example.com",
		"searched crtsh example.org",
		"watch gone crtsh example.org",
		"gone crtsh",
	}
	if got := r.String(); got != strings.Join(want, "\n") {
		t.Fatalf("reported:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	s := h.snapshot("crtsh", func(string) bool { return true })
	if !s.Polled || s.Up || s.DurationCount != 2 || s.DurationSum != 3 || !s.LastSuccess.Equal(start.Add(2*time.Second)) ||
		s.Errors[ctsource.ReasonTimeout] != 1 || len(s.Errors) != len(ctsource.Reasons) || !slices.Equal(keys(s.WatchLastSuccess), []string{"example.com"}) {
		t.Fatalf("health = %+v", s)
	}
}

func keys(m map[string]time.Time) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The monitor reports where ReportTo says: a source's start, polls and
// searches, a watch removed on reload, and a source removed on reload. A
// source restarted on reload is not removed: its series go on.
func TestMonitorReportsHealth(t *testing.T) {
	fake := crtshfake.New()
	defer fake.Close()
	store := openState(t)
	m := New(store, promslog.NewNopLogger(), Shard{})
	r := &reports{}
	m.ReportTo(r)
	m.Start()
	defer m.Stop()

	config := func(watches, interval string) string {
		return fmt.Sprintf("watches: [%s]\nsources: [{name: crtsh, type: crtsh, url: %q, interval: %s, request_interval: 0s}]\n", watches, fake.URL, interval)
	}
	if err := m.Apply(parse(t, config("{domain: example.com}, {domain: example.org}", "1h"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first poll reported", func() bool {
		return r.count("poll crtsh true") == 1 && r.count("searched crtsh example.com") == 1 && r.count("searched crtsh example.org") == 1
	})
	if r.count("started crtsh 1h0m0s "+strings.Join(ctsource.Reasons, ",")) != 1 {
		t.Fatalf("the start was not reported:\n%s", r)
	}

	// example.org removed, and the interval changed: the source restarts.
	if err := m.Apply(parse(t, config("{domain: example.com}", "2h"))); err != nil {
		t.Fatal(err)
	}
	if r.count("watch gone crtsh example.org") != 1 || r.count("started crtsh 2h0m0s "+strings.Join(ctsource.Reasons, ",")) != 1 || r.count("gone crtsh") != 0 {
		t.Fatalf("after a reload removing a watch and changing the interval:\n%s", r)
	}

	// The source removed.
	if err := m.Apply(parse(t, "watches: [{domain: example.com}]\nsources: [{name: other, type: crtsh, url: 'http://127.0.0.1:1/'}]\n")); err != nil {
		t.Fatal(err)
	}
	if r.count("gone crtsh") != 1 {
		t.Fatalf("the removed source was not reported gone:\n%s", r)
	}
}
