package e2e

import (
	"encoding/base64"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// Three replicas share two CT logs through PostgreSQL, with the default
// lease timings: each log is followed by exactly one replica; the
// follower SIGKILLed, another takes its log over within 30 s; a follower
// SIGSTOPped past its lease and resumed commits nothing more for it: every
// issuance is counted once and every entry processed once.
func TestReplicasShareLogsByLease(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "ct")
	ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")
	logs := map[string]*ctlogfake.Log{"log1": ctlogfake.New(t), "log2": ctlogfake.New(t)}
	issuances := 0
	grow := func(name string, n int) {
		l := logs[name]
		for i := 0; i < n; i++ {
			iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("%s-%d.example.com", name, l.Size())}})
			if err != nil {
				t.Fatal(err)
			}
			l.AddCert(iss.Final, ca.DER)
			issuances++
		}
		l.Publish()
	}
	grow("log1", 20)
	grow("log2", 20)
	for _, l := range logs {
		l.MaxBatch = 10
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	src := ""
	for _, name := range []string{"log1", "log2"} {
		src += fmt.Sprintf("  - {name: %s, type: ctlog, url: %q, public_key: %s, start: beginning, interval: 200ms, batch_size: 10, workers: 1}\n",
			name, logs[name].URL+"/", base64.StdEncoding.EncodeToString(logs[name].PublicKeyDER()))
	}
	testenv.WriteFile(t, cfg, "watches: [{domain: example.com}]\nsources:\n"+src)
	args := []string{"--config.file=" + cfg, "--state.url=" + url}

	var replicas []*harness.Exporter
	for range 3 {
		e := harness.StartExporter(t, args...)
		e.WaitReady()
		replicas = append(replicas, e)
	}
	live := func() []*harness.Exporter {
		var out []*harness.Exporter
		for _, e := range replicas {
			select {
			case <-e.Exited:
			default:
				out = append(out, e)
			}
		}
		return out
	}
	// followers returns the replicas that follow each log, of those given.
	followers := func(of []*harness.Exporter) map[string][]*harness.Exporter {
		out := map[string][]*harness.Exporter{}
		for _, e := range of {
			m := e.Scrape()
			for name := range logs {
				if harness.Value(m, "ct_log_followed", "log", name) == 1 {
					out[name] = append(out[name], e)
				}
			}
		}
		return out
	}
	settled := func(of []*harness.Exporter) func() bool {
		return func() bool {
			f := followers(of)
			return len(f["log1"]) == 1 && len(f["log2"]) == 1
		}
	}
	counted := func(e *harness.Exporter) func() bool {
		return func() bool {
			m := e.Scrape()
			return harness.Value(m, "ct_new_certificates_total") >= float64(issuances)
		}
	}
	exact := func(e *harness.Exporter) {
		t.Helper()
		m := e.Scrape()
		if got := harness.Value(m, "ct_new_certificates_total"); got != float64(issuances) {
			t.Errorf("ct_new_certificates_total = %v, want %d", got, issuances)
		}
		if got := harness.Value(m, "ct_state_certificates"); got != float64(issuances) {
			t.Errorf("ct_state_certificates = %v, want %d", got, issuances)
		}
	}
	// processed is what the state counted of a log's entries: a commit
	// that went through twice would count them twice.
	processedExactly := func(of []*harness.Exporter, name string) func() bool {
		return func() bool {
			// Read it from the follower, which exposes it.
			f := followers(of)[name]
			if len(f) != 1 {
				return false
			}
			got := harness.Value(f[0].Scrape(), "ct_log_entries_processed_total", "log", name)
			if got > float64(logs[name].Size()) {
				t.Fatalf("%s: %v entries processed, the log has %d: some were counted twice", name, got, logs[name].Size())
			}
			return got == float64(logs[name].Size())
		}
	}

	replicas[0].Eventually("each log followed by exactly one replica", settled(replicas))
	for _, e := range replicas {
		e.Eventually("every issuance counted", counted(e))
		exact(e)
	}
	// The replica that follows no log says on its status page that the
	// others run them.
	f := followers(replicas)
	for _, e := range replicas {
		if e == f["log1"][0] || e == f["log2"][0] {
			continue
		}
		e.Eventually("the idle replica's status page names the logs the others run", func() bool {
			res, err := e.Client.Get(e.URL("/"))
			if err != nil {
				return false
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			return err == nil && strings.Contains(string(body), "<code>log1</code>, <code>log2</code>. Their status pages show them.")
		})
	}

	// SIGKILL the follower of log1: another replica takes it over.
	victim := followers(replicas)["log1"][0]
	if err := victim.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-victim.Exited
	rest := live()
	rest[0].Eventually("log1 taken over", func() bool { return len(followers(rest)["log1"]) == 1 })
	takeover := time.Since(killed)
	t.Logf("takeover of log1 after SIGKILL of its follower (default lease 15s, renew 5s): %v", takeover.Round(100*time.Millisecond))
	if takeover > 30*time.Second {
		t.Errorf("takeover took %v, more than 30 s", takeover)
	}
	rest[0].Eventually("each log followed by exactly one replica after the kill", settled(rest))
	grow("log1", 10)
	for _, e := range rest {
		e.Eventually("the issuances after the takeover counted", counted(e))
		exact(e)
	}
	rest[0].Eventually("log1 processed exactly once", processedExactly(rest, "log1"))

	// SIGSTOP the follower of log2 in the middle of a slow catch-up, past
	// its lease; another replica takes over and catches up; the stopped one,
	// resumed, commits nothing more for log2.
	logs["log2"].SetDelay("get-entries", 100*time.Millisecond)
	stopped := followers(rest)["log2"][0]
	var other *harness.Exporter
	for _, e := range rest {
		if e != stopped {
			other = e
		}
	}
	before := logs["log2"].Requests("get-entries")
	grow("log2", 60)
	stopped.Eventually("the catch-up of log2 under way", func() bool { return logs["log2"].Requests("get-entries") > before })
	if err := stopped.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	other.Eventually("log2 taken over from the stopped replica", func() bool {
		return len(followers([]*harness.Exporter{other})["log2"]) == 1
	})
	t.Logf("takeover of log2 from a SIGSTOPped follower: %v", time.Since(stoppedAt).Round(100*time.Millisecond))
	logs["log2"].SetDelay("get-entries", 0)
	other.Eventually("every issuance counted by the new follower", counted(other))
	if err := stopped.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Until the resumed replica has given log2 up (its lease round, or a
	// fenced commit), then a while longer with new entries.
	stopped.Eventually("the resumed replica gives log2 up", func() bool {
		return len(followers([]*harness.Exporter{stopped})["log2"]) == 0
	})
	grow("log2", 10)
	other.Eventually("the new issuances of log2 counted", counted(other))
	rest[0].Eventually("each log followed by exactly one replica after the stop", settled(rest))
	other.Eventually("log2 processed exactly once", processedExactly(rest, "log2"))
	for _, e := range rest {
		e.Eventually("every issuance counted", counted(e))
		exact(e)
	}
	// Whether the resumed replica's source saw its lease lapsed (by its
	// own clock, or refused by the fence) or its lease round gave log2 up
	// first depends on which of its goroutines ran first: either way
	// nothing of it was counted.
	t.Logf("the resumed replica's source stopped on a lost or lapsed lease: %v",
		strings.Contains(stopped.Log(), "the lease on the source was lost or lapsed"))
	t.Logf("%d issuances in 2 logs, 3 replicas, 1 SIGKILL, 1 SIGSTOP past the lease: each counted once", issuances)
}
