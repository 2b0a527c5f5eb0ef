package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/internal/certspotterfake"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/internal/sunlightlog"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// TestReplicasChaos runs three replicas on one PostgreSQL database, with
// two CT logs (the fake RFC 6962 log and a real Sunlight log), crt.sh and
// Cert Spotter, while issuances keep arriving: replicas are SIGKILLed at
// random (and replaced), one is SIGSTOPped past its lease and resumed, and
// the PostgreSQL server crashes and comes back once every replica counted
// a failed read and stopped following its logs (its leases lapsed). At the end every
// issuance is counted exactly once, every recent series is there, each log
// is followed by exactly one replica at its tree size, the sources are
// balanced (no replica follows two logs or two search sources), and no
// verification failed.
//
// crt.sh and Cert Spotter are polled by one replica at a time: each
// replica reaches them through a recording proxy of its own (the only
// difference between the replicas' configurations), and the requests,
// in the order they arrive, change hands no more often than the sources'
// leases changed hands (their epochs), but for the replica resumed after
// its stop.
//
// The short form (CI) uses leases of 3 s renewed every 1 s. With
// CT_EXPORTER_CHAOS_SECONDS=N it runs chaos for N seconds with the default
// leases (15 s, renewed every 5 s) and reports the figures.
func TestReplicasChaos(t *testing.T) {
	seconds, long := 20, false
	if n, err := strconv.Atoi(os.Getenv("CT_EXPORTER_CHAOS_SECONDS")); err == nil && n > 0 {
		seconds, long = n, true
	}
	leaseArgs := []string{"--state.lease-duration=3s", "--state.lease-renew=1s"}
	leaseDuration := 3 * time.Second
	if long {
		leaseArgs, leaseDuration = nil, 15*time.Second
	}

	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "ct")
	root, ca := testpki.NewChain(t, "Chaos Root", "Test PKI", "R11", "Let's Encrypt")
	fake := ctlogfake.New(t)
	fake.MaxBatch = 20
	sun := sunlightlog.Start(t, root.Cert)
	crtsh := crtshfake.New()
	defer crtsh.Close()
	api := certspotterfake.New()
	defer api.Close()
	api.SetPageSize(3)

	// truth: the tbs_sha256 of every issuance planted for the watch.
	truth := map[string]bool{}
	var sunSize int64
	ctx := context.Background()
	n := 0
	arrive := func(issuances, noise int) {
		t.Helper()
		for i := 0; i < noise; i++ {
			iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("n%d.example.net", fake.Size())}})
			if err != nil {
				t.Fatal(err)
			}
			fake.AddCert(iss.Final, ca.DER)
		}
		for i := 0; i < issuances; i++ {
			n++
			iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("h%d.example.com", n)}, SCTs: 2})
			if err != nil {
				t.Fatal(err)
			}
			c, err := cert.Parse(iss.Final)
			if err != nil {
				t.Fatal(err)
			}
			truth[fmt.Sprintf("%x", c.TBSSHA256)] = true
			// Each issuance in one to four of the sources, often several.
			where := 1 + rand.IntN(15) // bits: fake log, Sunlight, crt.sh, Cert Spotter
			if where&1 != 0 {
				fake.AddPrecert(iss.Precert, ca.DER, ca.DER)
				fake.AddCert(iss.Final, ca.DER)
			}
			if where&2 != 0 {
				if _, err := sun.AddPreChain(ctx, iss.Precert, ca.DER, root.DER); err != nil {
					t.Fatal(err)
				}
				if _, err := sun.AddChain(ctx, iss.Final, ca.DER, root.DER); err != nil {
					t.Fatal(err)
				}
				sunSize += 2
			}
			if where&4 != 0 {
				crtsh.Add(iss.Precert)
				crtsh.Add(iss.Final)
			}
			if where&8 != 0 {
				for _, der := range [][]byte{iss.Precert, iss.Final} {
					if _, err := api.Add(der); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		fake.Publish()
	}
	arrive(10, 50)

	dir := t.TempDir()
	// Each replica (each process: a replacement is a new one) reaches the
	// search sources through proxies of its own, which note who sent what.
	polls := &searchPolls{by: map[string][]int{}}
	gen := 0
	config := func() string {
		gen++
		cfg := filepath.Join(dir, fmt.Sprintf("ct%d.yml", gen))
		testenv.WriteFile(t, cfg, fmt.Sprintf(`
watches: [{domain: example.com}]
sources:
  - {name: crtsh, type: crtsh, url: %q, interval: 300ms, request_interval: 0s}
  - {name: certspotter, type: certspotter, url: %q, interval: 300ms, request_interval: 0s}
  - {name: fakelog, type: ctlog, url: %q, public_key: %s, start: beginning, interval: 200ms, batch_size: 20, workers: 2}
  - {name: sunlight, type: ctlog, protocol: static, url: %q, public_key: %s, start: beginning, interval: 200ms}
`, polls.proxy(t, "crtsh", gen, crtsh.URL)+"/", polls.proxy(t, "certspotter", gen, api.URL)+"/",
			fake.URL+"/", base64.StdEncoding.EncodeToString(fake.PublicKeyDER()),
			sun.MonitoringPrefix(), base64.StdEncoding.EncodeToString(sun.PublicKey())))
		return cfg
	}
	logNames := []string{"fakelog", "sunlight"}
	treeSize := func(name string) int64 {
		if name == "fakelog" {
			return fake.Size()
		}
		return sunSize
	}

	replicas := make([]*harness.Exporter, 3)
	start := func(i int) {
		replicas[i] = harness.StartExporter(t, append([]string{"--config.file=" + config(), "--state.url=" + url}, leaseArgs...)...)
		replicas[i].WaitReady()
	}
	for i := range replicas {
		start(i)
	}
	// followers: for each log, the indexes of the given replicas that follow it.
	followers := func(idx ...int) map[string][]int {
		out := map[string][]int{}
		for _, i := range idx {
			m := replicas[i].Scrape()
			for _, name := range logNames {
				if harness.Value(m, "ct_log_followed", "log", name) == 1 {
					out[name] = append(out[name], i)
				}
			}
		}
		return out
	}
	all := []int{0, 1, 2}
	others := func(x int) []int {
		return slices.DeleteFunc(slices.Clone(all), func(i int) bool { return i == x })
	}
	var verificationFailures float64
	noteFailures := func(i int) {
		verificationFailures += harness.Value(replicas[i].Scrape(), "ct_log_verification_failures_total")
	}
	// takeOver waits until each log is followed by one of the replicas in
	// idx, and returns how long that took.
	takeOver := func(what string, since time.Time, idx ...int) time.Duration {
		t.Helper()
		replicas[idx[0]].Eventually(what, func() bool {
			f := followers(idx...)
			return len(f["fakelog"]) == 1 && len(f["sunlight"]) == 1
		})
		return time.Since(since)
	}
	takeOver("each log followed by one replica", time.Now(), all...)

	var failovers []time.Duration
	kills, stops, pgRestarts := 0, 0, 0
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	// The stop and the PostgreSQL restart happen once each, at a random
	// moment of the run; kills fill the rest.
	stopAt := time.Now().Add(time.Duration(rand.Int64N(int64(seconds)*int64(time.Second)/2) + int64(time.Second)))
	pgAt := time.Now().Add(time.Duration(rand.Int64N(int64(seconds)*int64(time.Second)/2) + int64(seconds)*int64(time.Second)/3))
	for time.Now().Before(end) || stops == 0 || pgRestarts == 0 {
		arrive(1+rand.IntN(3), rand.IntN(30))
		switch {
		case pgRestarts == 0 && time.Now().After(pgAt):
			// The server crashes and stays down until every replica
			// has counted a failed read (what CTExporterStateReadFailing
			// watches) and, its leases lapsed by its own clock, follows
			// no log; then it comes back and the logs are shared again.
			before := map[int]float64{}
			for _, i := range all {
				before[i] = harness.Value(replicas[i].Scrape(), "ct_state_read_errors_total")
			}
			srv.Stop(t)
			at := time.Now()
			for _, i := range all {
				replicas[i].Eventually("a read error counted and no log followed while PostgreSQL is down", func() bool {
					m := replicas[i].Scrape()
					return harness.Value(m, "ct_state_read_errors_total") > before[i] &&
						harness.Value(m, "ct_log_followed", "log", "fakelog") == 0 &&
						harness.Value(m, "ct_log_followed", "log", "sunlight") == 0
				})
			}
			down := time.Since(at)
			srv.StartAgain(t)
			pgRestarts++
			d := takeOver("the logs shared again once PostgreSQL is back", time.Now(), all...)
			t.Logf("PostgreSQL down for %v: every replica counted read errors and stopped its logs; shared again %v after it came back",
				down.Round(100*time.Millisecond), d.Round(100*time.Millisecond))
		case stops == 0 && time.Now().After(stopAt):
			// SIGSTOP the follower of a log past its lease: another
			// replica takes the log over; resumed, it gives it up.
			// Wait for a follower first: a log handed over to rebalance
			// (to a replacement) is followed by none for a moment.
			name := logNames[rand.IntN(2)]
			x := -1
			replicas[0].Eventually(name+" followed by one replica before the stop", func() bool {
				if f := followers(all...)[name]; len(f) == 1 {
					x = f[0]
				}
				return x >= 0
			})
			if err := replicas[x].Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			arrive(2, 10)
			d := takeOver(name+" taken over from a stopped replica", at, others(x)...)
			failovers = append(failovers, d)
			arrive(2, 10)
			if err := replicas[x].Cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			stops++
			t.Logf("SIGSTOP of the follower of %s: taken over after %v", name, d.Round(100*time.Millisecond))
			replicas[x].Eventually("the resumed replica gives "+name+" up", func() bool {
				return len(followers(x)[name]) == 0
			})
		default:
			// SIGKILL a replica, a log's follower three times in four,
			// wait for its logs to be taken over, and start a replacement.
			x := rand.IntN(3)
			if rand.IntN(4) > 0 {
				var fs []int
				for _, is := range followers(all...) {
					fs = append(fs, is...)
				}
				if len(fs) > 0 {
					x = fs[rand.IntN(len(fs))]
				}
			}
			lost := 0
			for _, is := range followers(x) {
				lost += len(is)
			}
			noteFailures(x)
			if err := replicas[x].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			at := time.Now()
			<-replicas[x].Exited
			kills++
			if lost > 0 {
				d := takeOver("the logs of a killed replica taken over", at, others(x)...)
				failovers = append(failovers, d)
				t.Logf("SIGKILL of a replica following %d log(s): taken over after %v", lost, d.Round(100*time.Millisecond))
			}
			start(x)
		}
		// Space the events; not a synchronisation.
		time.Sleep(time.Duration(rand.IntN(int(leaseDuration/time.Millisecond/3))) * time.Millisecond)
	}

	arrive(3, 10)
	if err := sun.WaitSize(ctx, sunSize); err != nil {
		t.Fatal(err)
	}
	// Settled: each log followed by exactly one replica, at its tree size,
	// the sources balanced, and every issuance counted on every replica.
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	replicas[0].Eventually("settled, balanced, everything counted", func() bool {
		f := followers(all...)
		per := map[int]int{}
		for _, name := range logNames {
			if len(f[name]) != 1 {
				return false
			}
			per[f[name][0]]++
			if per[f[name][0]] > 1 {
				return false // balanced: at most one log per replica
			}
			m := replicas[f[name][0]].Scrape()
			if harness.Value(m, "ct_log_entries_processed_total", "log", name) != float64(treeSize(name)) ||
				harness.Value(m, "ct_log_entries_behind", "log", name) != 0 {
				return false
			}
		}
		for _, i := range all {
			if harness.Value(replicas[i].Scrape(), "ct_new_certificates_total") < float64(len(truth)) {
				return false
			}
		}
		// The search sources held by two live replicas, one each.
		var holders int
		if err := db.QueryRow(ctx, `SELECT count(DISTINCT holder) FROM leases
WHERE source IN ('crtsh', 'certspotter') AND holder <> '' AND expires_at > now()`).Scan(&holders); err != nil {
			t.Fatal(err)
		}
		return holders == 2
	})
	// Each search source changed hands no more often than its lease did;
	// the replica resumed from its stop may send one more request before
	// it sees its lease lapsed (between its check and the send).
	for _, src := range []string{"crtsh", "certspotter"} {
		var epoch int
		if err := db.QueryRow(ctx, `SELECT epoch FROM leases WHERE source = $1`, src).Scan(&epoch); err != nil {
			t.Fatal(err)
		}
		runs, requests, by := polls.runs(src)
		t.Logf("%s: %d requests from %d replicas in %d runs; its lease was acquired %d times", src, requests, by, runs, epoch)
		if runs > epoch+2*stops {
			t.Errorf("%s: the requests changed hands %d times, its lease %d times: replicas polled it at once", src, runs-1, epoch-1)
		}
		if requests == 0 {
			t.Errorf("%s was never polled", src)
		}
	}
	counted, doubled := 0, 0
	for _, i := range all {
		m := replicas[i].Scrape()
		noteFailures(i)
		for _, name := range logNames {
			if p := harness.Value(m, "ct_log_entries_processed_total", "log", name); p > float64(treeSize(name)) {
				t.Errorf("replica %d: %s: %v entries processed, the tree has %d", i, name, p, treeSize(name))
			}
		}
		total := int(harness.Value(m, "ct_new_certificates_total"))
		if total != len(truth) {
			t.Errorf("replica %d: ct_new_certificates_total = %d, want %d", i, total, len(truth))
		}
		if got := harness.Value(m, "ct_state_certificates"); got != float64(len(truth)) {
			t.Errorf("replica %d: ct_state_certificates = %v, want %d", i, got, len(truth))
		}
		seen := map[string]bool{}
		for _, s := range m["ct_certificate_first_seen_timestamp_seconds"].GetMetric() {
			l := harness.LabelMap(s)
			if seen[l["tbs_sha256"]] || !truth[l["tbs_sha256"]] || l["watch"] != "example.com" {
				t.Errorf("replica %d: series %v doubled or invented", i, l)
			}
			seen[l["tbs_sha256"]] = true
		}
		for tbs := range truth {
			if !seen[tbs] {
				t.Errorf("replica %d: no recent series for issuance %s", i, tbs)
			}
		}
		if i == 0 {
			counted, doubled = len(seen), total-len(truth)
		}
	}
	if verificationFailures != 0 {
		t.Errorf("%v verification failures", verificationFailures)
	}
	slices.Sort(failovers)
	var median, maxFailover time.Duration
	if len(failovers) > 0 {
		median, maxFailover = failovers[len(failovers)/2], failovers[len(failovers)-1]
	}
	t.Logf("replica chaos for %ds (lease %v): %d SIGKILLs, %d SIGSTOP past the lease, %d PostgreSQL restarts; "+
		"%d issuances planted, %d counted, lost %d, doubled %d; logs of %d (fake) and %d (Sunlight) entries; "+
		"%d failovers: median %v, max %v; %v verification failures",
		seconds, leaseDuration, kills, stops, pgRestarts, len(truth), counted, len(truth)-counted, doubled,
		fake.Size(), sunSize, len(failovers), median.Round(100*time.Millisecond), maxFailover.Round(100*time.Millisecond), verificationFailures)
}

// searchPolls notes, for each search source, which replica (by its
// number) sent each request, in the order they arrived.
type searchPolls struct {
	mu sync.Mutex
	by map[string][]int
}

// proxy starts a proxy to target for replica gen's requests to source, and
// returns its URL.
func (p *searchPolls) proxy(t *testing.T, source string, gen int, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.by[source] = append(p.by[source], gen)
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// runs is how many runs of consecutive requests from one replica the
// source's requests make, how many requests, and from how many replicas.
func (p *searchPolls) runs(source string) (runs, requests, replicas int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[int]bool{}
	for i, g := range p.by[source] {
		if i == 0 || g != p.by[source][i-1] {
			runs++
		}
		seen[g] = true
	}
	return runs, len(p.by[source]), len(seen)
}
