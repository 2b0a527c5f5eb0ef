package collector

import (
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func serve(t *testing.T, h http.Handler, accept, encoding string) (string, string) {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if encoding != "" {
		req.Header.Set("Accept-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	body := io.Reader(rec.Body)
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = zr
	}
	out, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), rec.Header().Get("Content-Type")
}

// lines is an exposition's lines, sorted: families may come in another
// order, never their content.
func lines(s string) []string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(l)
	return l
}

func TestHandlerServesWhatPromhttpWould(t *testing.T) {
	clock := &testClock{t: now}
	s, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 100, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return watch.Unreviewed, true
	}}); err != nil {
		t.Fatal(err)
	}
	add := func(i, scts int) {
		is := &state.Issuance{TBSSHA256: sha256.Sum256([]byte(fmt.Sprint(i))), Serial: fmt.Sprint(i), Issuer: watch.Issuer{CN: "R11"},
			DNSNames: []string{fmt.Sprintf("h%d.example.com", i)}, NotAfter: now.Add(24 * time.Hour), EmbeddedSCTs: scts}
		if i%3 == 0 {
			is.ParseError = fmt.Sprintf("x509: malformed extension %d", i)
		}
		if err := s.Update(func(tx *state.Tx) error {
			_, err := tx.Observe(is, []state.Match{{Watch: "example.com", Verdict: watch.Unreviewed}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	add(1, 2)
	add(2, -1)
	h := health{sources: []monitor.SourceHealth{{Name: "crtsh", Polled: true, Up: true, Errors: map[string]uint64{"timeout": 1}, DurationBuckets: map[float64]uint64{1: 1}, DurationCount: 1}}}

	// The reference: promhttp over the plain collector.
	refReg := prometheus.NewRegistry()
	refReg.MustRegister(New(s, h, promslog.NewNopLogger()))
	ref := promhttp.HandlerFor(refReg, promhttp.HandlerOpts{EnableOpenMetrics: true})

	c := New(s, h, promslog.NewNopLogger())
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	cached := NewHandler(reg, c, s, promslog.NewNopLogger())

	check := func(what string) {
		t.Helper()
		for _, accept := range []string{"", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"} {
			want, wantType := serve(t, ref, accept, "")
			for _, enc := range []string{"", "gzip"} {
				got, gotType := serve(t, cached, accept, enc)
				if gotType != wantType {
					t.Errorf("%s: Content-Type %q, want %q", what, gotType, wantType)
				}
				if !slices.Equal(lines(got), lines(want)) {
					t.Errorf("%s (Accept %q, encoding %q): differs from promhttp:\n got:\n%s\nwant:\n%s", what, accept, enc, got, want)
				}
				if strings.HasPrefix(accept, "application/openmetrics") && !strings.HasSuffix(got, "# EOF\n") {
					t.Errorf("%s: OpenMetrics without # EOF at the end", what)
				}
			}
		}
	}
	check("two issuances")
	add(3, 3) // a change is served at once
	check("a third issuance")
	if got, _ := serve(t, cached, "", ""); !strings.Contains(got, `serial="3"`) {
		t.Fatal("the new issuance is not served")
	}
	clock.Add(2 * time.Hour) // all leave the window
	check("after the window")
	if got, _ := serve(t, cached, "", ""); strings.Contains(got, "ct_certificate_first_seen_timestamp_seconds{") {
		t.Fatal("series out of the window still served")
	}
}

// snapshotCounter counts the full snapshots the handler takes.
type snapshotCounter struct {
	*state.Store
	mu sync.Mutex
	n  int
}

func (s *snapshotCounter) Snapshot() state.Snapshot {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return s.Store.Snapshot()
}

// The encoded recent series are reused until they change, also when there
// are none (the usual state of a quiet deployment).
func TestHandlerReusesRecentSeries(t *testing.T) {
	s, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	counted := &snapshotCounter{Store: s}
	c := New(s, health{}, promslog.NewNopLogger())
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	h := NewHandler(reg, c, counted, promslog.NewNopLogger())
	for range 3 {
		for _, enc := range []string{"", "gzip"} {
			if got, _ := serve(t, h, "", enc); !strings.Contains(got, "ct_state_certificates 0") {
				t.Fatalf("scrape without the state families:\n%s", got)
			}
		}
	}
	if counted.n != 1 {
		t.Fatalf("%d snapshots for 6 scrapes of an unchanged, empty state; want 1", counted.n)
	}
}
