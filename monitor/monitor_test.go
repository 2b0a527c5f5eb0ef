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
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/internal/tools"
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

// eventually waits for cond, as everywhere in the tests, with this
// package's deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tools.Eventually(t, 30*time.Second, what, cond)
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

	store, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
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
		return h.Polled && !h.Up && h.DurationCount >= 3 && h.Errors["network"] > 4
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
	store, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
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
	store, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
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
