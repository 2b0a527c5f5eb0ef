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

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/promslog"

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

// serve returns the decoded body of a scrape and its Content-Type; the
// Content-Encoding must be want, "" for none.
func serve(t *testing.T, h http.Handler, accept, encoding, want string) (string, string) {
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
	got := rec.Header().Get("Content-Encoding")
	if got != want {
		t.Fatalf("Accept-Encoding %q: Content-Encoding %q, want %q", encoding, got, want)
	}
	if !slices.Contains(rec.Header().Values("Vary"), "Accept-Encoding") {
		t.Errorf("Vary %q: without Accept-Encoding", rec.Header().Values("Vary"))
	}
	body := io.Reader(rec.Body)
	switch got {
	case "gzip":
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = zr
	case "zstd":
		zr, err := zstd.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		body = zr
	}
	out, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), rec.Header().Get("Content-Type")
}

// scrape returns the decoded body of a scrape of /metrics with query.
func scrape(t *testing.T, h http.Handler, query, encoding string) string {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics"+query, nil)
	req.Header.Set("Accept-Encoding", encoding)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body := io.Reader(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("%s: status %d: %s", query, rec.Code, rec.Body)
	}
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
	return string(out)
}

// lines is an exposition's lines but promhttp's own metrics, sorted:
// families may come in another order, never their content.
func lines(s string) []string {
	var l []string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if !strings.Contains(line, "promhttp_metric_handler_") {
			l = append(l, line)
		}
	}
	slices.Sort(l)
	return l
}

// recentCollector collects the recent-issuance series of a snapshot as any
// collector does (what is served is compared with it).
type recentCollector []state.Recent

func (rc recentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range []constFamily{firstSeen, embeddedSCTs, parseErrorInfo} {
		ch <- f.desc
	}
}

func (rc recentCollector) Collect(ch chan<- prometheus.Metric) {
	eachRecent(rc, func(f constFamily, v float64, labels ...string) { ch <- f.metric(v, labels...) })
}

// liveRecent collects the recent series from a fresh snapshot on every
// scrape: what the handler's cache must be indistinguishable from.
type liveRecent struct{ st RecentState }

func (l liveRecent) Describe(ch chan<- *prometheus.Desc) { recentCollector(nil).Describe(ch) }
func (l liveRecent) Collect(ch chan<- prometheus.Metric) {
	recentCollector(l.st.Snapshot().Recent).Collect(ch)
}

// recentStore is a state with issuances added by number, judged by the
// verdicts set.
type recentStore struct {
	*state.Store
	t        *testing.T
	mu       sync.Mutex
	verdicts map[string]watch.Verdict // by serial
}

func newRecentStore(t *testing.T, clock *testClock) *recentStore {
	s, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rs := &recentStore{Store: s, t: t, verdicts: map[string]watch.Verdict{}}
	rs.judge()
	return rs
}

// judge sets the policy again, as a reload does: the verdicts are judged again.
func (s *recentStore) judge() {
	s.t.Helper()
	s.mu.Lock()
	verdicts := s.verdicts
	s.mu.Unlock()
	if err := s.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 100, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		if v, ok := verdicts[is.Serial]; ok {
			return v, true
		}
		return watch.Unreviewed, true
	}}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *recentStore) authorize(i int) {
	s.t.Helper()
	s.mu.Lock()
	s.verdicts = map[string]watch.Verdict{fmt.Sprint(i): watch.Authorized}
	s.mu.Unlock()
	s.judge()
}

func (s *recentStore) add(i, scts int) {
	s.t.Helper()
	is := &state.Issuance{TBSSHA256: sha256.Sum256([]byte(fmt.Sprint(i))), Serial: fmt.Sprint(i), Issuer: watch.Issuer{CN: "R11"},
		DNSNames: []string{fmt.Sprintf("h%d.example.com", i)}, NotAfter: now.Add(24 * time.Hour), EmbeddedSCTs: scts}
	if i%3 == 0 {
		is.ParseError = fmt.Sprintf("x509: malformed extension %d", i)
	}
	if err := s.Update(func(tx *state.Tx) error {
		_, err := tx.Observe(is, []state.Match{{Watch: "example.com", Verdict: watch.Unreviewed}})
		return err
	}); err != nil {
		s.t.Fatal(err)
	}
}

// /metrics serves what promhttp over the plain collectors would, in every
// format and encoding, and a change of the recent series at once.
func TestHandlerServesWhatPromhttpWould(t *testing.T) {
	clock := &testClock{t: now}
	s := newRecentStore(t, clock)
	s.add(1, 2)
	s.add(2, -1)
	c := New(s, health{}, promslog.NewNopLogger())
	c.Sources().SourceStarted("crtsh", time.Hour, []string{"timeout"})
	c.Sources().CountError("crtsh", "timeout")
	c.Sources().ObservePoll("crtsh", true, now, time.Second)

	// The reference: promhttp over the plain collectors.
	refReg := prometheus.NewRegistry()
	refReg.MustRegister(c, liveRecent{s})
	ref := promhttp.HandlerFor(refReg, promhttp.HandlerOpts{EnableOpenMetrics: true})

	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	h := NewHandler(reg, s, promslog.NewNopLogger())

	check := func(what string) {
		t.Helper()
		for _, accept := range []string{"", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"} {
			want, wantType := serve(t, ref, accept, "", "")
			for enc, wantEnc := range map[string]string{"": "", "identity": "", "gzip": "gzip", "zstd": "zstd", "zstd;q=0.5, gzip": "gzip", "br": ""} {
				got, gotType := serve(t, h, accept, enc, wantEnc)
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
	for _, names := range [][]string{{"ct_certificate_embedded_scts"}, {"ct_state_certificates"}, {"ct_certificate_first_seen_timestamp_seconds", "ct_source_up"}} {
		q := "?name[]=" + strings.Join(names, "&name[]=")
		for _, enc := range []string{"", "gzip"} {
			want := scrape(t, ref, q, "")
			if got := scrape(t, h, q, enc); !slices.Equal(lines(got), lines(want)) {
				t.Errorf("%s, encoding %q: differs from promhttp:\n got:\n%s\nwant:\n%s", q, enc, got, want)
			}
		}
	}
	s.add(3, 3)
	check("a third issuance")
	if got, _ := serve(t, h, "", "", ""); !strings.Contains(got, `serial="3"`) {
		t.Fatal("the new issuance is not served")
	}
	s.authorize(2)
	check("an issuance authorized")
	clock.Add(2 * time.Hour) // all leave the window
	check("after the window")
	if got, _ := serve(t, h, "", "", ""); strings.Contains(got, "ct_certificate_first_seen_timestamp_seconds{") {
		t.Fatal("series out of the window still served")
	}
}

// /metrics counts its requests (promhttp_metric_handler_*), as promhttp's
// own handler does.
func TestHandlerIsInstrumented(t *testing.T) {
	s := newRecentStore(t, &testClock{t: now})
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(s, health{}, promslog.NewNopLogger()))
	h := NewHandler(reg, s, promslog.NewNopLogger())
	serve(t, h, "", "gzip", "gzip")
	got, _ := serve(t, h, "", "", "")
	for _, want := range []string{
		`promhttp_metric_handler_requests_total{code="200"} 1`,
		`promhttp_metric_handler_requests_in_flight 1`,
		`promhttp_metric_handler_errors_total{cause="gathering"} 0`,
		`ct_state_certificates 0`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("no %s in:\n%s", want, got)
		}
	}
}

// firstSeenSeries is the first-seen series of an exposition, by serial,
// with their verdict.
func firstSeenSeries(exposition string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, "ct_certificate_first_seen_timestamp_seconds{") {
			continue
		}
		label := func(name string) string {
			_, v, _ := strings.Cut(line, name+`="`)
			v, _, _ = strings.Cut(v, `"`)
			return v
		}
		out[label("serial")] = label("verdict")
	}
	return out
}

// The recent families are built once per state generation: the same
// families are served until an issuance is recorded, judged again or
// leaves the window, and then the new ones.
func TestRecentFamiliesFollowTheState(t *testing.T) {
	clock := &testClock{t: now}
	s := newRecentStore(t, clock)
	r := newRecent(s)
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(s, health{}, promslog.NewNopLogger()))
	h := NewHandler(reg, s, promslog.NewNopLogger())
	gathered := func() []*dto.MetricFamily {
		t.Helper()
		mfs, err := r.Gather()
		if err != nil {
			t.Fatal(err)
		}
		return mfs
	}
	// served polls the exposition until it shows want, with a deadline.
	served := func(what string, want map[string]string) {
		t.Helper()
		var got map[string]string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			body, _ := serve(t, h, "", "", "")
			if got = firstSeenSeries(body); fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
		}
		t.Fatalf("%s: first-seen series %v, want %v", what, got, want)
	}

	served("nothing recorded", map[string]string{})
	if len(gathered()) != 0 {
		t.Fatal("families with nothing recorded")
	}
	s.add(1, 2)
	s.add(2, -1)
	served("two issuances", map[string]string{"1": "unreviewed", "2": "unreviewed"})
	before := gathered()
	if again := gathered(); len(again) == 0 || &again[0] != &before[0] {
		t.Fatal("the families were built again for an unchanged state")
	}
	gz := variant{expfmt.NewFormat(expfmt.TypeTextPlain), "gzip"}
	encoded := func() []byte {
		t.Helper()
		b, err := r.encode(gz, nil)
		if err != nil || len(b) == 0 {
			t.Fatalf("encoding: %d bytes, %v", len(b), err)
		}
		return b
	}
	if a, b := encoded(), encoded(); &a[0] != &b[0] {
		t.Fatal("the families were encoded again for an unchanged state")
	}
	clock.Add(10 * time.Minute)
	s.add(3, 1)
	served("an issuance recorded", map[string]string{"1": "unreviewed", "2": "unreviewed", "3": "unreviewed"})
	s.authorize(2)
	served("an issuance authorized", map[string]string{"1": "unreviewed", "2": "authorized", "3": "unreviewed"})
	clock.Add(55 * time.Minute) // 1 and 2 are 65 minutes old, 3 is 55
	served("two issuances aged out", map[string]string{"3": "unreviewed"})
	clock.Add(10 * time.Minute)
	served("all aged out", map[string]string{})
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

// The recent series are reused until they change, also when there are
// none (the usual state of a quiet deployment).
func TestHandlerReusesRecentSeries(t *testing.T) {
	s, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	counted := &snapshotCounter{Store: s}
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(s, health{}, promslog.NewNopLogger()))
	h := NewHandler(reg, counted, promslog.NewNopLogger())
	for range 3 {
		for enc, want := range map[string]string{"": "", "gzip": "gzip"} {
			if got, _ := serve(t, h, "", enc, want); !strings.Contains(got, "ct_state_certificates 0") {
				t.Fatalf("scrape without the state families:\n%s", got)
			}
		}
	}
	if counted.n != 1 {
		t.Fatalf("%d snapshots for 6 scrapes of an unchanged, empty state; want 1", counted.n)
	}
}
