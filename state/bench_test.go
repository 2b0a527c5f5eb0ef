package state

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/watch"
)

// benchState returns a state file holding n issuances for 10 watches, first
// seen over the year before base, built once and reused (set
// CT_EXPORTER_BENCH_DIR to keep it between runs).
func benchState(b *testing.B, n int, base time.Time) string {
	b.Helper()
	dir := os.Getenv("CT_EXPORTER_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("bench-%d.state", n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	start := base.Add(-365 * 24 * time.Hour)
	step := 365 * 24 * time.Hour / time.Duration(n)
	c := &clock{t: start}
	s, err := Open(path+".tmp", Options{Now: c.Now})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.SetPolicy(unchanged(168*time.Hour, 1000)); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	const batch = 10000
	for i := 0; i < n; i += batch {
		err := s.Update(func(tx *Tx) error {
			for j := i; j < min(i+batch, n); j++ {
				tx.now = start.Add(time.Duration(j) * step)
				is := issuance(j, tx.now)
				is.NotAfter = tx.now.Add(398 * 24 * time.Hour)
				m := []Match{{Watch: "example" + strconv.Itoa(j%10) + ".com", Verdict: watch.Verdict(1 + j%4)}}
				if _, err := tx.Observe(is, m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(path)
	b.Logf("built %d issuances in %v: %d MB (%d bytes per issuance)", n, time.Since(t0).Round(time.Millisecond), fi.Size()>>20, fi.Size()/int64(n))
	return path
}

var benchNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// BenchmarkOpen1M opens a 1,000,000-issuance state and restores its recent
// series: what a restart costs.
func BenchmarkOpen1M(b *testing.B) {
	path := benchState(b, 1000000, benchNow)
	c := &clock{t: benchNow}
	for b.Loop() {
		s, err := Open(path, Options{Now: c.Now})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetPolicy(unchanged(168*time.Hour, 1000)); err != nil {
			b.Fatal(err)
		}
		if snap := s.Snapshot(); snap.Certificates != 1000000 || len(snap.Recent) == 0 {
			b.Fatalf("opened %d issuances, %d recent", snap.Certificates, len(snap.Recent))
		}
		s.Close()
	}
}

// BenchmarkObserve1M adds one issuance per transaction (durable, fsync'd) to
// a 1,000,000-issuance state: the cost of recording a new certificate.
func BenchmarkObserve1M(b *testing.B) {
	path := benchState(b, 1000000, benchNow)
	work := filepath.Join(b.TempDir(), "work.state")
	copyFile(b, path, work)
	c := &clock{t: benchNow}
	s, err := Open(work, Options{Now: c.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPolicy(unchanged(168*time.Hour, 1000)); err != nil {
		b.Fatal(err)
	}
	before, _ := os.Stat(work)
	i := 2000000
	for b.Loop() {
		i++
		is := issuance(i, benchNow)
		err := s.Update(func(tx *Tx) error {
			_, err := tx.Observe(is, []Match{{Watch: "example1.com", Verdict: watch.Unreviewed}})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	after, _ := os.Stat(work)
	b.ReportMetric(float64(after.Size()-before.Size())/float64(b.N), "file-bytes/op")
}

func copyFile(b *testing.B, from, to string) {
	data, err := os.ReadFile(from)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		b.Fatal(err)
	}
}
