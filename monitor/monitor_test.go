package monitor

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
)

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// openState opens a new state file, closed when the test ends.
func openState(t *testing.T) *state.Store {
	t.Helper()
	s, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eventually waits for cond, as everywhere in the tests, with this
// package's deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, what, cond)
}

func healthOf(m *Monitor, name string) (SourceHealth, bool) {
	for _, h := range m.Health() {
		if h.Name == name {
			return h, true
		}
	}
	return SourceHealth{}, false
}

func searched(fake *crtshfake.Server, identity string) bool {
	for _, r := range fake.Requests() {
		if r.Kind == crtshfake.KindSearch && r.Query == identity && r.Status == 200 {
			return true
		}
	}
	return false
}

func TestMonitorAppliesConfigurations(t *testing.T) {
	fake := crtshfake.New()
	defer fake.Close()
	ca, err := testpki.NewRoot("Test CA", "Test")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{"www.example.com"}, SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	fake.Add(iss.Precert)
	fake.Add(iss.Final)

	store := openState(t)
	m := New(store, promslog.NewNopLogger(), Shard{})
	m.Start()
	defer m.Stop()

	source := func(url string) string {
		return fmt.Sprintf("sources: [{name: crtsh, type: crtsh, url: %q, interval: 1h, request_interval: 0s}]\n", url)
	}
	if err := m.Apply(parse(t, "watches: [{domain: example.com}]\n"+source(fake.URL))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first poll", func() bool {
		h, ok := healthOf(m, "crtsh")
		return ok && h.Polled && h.Up && store.Snapshot().Certificates == 1
	})
	if got := m.Watches(); len(got) != 1 || got[0] != "example.com" {
		t.Fatalf("watches = %v", got)
	}
	if h, _ := healthOf(m, "crtsh"); h.DurationCount != 1 || h.LastSuccess.IsZero() || len(h.Errors) != len(ctsource.Reasons) || h.Type != "crtsh" {
		t.Fatalf("health after one poll = %+v", h)
	}
	if ws := m.WatchSet().Watches(); len(ws) != 1 || ws[0].Domain != "example.com" || !ws[0].IncludeSubdomains {
		t.Fatalf("watch set = %+v", ws)
	}

	// A new watch is searched at once, not an interval (1h) later.
	if err := m.Apply(parse(t, "watches: [{domain: example.com}, {domain: example.org}]\n"+source(fake.URL))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new watch searched", func() bool { return searched(fake, "example.org") })

	// A changed source is restarted; its failures are retried before the
	// interval, and counted.
	if err := m.Apply(parse(t, "watches: [{domain: example.com}]\n"+source("http://127.0.0.1:1/"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the source marked down and retried", func() bool {
		h, _ := healthOf(m, "crtsh")
		return h.Polled && !h.Up && h.DurationCount >= 2 && h.Errors["network"] >= 2
	})
	if h, _ := healthOf(m, "crtsh"); h.LastSuccess.IsZero() {
		t.Fatal("the source's health was not kept across its restart")
	}

	// A removed source leaves no health behind.
	cfg := parse(t, "watches: [{domain: example.com}]\nsources: [{name: other, type: crtsh, url: 'http://127.0.0.1:1/'}]\n")
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := healthOf(m, "crtsh"); ok {
		t.Fatal("removed source still reported")
	}
}

// A configuration applied before Start runs nothing until Start, which runs
// its sources (the exporter's order: Apply the file, then Start); the last
// configuration applied before Start is the one that runs.
func TestMonitorRunsNothingBeforeStart(t *testing.T) {
	fake := crtshfake.New()
	defer fake.Close()
	store := openState(t)
	m := New(store, promslog.NewNopLogger(), Shard{})
	defer m.Stop()
	source := func(name string) string {
		return fmt.Sprintf("sources: [{name: %s, type: crtsh, url: %q, interval: 1h, request_interval: 0s}]\n", name, fake.URL)
	}
	for _, name := range []string{"first", "second"} {
		if err := m.Apply(parse(t, "watches: [{domain: example.com}]\n"+source(name))); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(fake.Requests()); n != 0 || len(m.Health()) != 0 {
		t.Fatalf("before Start: %d requests, health %+v", n, m.Health())
	}
	m.Start()
	eventually(t, "the source polled once started", func() bool {
		h, ok := healthOf(m, "second")
		return ok && h.Polled && h.Up && searched(fake, "example.com")
	})
	if _, ok := healthOf(m, "first"); ok {
		t.Fatal("a configuration replaced before Start runs")
	}
}

func TestMonitorFollowsLogList(t *testing.T) {
	logA, logB := ctlogfake.New(t), ctlogfake.New(t)
	list := filepath.Join(t.TempDir(), "list.json")
	writeList := func(logs map[string]*ctlogfake.Log) {
		var entries []string
		for desc, l := range logs {
			entries = append(entries, fmt.Sprintf(`{"description": %q, "log_id": "%s", "key": "%s", "url": "%s/", "mmd": 86400, "state": {"usable": {"timestamp": "2026-01-01T00:00:00Z"}}}`,
				desc, base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(l.PublicKeyDER()), l.URL))
		}
		data := `{"version": "1", "operators": [{"name": "T", "email": ["t@example.com"], "logs": [` + strings.Join(entries, ",") + `], "tiled_logs": []}]}`
		if err := os.WriteFile(list+".tmp", []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(list+".tmp", list); err != nil {
			t.Fatal(err)
		}
	}
	writeList(map[string]*ctlogfake.Log{"Test 'A' log": logA})
	store := openState(t)
	m := New(store, promslog.NewNopLogger(), Shard{})
	m.Start()
	defer m.Stop()
	cfg := parse(t, fmt.Sprintf("watches: [{domain: example.com}]\nsources: [{name: list, type: loglist, url: %q, interval: 50ms, log_interval: 50ms}]\n", list))
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	logs := func() map[string]bool {
		out := map[string]bool{}
		for _, l := range m.Logs() {
			if l.Known {
				out[l.Log] = true
			}
		}
		return out
	}
	eventually(t, "the listed log followed", func() bool { return logs()["test_a_log"] })
	// The list changes: log A leaves it (and stops), log B is followed.
	writeList(map[string]*ctlogfake.Log{"Test 'B' log": logB})
	eventually(t, "the list change applied", func() bool {
		l := logs()
		return l["test_b_log"] && !l["test_a_log"] && len(m.Logs()) == 1
	})
	if h, ok := healthOf(m, "list"); !ok || !h.Up || h.Type != "loglist" {
		t.Fatalf("list source health %+v", h)
	}
	if h, ok := healthOf(m, "test_b_log"); !ok || h.Type != "ctlog" {
		t.Fatalf("discovered log health %+v", h)
	}
}

// A log list that names a log the CT library cannot verify (an Ed25519 key)
// does not stop the other logs it names, nor later reloads.
func TestMonitorSkipsAListedLogItCannotFollow(t *testing.T) {
	good := ctlogfake.New(t)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(desc string, key []byte, url string) string {
		return fmt.Sprintf(`{"description": %q, "log_id": "%s", "key": "%s", "url": "%s/", "mmd": 86400, "state": {"usable": {"timestamp": "2026-01-01T00:00:00Z"}}}`,
			desc, base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(key), url)
	}
	list := filepath.Join(t.TempDir(), "list.json")
	data := `{"version": "1", "operators": [{"name": "T", "email": ["t@example.com"], "logs": [` +
		entry("Test 'Bad' log", bad, "http://127.0.0.1:1") + "," + entry("Test 'Good' log", good.PublicKeyDER(), good.URL) +
		`], "tiled_logs": []}]}`
	if err := os.WriteFile(list, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	store := openState(t)
	m := New(store, promslog.NewNopLogger(), Shard{})
	m.Start()
	defer m.Stop()
	cfg := parse(t, fmt.Sprintf("watches: [{domain: example.com}]\nsources: [{name: list, type: loglist, url: %q, interval: 50ms, log_interval: 50ms}]\n", list))
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the good log followed", func() bool {
		for _, l := range m.Logs() {
			if l.Log == "test_good_log" && l.Known {
				return true
			}
		}
		return false
	})
	if err := m.Apply(parse(t, fmt.Sprintf("watches: [{domain: example.org}]\nsources: [{name: list, type: loglist, url: %q, interval: 50ms, log_interval: 50ms}]\n", list))); err != nil {
		t.Fatalf("a reload fails because of the bad log: %v", err)
	}
	for _, l := range m.Logs() {
		if l.Log == "test_bad_log" {
			t.Fatal("the log that cannot be verified is followed")
		}
	}
}

// A crt.sh that fails on one watch of three (a 502, or a search that hangs
// past the timeout) does not blind the monitor to the others: their new
// issuances are recorded poll after poll, each with its last successful
// search; the failing watch is retried on its own and, once crt.sh answers
// it again, its issuances are recorded and the source is up. A watch
// removed on reload leaves no last success behind.
func TestMonitorIsolatesAFailingWatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason string
		fail   func(*crtshfake.Server)
		heal   func(*crtshfake.Server)
	}{
		{"502", "http_5xx",
			func(f *crtshfake.Server) { f.FaultFor(crtshfake.KindSearch, "example.com", 1<<30, crtshfake.Fault502) },
			func(f *crtshfake.Server) { f.FaultFor(crtshfake.KindSearch, "example.com", 0, crtshfake.FaultNone) }},
		{"hang", "timeout",
			func(f *crtshfake.Server) { f.SetDelayFor("example.com", time.Hour) },
			func(f *crtshfake.Server) { f.SetDelayFor("example.com", 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := crtshfake.New()
			defer fake.Close()
			tc.fail(fake)
			ca, err := testpki.NewRoot("Test CA", "Test")
			if err != nil {
				t.Fatal(err)
			}
			issue := func(name string) [32]byte {
				iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{name}, SCTs: 2})
				if err != nil {
					t.Fatal(err)
				}
				fake.Add(iss.Precert)
				fake.Add(iss.Final)
				c, err := cert.Parse(iss.Final)
				if err != nil {
					t.Fatal(err)
				}
				return c.TBSSHA256
			}
			store := openState(t)
			recorded := func(tbs [32]byte) bool {
				var is *state.Issuance
				if err := store.View(func(tx *state.Tx) error {
					is, err = tx.Issuance(tbs)
					return err
				}); err != nil {
					t.Fatal(err)
				}
				return is != nil
			}
			m := New(store, promslog.NewNopLogger(), Shard{})
			m.Start()
			defer m.Stop()
			cfg := func(watches string) *config.Config {
				return parse(t, fmt.Sprintf("watches: [%s]\nsources: [{name: crtsh, type: crtsh, url: %q, interval: 300ms, timeout: 500ms, request_interval: 0s}]\n", watches, fake.URL))
			}
			if err := m.Apply(cfg("{domain: example.com}, {domain: example.org}, {domain: example.net}")); err != nil {
				t.Fatal(err)
			}
			var failing [][32]byte
			last := map[string]time.Time{}
			for round := 1; round <= 3; round++ {
				failing = append(failing, issue(fmt.Sprintf("r%d.example.com", round)))
				org, net := issue(fmt.Sprintf("r%d.example.org", round)), issue(fmt.Sprintf("r%d.example.net", round))
				// The last success is reported once the search that
				// recorded the issuance has returned.
				eventually(t, fmt.Sprintf("round %d: the healthy watches' new issuances recorded", round), func() bool {
					h, _ := healthOf(m, "crtsh")
					return recorded(org) && recorded(net) &&
						h.WatchLastSuccess["example.org"].After(last["example.org"]) && h.WatchLastSuccess["example.net"].After(last["example.net"])
				})
				h, _ := healthOf(m, "crtsh")
				if h.Up || h.Errors[tc.reason] == 0 {
					t.Fatalf("round %d: up %v, %s errors %d; want down while a watch fails, and why counted", round, h.Up, tc.reason, h.Errors[tc.reason])
				}
				if _, ok := h.WatchLastSuccess["example.com"]; ok {
					t.Fatalf("round %d: a last success for the failing watch", round)
				}
				last = h.WatchLastSuccess
				for _, tbs := range failing {
					if recorded(tbs) {
						t.Fatal("an issuance of the failing watch recorded while crt.sh fails on it")
					}
				}
			}
			// Retried: a search is one attempt, so more than one failure
			// means the watch was searched again. Counted as the source
			// counts them: the fake's record can miss an attempt that timed
			// out before it arrived.
			if h, _ := healthOf(m, "crtsh"); h.Errors[tc.reason] < 2 {
				t.Fatalf("example.com failed %d times: not retried", h.Errors[tc.reason])
			}

			tc.heal(fake)
			eventually(t, "the failing watch's issuances recorded once crt.sh answers it", func() bool {
				for _, tbs := range failing {
					if !recorded(tbs) {
						return false
					}
				}
				h, _ := healthOf(m, "crtsh")
				return h.Up && !h.WatchLastSuccess["example.com"].IsZero()
			})

			if err := m.Apply(cfg("{domain: example.com}, {domain: example.org}")); err != nil {
				t.Fatal(err)
			}
			if h, _ := healthOf(m, "crtsh"); len(h.WatchLastSuccess) != 2 || !h.WatchLastSuccess["example.net"].IsZero() || h.Interval != 300*time.Millisecond {
				t.Fatalf("after example.net was removed: last successes %v, interval %v", h.WatchLastSuccess, h.Interval)
			}
		})
	}
}

// A 429 pauses the whole source, and no watch is held responsible: once
// crt.sh lets it through again, every watch is searched and the source is up.
func TestMonitorPausesASourceOn429(t *testing.T) {
	fake := crtshfake.New()
	defer fake.Close()
	fake.Fault(crtshfake.KindSearch, 1<<30, crtshfake.Fault429)
	store := openState(t)
	m := New(store, promslog.NewNopLogger(), Shard{})
	m.Start()
	defer m.Stop()
	if err := m.Apply(parse(t, fmt.Sprintf("watches: [{domain: example.com}, {domain: example.org}]\nsources: [{name: crtsh, type: crtsh, url: %q, interval: 300ms, request_interval: 0s}]\n", fake.URL))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the source down for a 429", func() bool {
		h, _ := healthOf(m, "crtsh")
		return h.Polled && !h.Up && h.Errors["http_429"] > 0
	})
	fake.Fault(crtshfake.KindAny, 0, crtshfake.FaultNone)
	eventually(t, "every watch searched after the pause", func() bool {
		h, _ := healthOf(m, "crtsh")
		return h.Up && len(h.WatchLastSuccess) == 2
	})
}
