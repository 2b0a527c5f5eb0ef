package loglist

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

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
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
	logs  []Log
}

func (d *discoveries) env() *ctsource.Env {
	return &ctsource.Env{Logger: promslog.NewNopLogger()}
}

func (d *discoveries) found(_ string, logs []Log) {
	d.mu.Lock()
	d.calls++
	d.logs = logs
	d.mu.Unlock()
}

func TestLogListPicksLogs(t *testing.T) {
	key := ctlogfake.New(t).PublicKeyDER()
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
	var d discoveries
	l, err := New("google", path, []string{"qualified", "usable", "readonly"}, 200, time.Hour, time.Second, nil, d.found)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Poll(context.Background(), d.env()); err != nil {
		t.Fatal(err)
	}
	got := map[string]Log{}
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
	if s := got["sunlight_tuscolo2027h1"]; !s.Tiled || s.URL != "https://tuscolo.example/2027h1/" || s.MMD != 24*time.Hour {
		t.Errorf("tiled log = %+v", s)
	}
	// Unchanged file: nothing new to say.
	if err := l.Poll(context.Background(), d.env()); err != nil || d.calls != 1 {
		t.Fatalf("unchanged list: %v, %d calls", err, d.calls)
	}
}

func TestLogListOverHTTP(t *testing.T) {
	key := ctlogfake.New(t).PublicKeyDER()
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
	errs := map[string]int{}
	var d discoveries
	l, err := New("list", srv.URL+"/log_list.json", []string{"usable"}, 200, time.Hour, time.Second, func(r string) { errs[r]++ }, d.found)
	if err != nil {
		t.Fatal(err)
	}
	l.http.BackoffBase = time.Millisecond
	env := d.env()
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
	if err := l.Poll(context.Background(), env); ctsource.ReasonOf(err) != ctsource.ReasonBadResponse || errs[ctsource.ReasonBadResponse] != 1 {
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
		if got := Label(in); got != want || strings.ContainsAny(got, " '<") {
			t.Errorf("LogLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// manyLogs is n usable logs, the i-th at url(i).
func manyLogs(n int, key []byte, url func(i int) string) []map[string]any {
	logs := make([]map[string]any, n)
	for i := range logs {
		logs[i] = listLog(fmt.Sprintf("Test 'Log%d' log", i), url(i), key, logState("usable"), nil)
	}
	return logs
}

// listServer serves a log list with an ETag, answering 304 to a request
// that names the current one, as gstatic does.
type listServer struct {
	*httptest.Server
	mu          sync.Mutex
	body        []byte
	version     int
	notModified int
}

func newListServer(t *testing.T) *listServer {
	s := &listServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		etag := fmt.Sprintf(`"v%d"`, s.version)
		if r.Header.Get("If-None-Match") == etag {
			s.notModified++
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *listServer) set(body []byte) {
	s.mu.Lock()
	s.body = body
	s.version++
	s.mu.Unlock()
}

// A list naming more logs than max_logs is refused whole, like a list that
// does not parse: counted under list_too_large, nothing of it followed, the
// previous list kept; and refused again at every poll while it is served
// (its ETag is not taken, so the next poll is not answered 304 and read as
// "unchanged"). A list at the limit is accepted.
func TestLogListRefusesTooManyLogs(t *testing.T) {
	key := ctlogfake.New(t).PublicKeyDER()
	srv := newListServer(t)
	url := func(i int) string { return fmt.Sprintf("https://log%d.example/", i) }
	srv.set(logListJSON(t, manyLogs(3, key, url)...))
	errs := map[string]int{}
	var d discoveries
	l, err := New("list", srv.URL+"/log_list.json", []string{"usable"}, 200, time.Hour, time.Second, func(r string) { errs[r]++ }, d.found)
	if err != nil {
		t.Fatal(err)
	}
	env := d.env()
	if err := l.Poll(context.Background(), env); err != nil || d.calls != 1 || len(d.logs) != 3 {
		t.Fatalf("first list: %v, %d calls, %d logs", err, d.calls, len(d.logs))
	}

	srv.set(logListJSON(t, manyLogs(5000, key, url)...))
	for poll := 1; poll <= 2; poll++ {
		err := l.Poll(context.Background(), env)
		if ctsource.ReasonOf(err) != ctsource.ReasonListTooLarge || errs[ctsource.ReasonListTooLarge] != poll {
			t.Fatalf("poll %d of the list of 5000: %v, errors %v; want list_too_large counted %d times", poll, err, errs, poll)
		}
		for _, want := range []string{"5000", "max_logs (200)", "keeping the previous list"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error %q does not say %q", err, want)
			}
		}
		if d.calls != 1 || len(d.logs) != 3 {
			t.Fatalf("the refused list replaced the previous one: %d calls, %d logs", d.calls, len(d.logs))
		}
	}
	if srv.notModified != 0 {
		t.Fatalf("the refused list was answered 304 %d times: its ETag was taken", srv.notModified)
	}
	if errs[ctsource.ReasonBadResponse] != 0 {
		t.Fatalf("a refused list also counted bad_response: %v", errs)
	}

	// Exactly max_logs: accepted.
	srv.set(logListJSON(t, manyLogs(200, key, url)...))
	if err := l.Poll(context.Background(), env); err != nil || d.calls != 2 || len(d.logs) != 200 {
		t.Fatalf("a list of max_logs logs: %v, %d calls, %d logs", err, d.calls, len(d.logs))
	}
	if err := l.Poll(context.Background(), env); err != nil || d.calls != 2 || srv.notModified != 1 {
		t.Fatalf("the accepted list polled again: %v, %d calls, %d answered 304", err, d.calls, srv.notModified)
	}

	if _, err := New("list", srv.URL, []string{"usable"}, 0, time.Hour, time.Second, func(r string) { errs[r]++ }, d.found); err == nil {
		t.Fatal("max_logs 0 accepted")
	}
}

// Only logs not followed count against max_logs: skipped states and long-
// ended shards do not make a list too large.
func TestLogListMaxLogsCountsOnlyLogsFollowed(t *testing.T) {
	key := ctlogfake.New(t).PublicKeyDER()
	ended := map[string]any{"start_inclusive": "2020-01-01T00:00:00Z", "end_exclusive": "2021-01-01T00:00:00Z"}
	logs := manyLogs(2, key, func(i int) string { return fmt.Sprintf("https://log%d.example/", i) })
	for i := 0; i < 5; i++ {
		logs = append(logs,
			listLog(fmt.Sprintf("Retired %d", i), "https://retired.example/", key, logState("retired"), nil),
			listLog(fmt.Sprintf("Ended %d", i), "https://ended.example/", key, logState("usable"), ended),
			listLog(fmt.Sprintf("Plain %d", i), "http://plain.example/", key, logState("usable"), nil))
	}
	path := filepath.Join(t.TempDir(), "list.json")
	if err := os.WriteFile(path, logListJSON(t, logs...), 0o644); err != nil {
		t.Fatal(err)
	}
	var d discoveries
	l, err := New("list", path, []string{"usable"}, 2, time.Hour, time.Second, nil, d.found)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Poll(context.Background(), d.env()); err != nil || len(d.logs) != 2 {
		t.Fatalf("a list of 2 logs to follow among 17 with max_logs 2: %v, %d logs", err, len(d.logs))
	}
}

// A log whose URL is not https is not followed (plain http only to a
// loopback address), and each one left out is counted; the others are.
func TestLogListSkipsLogsNotOnHTTPS(t *testing.T) {
	key := ctlogfake.New(t).PublicKeyDER()
	tiled := func(desc, url string) map[string]any {
		l := listLog(desc, "", key, logState("usable"), nil)
		l["monitoring_url"] = url
		return l
	}
	follow := map[string]string{
		"https":          "https://ct.example/2026h2/",
		"https_ip":       "https://192.0.2.1/",
		"loopback_v4":    "http://127.0.0.1:8080/",
		"loopback_other": "http://127.1.2.3/log/",
		"loopback_v6":    "http://[::1]:8080/",
		"localhost":      "http://LocalHost:8080/",
		"tiled_https":    "https://tiled.example/",
	}
	skip := map[string]string{
		"plain":          "http://ct.example/2026h2/",
		"plain_private":  "http://10.0.0.1/",
		"plain_metadata": "http://169.254.169.254/latest/",
		"looks_local":    "http://127.0.0.1.evil.example/",
		"localhost_sub":  "http://localhost.evil.example/",
		"ftp":            "ftp://ct.example/",
		"no_host":        "https:///path",
		"relative":       "/ct/v1/",
		"tiled_plain":    "http://tiled.example/",
	}
	var logs []map[string]any
	for _, set := range []map[string]string{follow, skip} {
		for name, url := range set {
			if strings.HasPrefix(name, "tiled") {
				logs = append(logs, tiled(name, url))
			} else {
				logs = append(logs, listLog(name, url, key, logState("usable"), nil))
			}
		}
	}
	path := filepath.Join(t.TempDir(), "list.json")
	if err := os.WriteFile(path, logListJSON(t, logs...), 0o644); err != nil {
		t.Fatal(err)
	}
	errs := map[string]int{}
	var d discoveries
	l, err := New("list", path, []string{"usable"}, 200, time.Hour, time.Second, func(r string) { errs[r]++ }, d.found)
	if err != nil {
		t.Fatal(err)
	}
	env := d.env()
	if err := l.Poll(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, lg := range d.logs {
		got[lg.Name] = lg.URL
	}
	for name, url := range follow {
		if got[name] != url {
			t.Errorf("%s (%s) not followed", name, url)
		}
	}
	for name, url := range skip {
		if _, ok := got[name]; ok {
			t.Errorf("%s (%s) followed", name, url)
		}
	}
	if errs[ctsource.ReasonBadResponse] != len(skip) {
		t.Errorf("counted %d bad_response for %d logs left out", errs[ctsource.ReasonBadResponse], len(skip))
	}

	// A list whose logs are all left out keeps the previous list.
	plain := logListJSON(t, listLog("Plain", "http://ct.example/", key, logState("usable"), nil))
	if err := os.WriteFile(path, plain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Poll(context.Background(), env); ctsource.ReasonOf(err) != ctsource.ReasonBadResponse || d.calls != 1 {
		t.Fatalf("a list of plain-http logs only: %v, %d calls", err, d.calls)
	}
}
