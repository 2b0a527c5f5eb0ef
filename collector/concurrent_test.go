package collector

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// 100 scrapers at once, for 5s (CT_EXPORTER_SCRAPE_SECONDS to change it),
// against 10,000 recent series on loopback: every answer is complete, and
// the heap stays bounded (the recent families are built once and shared,
// not copied per scrape).
func TestConcurrentScrapes(t *testing.T) {
	seconds := 5
	if n, err := fmt.Sscan(os.Getenv("CT_EXPORTER_SCRAPE_SECONDS"), &seconds); n != 1 || err != nil {
		seconds = 5
	}
	s, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 1000, Verdict: func(string, *state.Issuance) (watch.Verdict, bool) {
		return watch.Unreviewed, true
	}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.Update(func(tx *state.Tx) error {
		for i := 0; i < 10000; i++ {
			w := fmt.Sprintf("example%d.com", i%10)
			is := &state.Issuance{TBSSHA256: sha256.Sum256([]byte(fmt.Sprint(i))), Serial: fmt.Sprint(i), Issuer: watch.Issuer{CN: "R11"},
				DNSNames: []string{fmt.Sprintf("host%d.%s", i, w)}, NotAfter: now.Add(24 * time.Hour), EmbeddedSCTs: 2}
			if _, err := tx.Observe(is, []state.Match{{Watch: w, Verdict: watch.Unreviewed}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c := New(s, health{}, promslog.NewNopLogger())
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	srv := httptest.NewServer(NewHandler(reg, s, promslog.NewNopLogger()))
	defer srv.Close()

	var scrapes, failures atomic.Int64
	var firstFailure atomic.Value
	fail := func(err error) {
		failures.Add(1)
		firstFailure.CompareAndSwap(nil, err.Error())
	}
	var peak atomic.Uint64
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	// No client timeout: on a loaded machine under the race detector a
	// scrape shared with 99 others may take long, and slow is not
	// incomplete. Only a scrape that never ends fails the test.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for g := 0; g < 100; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
			for i := 0; time.Now().Before(deadline); i++ {
				req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
				if i%2 == 0 {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				res, err := client.Do(req)
				if err != nil {
					fail(err)
					continue
				}
				body := io.Reader(res.Body)
				if res.Header.Get("Content-Encoding") == "gzip" {
					if body, err = gzip.NewReader(res.Body); err != nil {
						fail(err)
						res.Body.Close()
						continue
					}
				}
				n := 0
				sc := bufio.NewScanner(body)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				for sc.Scan() {
					if strings.HasPrefix(sc.Text(), "ct_certificate_first_seen_timestamp_seconds{") {
						n++
					}
				}
				res.Body.Close()
				switch {
				case sc.Err() != nil:
					fail(sc.Err())
				case n != 10000:
					fail(fmt.Errorf("%d first-seen series, want 10000", n))
				}
				scrapes.Add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	wg.Wait()
	close(done)
	if failures.Load() > 0 {
		t.Fatalf("%d of %d scrapes failed or were incomplete; the first: %v", failures.Load(), scrapes.Load(), firstFailure.Load())
	}
	// The recent families are built once and shared; what grows with
	// scrapers is only their buffers and compressors.
	if peak.Load() > 400<<20 {
		t.Fatalf("heap in use peaked at %d MB under 100 scrapers", peak.Load()>>20)
	}
	t.Logf("%d complete scrapes by 100 concurrent scrapers in %ds, heap in use peaked at %d MB", scrapes.Load(), seconds, peak.Load()>>20)
}
