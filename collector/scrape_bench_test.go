package collector

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// BenchmarkScrape10kSeries serves /metrics with 10,000 recent-certificate
// series (10 watches at the default cap of 1000), with Prometheus's Accept
// header and each Accept-Encoding, and reports the p50 and p99: NewHandler
// ("handler"); promhttp over the registry and the recent families gathered
// once per change ("gatherer": encoded and compressed again on every
// scrape); and promhttp over the plain collectors ("uncached"), which
// gathers the recent series again on every scrape too.
//
//	go test -run '^$' -bench Scrape10k -benchtime 200x ./collector
func BenchmarkScrape10kSeries(b *testing.B) {
	s, err := state.Open(filepath.Join(b.TempDir(), "s.state"), state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 1000, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return watch.Unreviewed, true
	}}); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	err = s.Update(func(tx *state.Tx) error {
		for i := 0; i < 10000; i++ {
			w := fmt.Sprintf("example%d.com", i%10)
			is := &state.Issuance{
				TBSSHA256: sha256.Sum256([]byte(fmt.Sprint("tbs", i))), CertSHA256: sha256.Sum256([]byte(fmt.Sprint("cert", i))),
				Serial: fmt.Sprintf("%032x", i), Issuer: watch.Issuer{CN: "R11", O: "Let's Encrypt"}, SubjectCN: fmt.Sprintf("host%d.%s", i, w),
				DNSNames: []string{fmt.Sprintf("host%d.%s", i, w), w}, NotAfter: now.Add(90 * 24 * time.Hour), EmbeddedSCTs: 2,
			}
			if _, err := tx.Observe(is, []state.Match{{Watch: w, Verdict: watch.Unreviewed}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	c := New(s, health{}, promslog.NewNopLogger())
	uncached := prometheus.NewRegistry()
	uncached.MustRegister(c, liveRecent{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handlers := map[string]http.Handler{
		"handler":  NewHandler(reg, s, promslog.NewNopLogger()),
		"gatherer": promhttp.HandlerFor(prometheus.Gatherers{reg, newRecent(s)}, promhttp.HandlerOpts{EnableOpenMetrics: true}),
		"uncached": promhttp.HandlerFor(uncached, promhttp.HandlerOpts{EnableOpenMetrics: true}),
	}
	for _, name := range []string{"handler", "gatherer", "uncached"} {
		for _, enc := range []string{"identity", "gzip", "zstd"} {
			b.Run(name+"/"+enc, func(b *testing.B) { benchScrapes(b, handlers[name], enc) })
		}
	}
}

// benchScrapes scrapes h as Prometheus does, with this Accept-Encoding,
// and reports the p50 and p99.
func benchScrapes(b *testing.B, h http.Handler, enc string) {
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		req := httptest.NewRequest("GET", "/metrics", nil)
		// What Prometheus 2.42 and later send.
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
		req.Header.Set("Accept-Encoding", enc)
		rec := &discard{header: http.Header{}}
		h.ServeHTTP(rec, req)
		took = append(took, time.Since(start))
		if rec.Code != 200 || rec.n < 100<<10 {
			b.Fatalf("%d, %d bytes", rec.Code, rec.n)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}

// discard is a ResponseWriter that counts what is written, as a
// connection to the scraper would take it: no buffer to grow.
type discard struct {
	header http.Header
	Code   int
	n      int
}

func (d *discard) Header() http.Header { return d.header }
func (d *discard) WriteHeader(code int) {
	if d.Code == 0 {
		d.Code = code
	}
}
func (d *discard) Write(b []byte) (int, error) {
	if d.Code == 0 {
		d.Code = 200
	}
	d.n += len(b)
	return len(b), nil
}
