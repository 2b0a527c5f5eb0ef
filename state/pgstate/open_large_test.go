package pgstate

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

// TestOpenLarge fills a database with CT_PG_LARGE issuances (Import, in
// one transaction, pipelined) first seen two days ago, outside the recent
// window, then measures Open + SetPolicy and the heap in use after a GC,
// against the same for 1,000 issuances. Slow, so only with the variable:
//
//	CT_PG_LARGE=1000000 go test -run TestOpenLarge -v -timeout 1h ./state/pgstate
//
// Measured (2 shared cores, server and test together): 1,000 issuances:
// Open+SetPolicy 54 ms, heap in use 1.0 MiB; 1,000,000: 57 ms, 1.1 MiB
// (filled by Import in 1m34s). Neither grows with the database. Before
// Import analyzed the tables, the 1,000,000 took 2.2 s: without
// statistics, the planner read the window by a hash join over every
// issuance.
func TestOpenLarge(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CT_PG_LARGE"))
	if n <= 0 {
		t.Skip("set CT_PG_LARGE to the number of issuances, e.g. 1000000")
	}
	srv := pgtest.Start(t)
	for _, size := range []int{1000, n} {
		url := srv.CreateDB(t, fmt.Sprintf("large%d", size))
		s, err := Open(url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-48 * time.Hour)
		start := time.Now()
		_, err = s.Import(false, func(yield func(state.Item) error) error {
			for i := 0; i < size; i++ {
				is := storetest.Issuance(i, old)
				is.FirstSeen = old
				is.Watches = []state.WatchMatch{{Watch: fmt.Sprintf("example%d.com", i%10), FirstSeen: old, Verdict: watch.Unreviewed}}
				if err := yield(state.Item{Issuance: is}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		fill := time.Since(start)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		start = time.Now()
		s, err = Open(url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetPolicy(storetest.Unchanged(time.Hour, 1000)); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		t.Logf("%d issuances: filled in %v (%.0f/s); Open+SetPolicy %v; heap in use %.1f MiB after open (%.1f MiB before)",
			size, fill.Round(time.Millisecond), float64(size)/fill.Seconds(), took.Round(time.Millisecond),
			float64(after.HeapInuse)/(1<<20), float64(before.HeapInuse)/(1<<20))
		s.Close()
	}
}
