package ctlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/sunlightlog"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTailRFC6962 tails an RFC 6962 log of CT_EXPORTER_BENCH_ENTRIES
// entries (default 100,000) from the beginning: run with -benchtime 1x.
// The log is served by the in-process fake, so the CPU reported includes
// the server's JSON encoding; -cpuprofile separates the two.
func BenchmarkTailRFC6962(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("CT_EXPORTER_BENCH_ENTRIES"))
	if n == 0 {
		n = 100000
	}
	fake := ctlogfake.New(b)
	fake.MaxBatch = 1000
	ca := testpki.NewIssuer(b, "R11", "Let's Encrypt")
	var pool [][]byte
	for i := 0; i < 256; i++ {
		names := []string{fmt.Sprintf("www.site%d.example.net", i)}
		for j := 0; j < i%3; j++ {
			names = append(names, fmt.Sprintf("alt%d.site%d.example.net", j, i))
		}
		iss, err := ca.Issue(testpki.Leaf{CN: names[0], DNSNames: names})
		if err != nil {
			b.Fatal(err)
		}
		pool = append(pool, iss.Final)
	}
	needles := 0
	for i := 0; fake.Size() < int64(n); i++ {
		if i%10000 == 5000 {
			iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("n%d.example.com", i)}, SCTs: 2})
			if err != nil {
				b.Fatal(err)
			}
			fake.AddPrecert(iss.Precert, ca.DER, ca.DER)
			fake.AddCert(iss.Final, ca.DER)
			needles++
			continue
		}
		fake.AddCert(pool[i%len(pool)], ca.DER)
	}
	fake.Publish()
	d, _ := watch.NormalizeDomain("example.com")
	set := watch.NewSet([]watch.Watch{watch.NewWatch(d, true)})
	for b.Loop() {
		store, env := benchEnv(b, set)
		l, err := NewRFC6962("bench", fake.URL+"/", fake.PublicKeyDER(), Options{
			Interval: time.Minute, Timeout: time.Minute, Start: "beginning", Workers: 4, BatchSize: 1000, MMD: time.Hour,
		})
		if err != nil {
			b.Fatal(err)
		}
		start, cpu := time.Now(), cpuTime()
		if err := l.Poll(context.Background(), env); err != nil {
			b.Fatal(err)
		}
		wall, used := time.Since(start), cpuTime()-cpu
		if got := store.Snapshot().Certificates; got != uint64(needles) {
			b.Fatalf("found %d issuances, want the %d needles", got, needles)
		}
		b.ReportMetric(float64(fake.Size())/wall.Seconds(), "entries/s")
		b.ReportMetric(float64(used.Microseconds())/float64(fake.Size()), "cpu-µs/entry")
		store.Close()
	}
}

// BenchmarkTailStatic tails a real Sunlight log of CT_EXPORTER_BENCH_STATIC
// entries (default 2,000) from the beginning: run with -benchtime 1x.
// Submitting is slow (Sunlight sequences every 100 ms), so the log is small;
// the CPU reported includes Skylight serving the tiles in its own process
// only in wall time, not in cpu-µs/entry.
func BenchmarkTailStatic(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("CT_EXPORTER_BENCH_STATIC"))
	if n == 0 {
		n = 2000
	}
	root, ca := testpki.NewChain(b, "Bench Root", "Test PKI", "E7", "Let's Encrypt")
	log := sunlightlog.Start(b, root.Cert)
	ctx := context.Background()
	jobs := make(chan int)
	var wg sync.WaitGroup
	needles := 0
	for i := 0; i < n; i += 1000 {
		needles++
	}
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				name := fmt.Sprintf("www.site%d.example.net", i)
				if i%1000 == 0 {
					name = fmt.Sprintf("n%d.example.com", i)
				}
				iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{name}})
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := log.AddChain(ctx, iss.Final, ca.DER, root.DER); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := log.WaitSize(wctx, int64(n)); err != nil {
		b.Fatal(err)
	}
	d, _ := watch.NormalizeDomain("example.com")
	set := watch.NewSet([]watch.Watch{watch.NewWatch(d, true)})
	for b.Loop() {
		store, env := benchEnv(b, set)
		l, err := NewStatic("bench", log.MonitoringPrefix(), log.PublicKey(), Options{
			Interval: time.Minute, Timeout: time.Minute, Start: "beginning", Workers: 4, BatchSize: 256 * 8, MMD: time.Hour,
		})
		if err != nil {
			b.Fatal(err)
		}
		start, cpu := time.Now(), cpuTime()
		if err := l.Poll(ctx, env); err != nil {
			b.Fatal(err)
		}
		wall, used := time.Since(start), cpuTime()-cpu
		size := l.Status().Position
		if got := store.Snapshot().Certificates; got != uint64(needles) {
			b.Fatalf("found %d issuances, want the %d needles", got, needles)
		}
		b.ReportMetric(float64(size)/wall.Seconds(), "entries/s")
		b.ReportMetric(float64(used.Microseconds())/float64(size), "cpu-µs/entry")
		store.Close()
	}
}

func benchEnv(b *testing.B, set *watch.Set) (*state.Store, *ctsource.Env) {
	b.Helper()
	store, err := state.Open(filepath.Join(b.TempDir(), "s.state"), state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return store, &ctsource.Env{Recorder: &ctsource.Recorder{Store: store, Policy: func() *watch.Set { return set }}, Logger: promslog.NewNopLogger()}
}
