package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// basicAuthExporter runs the exporter with basic auth (user prometheus,
// password s3cret) and extra flags.
func basicAuthExporter(t *testing.T, args ...string) *exporter {
	t.Helper()
	dir := t.TempDir()
	hash, err := bcryptHash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "web.yml"), "basic_auth_users:\n  prometheus: "+hash+"\n")
	cfg := filepath.Join(dir, "ct.yml")
	writeFile(t, cfg, "watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh, url: 'http://127.0.0.1:1/'}]\n")
	e := startExporter(t, append([]string{"--config.file=" + cfg, "--state.file=" + filepath.Join(dir, "s.state"),
		"--web.config.file=" + filepath.Join(dir, "web.yml")}, args...)...)
	e.eventually("listening", func() bool { return scrapeAs(e, "prometheus", "s3cret") == nil })
	return e
}

func scrapeAs(e *exporter, user, pass string) error {
	req, _ := http.NewRequest("GET", e.url("/metrics"), nil)
	req.SetBasicAuth(user, pass)
	res, err := (&http.Client{Timeout: requestTimeout, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("status %s", res.Status)
	}
	return nil
}

// 1,000 idle connections of an unauthenticated client (half of them
// answered 401 and kept alive, half sending nothing) do not lock
// Prometheus out: beyond --web.max-connections, idle ones are closed to
// make room.
func TestIdleConnectionsDoNotLockOutAScrape(t *testing.T) {
	const idle = 1000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < idle+200 {
		lim.Cur = min(lim.Max, idle+500)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < idle+200 {
			t.Skipf("this process may open %d descriptors, the test needs %d (%v)", lim.Cur, idle+200, err)
		}
	}
	e := basicAuthExporter(t)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range idle {
		c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%2 == 0 && i < 400 { // a few hundred answered 401, kept alive
			fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
			c.SetReadDeadline(time.Now().Add(requestTimeout))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || res.StatusCode != 401 {
				t.Fatalf("connection %d: %v, want 401", i, err)
			}
		}
	}
	start := time.Now()
	if err := scrapeAs(e, "prometheus", "s3cret"); err != nil {
		t.Fatalf("the authorized scrape behind %d idle connections: %v", idle, err)
	}
	took := time.Since(start)
	t.Logf("the authorized scrape behind %d idle connections answered in %v", idle, took)
	// A guard, not a benchmark: before the limiter closed idle ones, it
	// waited for their timeouts (tens of seconds), or failed.
	if took > 5*time.Second {
		t.Errorf("the scrape took %v", took)
	}
}

// An idle keep-alive connection is closed by the server.
func TestIdleConnectionIsClosed(t *testing.T) {
	e := basicAuthExporter(t, "--web.idle-timeout=300ms")
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /-/healthy HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
	r := bufio.NewReader(c)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	if _, err := r.ReadByte(); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the idle connection was not closed by the server: %v", err)
	}
}

// /-/reload refuses what a web page sends on the operator's behalf.
func TestReloadRefusesCrossOrigin(t *testing.T) {
	e := basicAuthExporter(t)
	reloadAt := func() float64 {
		req, _ := http.NewRequest("GET", e.url("/metrics"), nil)
		req.SetBasicAuth("prometheus", "s3cret")
		res, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		m, err := parser.TextToMetricFamilies(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return value(m, "ct_config_last_reload_success_timestamp_seconds")
	}
	post := func(header ...string) int {
		req, _ := http.NewRequest("POST", e.url("/-/reload"), strings.NewReader("x=1"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("prometheus", "s3cret")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	before := reloadAt()
	for _, h := range [][]string{
		{"Origin", "https://evil.example"},
		{"Origin", "null"},
		{"Origin", "http://" + e.addr + ".evil.example"},
		{"Sec-Fetch-Site", "cross-site"},
	} {
		if code := post(h...); code != http.StatusForbidden {
			t.Errorf("%s: %s answered %d, want 403", h[0], h[1], code)
		}
	}
	if after := reloadAt(); after != before {
		t.Fatalf("a refused request reloaded the configuration (%v → %v)", before, after)
	}
	for _, h := range [][]string{nil, {"Origin", "http://" + e.addr}} {
		if code := post(h...); code != http.StatusOK {
			t.Errorf("%q: answered %d, want 200", h, code)
		}
	}
}
