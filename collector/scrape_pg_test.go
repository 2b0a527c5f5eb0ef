package collector

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/pgstate"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

// pgRecent10k opens a pgstate store on a fresh database of srv and commits
// 10,000 recent issuances to it: 10 watches at a series limit of 1000.
func pgRecent10k(tb testing.TB, srv *pgtest.Server, db string) *pgstate.Store {
	tb.Helper()
	s, err := pgstate.Open(srv.CreateDB(tb, db), pgstate.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 1000, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return watch.Unreviewed, true
	}}); err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	for batch := 0; batch < 10; batch++ {
		c := &state.Commit{Source: "log"}
		for i := batch * 1000; i < (batch+1)*1000; i++ {
			w := fmt.Sprintf("example%d.com", i%10)
			c.Observations = append(c.Observations, state.Observation{Issuance: storetest.Issuance(i, now), Matches: []state.Match{{Watch: w, Verdict: watch.Unreviewed}}})
		}
		if _, err := s.Commit(c); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

func pgHandler(s *pgstate.Store) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(s, health{}, promslog.NewNopLogger()), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return NewHandler(reg, s, promslog.NewNopLogger())
}

func scrapeOnce(tb testing.TB, h http.Handler) []byte {
	tb.Helper()
	req, _ := http.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	rec := &keep{header: http.Header{}}
	h.ServeHTTP(rec, req)
	if rec.code != 0 && rec.code != 200 {
		tb.Fatalf("scrape: %d", rec.code)
	}
	return rec.body
}

type keep struct {
	header http.Header
	code   int
	body   []byte
}

func (k *keep) Header() http.Header { return k.header }
func (k *keep) WriteHeader(code int) {
	if k.code == 0 {
		k.code = code
	}
}
func (k *keep) Write(b []byte) (int, error) { k.body = append(k.body, b...); return len(b), nil }

// A scrape sends no query: with the PostgreSQL server stopped, /metrics
// still answers with all 10,000 recent series, from the store's mirror.
func TestScrapeRecent10kPostgresWithoutQuery(t *testing.T) {
	srv := pgtest.Start(t)
	s := pgRecent10k(t, srv, "scrape10k")
	h := pgHandler(s)
	count := func() int {
		n := 0
		for _, line := range strings.Split(string(scrapeOnce(t, h)), "\n") {
			if strings.HasPrefix(line, "ct_certificate_first_seen_timestamp_seconds{") {
				n++
			}
		}
		return n
	}
	if n := count(); n != 10000 {
		t.Fatalf("%d recent series before stopping the server, want 10000", n)
	}
	srv.Stop(t)
	defer srv.StartAgain(t)
	for range 3 {
		if n := count(); n != 10000 {
			t.Fatalf("%d recent series with the server stopped, want 10000", n)
		}
	}
}

// BenchmarkScrapeRecent10kPostgres serves /metrics with 10,000 recent
// series held in PostgreSQL (pgstate) and reports the p50 and p99, as
// BenchmarkScrape10kSeries does for the state file. Skipped without
// PostgreSQL, like every pgtest user.
//
//	go test -run '^$' -bench ScrapeRecent10kPostgres -benchtime 200x ./collector
func BenchmarkScrapeRecent10kPostgres(b *testing.B) {
	srv := pgtest.Start(b)
	h := pgHandler(pgRecent10k(b, srv, "bench10k"))
	for _, enc := range []string{"identity", "gzip", "zstd"} {
		b.Run(enc, func(b *testing.B) { benchScrapes(b, h, enc) })
	}
}
