package monitor

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
)

// listedLog is one log of a v3 log list.
type listedLog struct {
	desc, url string
	key       []byte
}

// writeLogList writes a v3 log list of usable logs, atomically: the list
// source may read it at any moment.
func writeLogList(t *testing.T, path string, logs []listedLog) {
	t.Helper()
	entries := make([]string, len(logs))
	for i, l := range logs {
		entries[i] = fmt.Sprintf(`{"description": %q, "log_id": "%s", "key": "%s", "url": %q, "mmd": 86400, "state": {"usable": {"timestamp": "2026-01-01T00:00:00Z"}}}`,
			l.desc, base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(l.key), l.url)
	}
	data := `{"version": "1", "operators": [{"name": "T", "email": ["t@example.com"], "logs": [` + strings.Join(entries, ",") + `], "tiled_logs": []}]}`
	if err := os.WriteFile(path+".tmp", []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// logKeys returns n distinct log keys the CT library accepts: logs with the
// same key would be followed once, and hide how many a list starts.
func logKeys(t *testing.T, n int) [][]byte {
	t.Helper()
	keys := make([][]byte, n)
	for i := range keys {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if keys[i], err = x509.MarshalPKIXPublicKey(k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// tarpit accepts connections and never answers, as the host in the issue
// did; it counts what it accepted.
type tarpit struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted int
	conns    []net.Conn
}

func newTarpit(t *testing.T) *tarpit {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tarpit{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.accepted++
			tp.conns = append(tp.conns, c)
			tp.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		tp.mu.Lock()
		for _, c := range tp.conns {
			c.Close()
		}
		tp.mu.Unlock()
	})
	return tp
}

func (tp *tarpit) count() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.accepted
}

func followedLogs(m *Monitor) map[string]bool {
	out := map[string]bool{}
	for _, l := range m.Logs() {
		out[l.Log] = l.Known
	}
	return out
}

func newTestMonitor(t *testing.T) *Monitor {
	t.Helper()
	m := New(openState(t), promslog.NewNopLogger(), Shard{})
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// The list of 5,000 logs at a host that accepts and never answers
// (15,012 goroutines and 5,000 connections within 15 s before): refused,
// counted under list_too_large at every poll, the previous list still
// followed, no connection opened and no goroutine started.
func TestMonitorRefusesAListOfTooManyLogs(t *testing.T) {
	good := ctlogfake.New(t)
	list := filepath.Join(t.TempDir(), "list.json")
	writeLogList(t, list, []listedLog{{"Test 'Good' log", good.URL + "/", good.PublicKeyDER()}})
	m := newTestMonitor(t)
	cfg := parse(t, fmt.Sprintf("watches: [{domain: example.com}]\nsources: [{name: list, type: loglist, url: %q, interval: 50ms, log_interval: 50ms}]\n", list))
	if cfg.Sources[0].MaxLogs != config.DefaultLogListMaxLogs {
		t.Fatalf("max_logs defaults to %d", cfg.Sources[0].MaxLogs)
	}
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the listed log followed", func() bool { return followedLogs(m)["test_good_log"] })
	baseline := runtime.NumGoroutine()

	pit := newTarpit(t)
	keys := logKeys(t, 5000)
	hostile := make([]listedLog, len(keys))
	for i, k := range keys {
		hostile[i] = listedLog{fmt.Sprintf("Hostile %d", i), fmt.Sprintf("http://%s/log%d/", pit.ln.Addr(), i), k}
	}
	writeLogList(t, list, hostile)
	eventually(t, "the list refused at two polls", func() bool {
		h, _ := healthOf(m, "list")
		return h.Errors[ctsource.ReasonListTooLarge] >= 2 && !h.Up
	})
	if logs := followedLogs(m); len(logs) != 1 || !logs["test_good_log"] {
		t.Fatalf("logs followed after the refused list: %v", logs)
	}
	if hs := m.Health(); len(hs) != 2 {
		t.Fatalf("%d sources have a health, want the list and its one log", len(hs))
	}
	if n := pit.count(); n != 0 {
		t.Fatalf("%d connections to the logs of the refused list", n)
	}
	// The one log still polls every 50ms, with its transient goroutines;
	// 5,000 followers would be tens of thousands.
	eventually(t, "goroutines back to their number", func() bool { return runtime.NumGoroutine() <= baseline+20 })
	t.Logf("goroutines: %d following one log, %d after the list of 5,000 was refused twice", baseline, runtime.NumGoroutine())
}

// A log a list names at plain http:// to another host than this one is not
// followed; the others are, and the list is up.
func TestMonitorSkipsListedLogsNotOnHTTPS(t *testing.T) {
	good := ctlogfake.New(t)
	keys := logKeys(t, 1)
	list := filepath.Join(t.TempDir(), "list.json")
	writeLogList(t, list, []listedLog{
		{"Test 'Plain' log", "http://192.0.2.1/", keys[0]},
		{"Test 'Good' log", good.URL + "/", good.PublicKeyDER()},
	})
	m := newTestMonitor(t)
	if err := m.Apply(parse(t, fmt.Sprintf("watches: [{domain: example.com}]\nsources: [{name: list, type: loglist, url: %q, interval: 1h, log_interval: 50ms}]\n", list))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the good log followed", func() bool { return followedLogs(m)["test_good_log"] })
	if _, ok := followedLogs(m)["test_plain_log"]; ok {
		t.Fatal("the log at plain http://192.0.2.1/ is followed")
	}
	if _, ok := healthOf(m, "test_plain_log"); ok {
		t.Fatal("the log at plain http://192.0.2.1/ has a source")
	}
	if h, _ := healthOf(m, "list"); !h.Up || h.Errors[ctsource.ReasonBadResponse] != 1 {
		t.Fatalf("list health %+v: want up, with the skipped log counted once under bad_response", h)
	}
}

// The first polls of 50 logs a list adds at once are spread over their
// interval (2s here) rather than all made at once. The delays are lower
// bounds, so however slow the machine, at most the 13 logs whose delay is
// under 500ms can have been asked before then.
func TestMonitorSpreadsFirstPollsOfNewLogs(t *testing.T) {
	const n, interval = 50, 2 * time.Second
	var mu sync.Mutex
	first := map[string]time.Time{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		mu.Lock()
		if _, ok := first[log]; !ok {
			first[log] = time.Now()
		}
		mu.Unlock()
		http.NotFound(w, r)
	}))
	defer srv.Close()
	keys := logKeys(t, n)
	logs := make([]listedLog, n)
	for i, k := range keys {
		logs[i] = listedLog{fmt.Sprintf("Log %d", i), fmt.Sprintf("%s/log%d/", srv.URL, i), k}
	}
	list := filepath.Join(t.TempDir(), "list.json")
	writeLogList(t, list, logs)
	m := newTestMonitor(t)
	start := time.Now()
	if err := m.Apply(parse(t, fmt.Sprintf("watches: [{domain: example.com}]\nsources: [{name: list, type: loglist, url: %q, interval: 1h, log_interval: %s}]\n", list, interval))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every log polled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(first) == n
	})
	mu.Lock()
	defer mu.Unlock()
	early := 0
	for i := 0; i < n; i++ {
		at := first[fmt.Sprintf("log%d", i)].Sub(start)
		if at < 500*time.Millisecond {
			early++
		}
		// The list's order is the order the runners start in.
		if want := firstPollDelay(i, n, interval); at < want {
			t.Errorf("log %d first polled after %v, before its delay %v", i, at, want)
		}
	}
	if early > 13 {
		t.Errorf("%d of %d logs first polled within 500ms: their first polls are not spread over %v", early, n, interval)
	}
}

func TestFirstPollDelay(t *testing.T) {
	for _, interval := range []time.Duration{50 * time.Millisecond, 2 * time.Second, 10 * time.Second, time.Hour} {
		for _, n := range []int{1, 2, 50, 200, 5000} {
			spread := min(interval, MaxFirstPollSpread)
			var prev time.Duration = -1
			for i := 0; i < n; i++ {
				d := firstPollDelay(i, n, interval)
				if d < 0 || d >= spread {
					t.Fatalf("interval %v, %d logs: log %d waits %v, outside [0, %v)", interval, n, i, d, spread)
				}
				if d <= prev {
					t.Fatalf("interval %v, %d logs: log %d waits %v, log %d %v: not distinct and increasing", interval, n, i, d, i-1, prev)
				}
				prev = d
			}
			if n > 1 && prev < spread/2 {
				t.Errorf("interval %v, %d logs: the last waits %v, not spread over %v", interval, n, prev, spread)
			}
		}
	}
	if d := firstPollDelay(0, 1, time.Hour); d != 0 {
		t.Errorf("a single new log waits %v", d)
	}
}

// A signed log list through the monitor, with the key inline in PEM and the
// signature at its default URL: a correctly signed list's logs are followed
// and its log_list_timestamp reported; a list tampered with after signing
// is refused at every poll (bad_signature), its logs never followed, the
// previous list and its timestamp kept; the next correctly signed list is
// taken.
func TestMonitorSignedLogList(t *testing.T) {
	good, other := ctlogfake.New(t), ctlogfake.New(t)
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	list := func(ts string, logs ...listedLog) []byte {
		entries := make([]string, len(logs))
		for i, l := range logs {
			entries[i] = fmt.Sprintf(`{"description": %q, "log_id": "%s", "key": "%s", "url": %q, "mmd": 86400, "state": {"usable": {"timestamp": "2026-01-01T00:00:00Z"}}}`,
				l.desc, base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(l.key), l.url)
		}
		return []byte(`{"version": "1", "log_list_timestamp": "` + ts + `", "operators": [{"name": "T", "email": ["t@example.com"], "logs": [` + strings.Join(entries, ",") + `], "tiled_logs": []}]}`)
	}
	sign := func(data []byte) []byte {
		digest := sha256.Sum256(data)
		sig, err := ecdsa.SignASN1(rand.Reader, signer, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	var mu sync.Mutex
	var body, sig []byte
	serve := func(b, s []byte) {
		mu.Lock()
		body, sig = b, s
		mu.Unlock()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/ct/log_list.json":
			w.Write(body)
		case "/ct/log_list.sig":
			w.Write(sig)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	goodLog := listedLog{"Test 'Good' log", good.URL + "/", good.PublicKeyDER()}
	otherLog := listedLog{"Test 'Other' log", other.URL + "/", other.PublicKeyDER()}
	v1 := list("2026-09-01T00:00:00Z", goodLog)
	serve(v1, sign(v1))
	m := newTestMonitor(t)
	lists := &listTimes{at: map[string]time.Time{}}
	m.ReportTo(lists)
	cfg := parse(t, fmt.Sprintf("watches: [{domain: example.com}]\nsources:\n  - name: list\n    type: loglist\n    url: %s/ct/log_list.json\n    interval: 50ms\n    log_interval: 50ms\n    public_key: |\n      %s\n",
		srv.URL, strings.ReplaceAll(strings.TrimSpace(string(keyPEM)), "\n", "\n      ")))
	if got := cfg.Sources[0].SignatureURL; got != srv.URL+"/ct/log_list.sig" {
		t.Fatalf("signature_url defaults to %q", got)
	}
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	eventually(t, "the signed list's log followed and its timestamp reported", func() bool {
		return followedLogs(m)["test_good_log"] && lists.of("list").Equal(t1)
	})

	signed := list("2026-09-02T00:00:00Z", goodLog)
	tampered := list("2026-09-02T00:00:00Z", goodLog, otherLog)
	serve(tampered, sign(signed))
	eventually(t, "the tampered list refused at two polls", func() bool {
		h, _ := healthOf(m, "list")
		return h.Errors[ctsource.ReasonBadSignature] >= 2 && !h.Up
	})
	if logs := followedLogs(m); len(logs) != 1 || !logs["test_good_log"] {
		t.Fatalf("logs followed after the tampered list: %v", logs)
	}
	if _, ok := healthOf(m, "test_other_log"); ok {
		t.Fatal("the log the tampered list added has a source")
	}
	if got := lists.of("list"); !got.Equal(t1) {
		t.Fatalf("list timestamp %v after the tampered list, want the previous list's %v", got, t1)
	}

	v3 := list("2026-09-03T00:00:00Z", goodLog, otherLog)
	serve(v3, sign(v3))
	eventually(t, "the next signed list taken", func() bool {
		h, _ := healthOf(m, "list")
		return h.Up && followedLogs(m)["test_other_log"] && lists.of("list").Equal(time.Date(2026, 9, 3, 0, 0, 0, 0, time.UTC))
	})
}

// listTimes keeps the log_list_timestamp each source last reported.
type listTimes struct {
	noMetrics
	mu sync.Mutex
	at map[string]time.Time
}

func (l *listTimes) LogListAccepted(source string, t time.Time) {
	l.mu.Lock()
	l.at[source] = t
	l.mu.Unlock()
}

func (l *listTimes) of(source string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at[source]
}
