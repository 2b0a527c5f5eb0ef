package ctsource

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
)

// logListJSON writes a v3 log list, the shape Google publishes.
func logListJSON(t *testing.T, logs ...map[string]any) []byte {
	t.Helper()
	var rfc, tiled []map[string]any
	for _, l := range logs {
		if _, ok := l["monitoring_url"]; ok {
			tiled = append(tiled, l)
		} else {
			rfc = append(rfc, l)
		}
	}
	data, err := json.Marshal(map[string]any{
		"version": "42.0", "log_list_timestamp": "2026-11-24T00:00:00Z",
		"operators": []map[string]any{{"name": "Test", "email": []string{"ct@example.com"}, "logs": rfc, "tiled_logs": tiled}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func listLog(desc, url string, key []byte, state map[string]any, interval map[string]any) map[string]any {
	l := map[string]any{"description": desc, "log_id": base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"key": base64.StdEncoding.EncodeToString(key), "url": url, "mmd": 86400, "state": state}
	if interval != nil {
		l["temporal_interval"] = interval
	}
	return l
}

func logState(name string) map[string]any {
	return map[string]any{name: map[string]any{"timestamp": "2026-01-01T00:00:00Z"}}
}

type discoveries struct {
	mu    sync.Mutex
	calls int
	logs  []DiscoveredLog
}

func (d *discoveries) env() *Env {
	return &Env{CountError: func(string) {}, Logger: promslog.NewNopLogger(), Discover: func(_ string, logs []DiscoveredLog) {
		d.mu.Lock()
		d.calls++
		d.logs = logs
		d.mu.Unlock()
	}}
}

func TestLogListPicksLogs(t *testing.T) {
	key := newLogHarness(t).fake.PublicKeyDER()
	now := time.Now()
	year := func(y int) map[string]any {
		return map[string]any{"start_inclusive": fmt.Sprintf("%d-01-01T00:00:00Z", y), "end_exclusive": fmt.Sprintf("%d-01-01T00:00:00Z", y+1)}
	}
	root := make([]byte, 32)
	root[0] = 7
	readonly := map[string]any{"readonly": map[string]any{"timestamp": "2026-01-01T00:00:00Z",
		"final_tree_head": map[string]any{"tree_size": 1234, "sha256_root_hash": base64.StdEncoding.EncodeToString(root)}}}
	tiled := listLog("Sunlight 'Tuscolo2027h1'", "", key, logState("usable"), year(now.Year()+1))
	tiled["monitoring_url"] = "https://tuscolo.example/2027h1/"
	data := logListJSON(t,
		listLog("Google 'Argon2026h2' log", "https://argon.example/2026h2/", key, logState("usable"), year(now.Year())),
		listLog("Old 'Shard' log", "https://old.example/", key, logState("usable"), year(now.Year()-3)),
		listLog("Qualified log", "https://q.example/", key, logState("qualified"), nil),
		listLog("Pending log", "https://p.example/", key, logState("pending"), nil),
		listLog("Retired log", "https://r.example/", key, logState("retired"), nil),
		listLog("Rejected log", "https://x.example/", key, logState("rejected"), nil),
		listLog("Frozen log", "https://f.example/", key, readonly, nil),
		tiled,
	)
	path := filepath.Join(t.TempDir(), "list.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := NewLogList("google", path, []string{"qualified", "usable", "readonly"}, time.Hour, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var d discoveries
	if err := l.Poll(context.Background(), d.env()); err != nil {
		t.Fatal(err)
	}
	got := map[string]DiscoveredLog{}
	for _, lg := range d.logs {
		got[lg.Name] = lg
	}
	for _, want := range []string{"google_argon2026h2_log", "qualified_log", "frozen_log", "sunlight_tuscolo2027h1"} {
		if _, ok := got[want]; !ok {
			t.Errorf("%s not followed; got %v", want, d.logs)
		}
	}
	if len(got) != 4 {
		t.Errorf("followed %d logs, want 4 (no pending, retired, rejected or long-ended shard): %v", len(got), d.logs)
	}
	if f := got["frozen_log"].Final; f == nil || f.Size != 1234 || f.Root[0] != 7 {
		t.Errorf("readonly final tree head = %+v", f)
	}
	if s := got["sunlight_tuscolo2027h1"]; s.Protocol != "static" || s.URL != "https://tuscolo.example/2027h1/" || s.MMD != 24*time.Hour {
		t.Errorf("tiled log = %+v", s)
	}
	// Unchanged file: nothing new to say.
	if err := l.Poll(context.Background(), d.env()); err != nil || d.calls != 1 {
		t.Fatalf("unchanged list: %v, %d calls", err, d.calls)
	}
}

func TestLogListOverHTTP(t *testing.T) {
	key := newLogHarness(t).fake.PublicKeyDER()
	var mu sync.Mutex
	body := logListJSON(t, listLog("A log", "https://a.example/", key, logState("usable"), nil))
	conditional := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		etag := fmt.Sprintf(`"%x"`, len(body))
		if r.Header.Get("If-None-Match") == etag {
			conditional++
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Write(body)
	}))
	defer srv.Close()
	l, err := NewLogList("list", srv.URL+"/log_list.json", []string{"usable"}, time.Hour, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l.http.backoffBase = time.Millisecond
	var d discoveries
	errs := map[string]int{}
	env := d.env()
	env.CountError = func(r string) { errs[r]++ }
	for i := 0; i < 2; i++ {
		if err := l.Poll(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
	if d.calls != 1 || conditional != 1 {
		t.Fatalf("%d discoveries, %d conditional requests answered 304; want 1 and 1", d.calls, conditional)
	}
	// A broken list keeps the previous one.
	mu.Lock()
	body = []byte("<html>maintenance</html>")
	mu.Unlock()
	if err := l.Poll(context.Background(), env); ReasonOf(err) != ReasonBadResponse || errs[ReasonBadResponse] != 1 {
		t.Fatalf("broken list: %v, %v", err, errs)
	}
	if d.calls != 1 || len(d.logs) != 1 {
		t.Fatal("a broken list replaced the logs")
	}
	mu.Lock()
	body = logListJSON(t, listLog("A log", "https://a.example/", key, logState("usable"), nil), listLog("B log", "https://b.example/", key, logState("usable"), nil))
	mu.Unlock()
	if err := l.Poll(context.Background(), env); err != nil || d.calls != 2 || len(d.logs) != 2 {
		t.Fatalf("changed list: %v, %d calls, %v", err, d.calls, d.logs)
	}
}

func TestLogLabel(t *testing.T) {
	for in, want := range map[string]string{
		"Google 'Argon2026h1' log":      "google_argon2026h1_log",
		"Let's Encrypt 'Oak2026h2' log": "let_s_encrypt_oak2026h2_log",
		"  DigiCert Wyvern2027h1 Log  ": "digicert_wyvern2027h1_log",
		"<script>":                      "script",
		"???":                           "log",
	} {
		if got := LogLabel(in); got != want || strings.ContainsAny(got, " '<") {
			t.Errorf("LogLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
