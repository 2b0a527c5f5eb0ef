package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// rawConn is a client connection the test drives byte by byte.
type rawConn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one response, waiting at most d.
func (c *rawConn) response(d time.Duration) (*http.Response, string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(body), err
}

func (c *rawConn) mustAnswer(want int) *http.Response {
	c.t.Helper()
	res, body, err := c.response(30 * time.Second)
	if err != nil {
		c.t.Fatalf("no answer: %v", err)
	}
	if res.StatusCode != want {
		c.t.Fatalf("answer %s, want %d: %s", res.Status, want, body)
	}
	return res
}

// mustWait fails if an answer comes within a short window: absence can only
// be shown over one.
func (c *rawConn) mustWait() {
	c.t.Helper()
	if res, _, err := c.response(500 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		if err == nil {
			err = errors.New(res.Status)
		}
		c.t.Fatalf("answered while every connection was busy: %v", err)
	}
}

// closedByServer fails unless the server closes the connection.
func (c *rawConn) closedByServer() {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.r.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("read %d bytes, %v; want the server to close the connection", n, err)
	}
}

func minimalConfig(t *testing.T, dir string) string {
	t.Helper()
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, "watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh, url: 'http://127.0.0.1:1/', interval: 1h}]\n")
	return cfg
}

// raiseFileLimit lets the test hold n connections.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	if r.Cur >= n {
		return
	}
	if r.Max < n {
		t.Skipf("this test holds %d connections; the hard limit on open files is %d (raise it, e.g. ulimit -Hn)", n, r.Max)
	}
	r.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
}

// An unauthenticated client holding 1,000 idle connections (nothing sent; a
// TLS handshake and then nothing; a request answered 401 and kept alive)
// cannot keep an authorized scrape out, and the exporter holds no more
// connections than --web.max-connections (512).
func TestIdleConnectionsDoNotBlockAScrape(t *testing.T) {
	const idle = 1000
	raiseFileLimit(t, idle+256)
	dir := t.TempDir()
	certPEM, keyPEM, pool := testpki.TLSServer(t, "127.0.0.1")
	testenv.WriteFile(t, filepath.Join(dir, "tls.crt"), string(certPEM))
	testenv.WriteFile(t, filepath.Join(dir, "tls.key"), string(keyPEM))
	hash, err := bcryptHash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(dir, "web.yml"), fmt.Sprintf(
		"tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n",
		filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), hash))
	e := harness.StartExporter(t, "--config.file="+minimalConfig(t, dir), "--state.file="+filepath.Join(dir, "s.state"),
		"--web.config.file="+filepath.Join(dir, "web.yml"))
	e.Scheme = "https"
	// A new connection for each scrape, as after the idle ones arrived.
	e.Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	scrape := func() (time.Duration, float64) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.URL("/metrics"), nil)
		req.SetBasicAuth("prometheus", "s3cret")
		start := time.Now()
		res, err := e.Client.Do(req)
		if err != nil {
			t.Fatalf("authorized scrape: %v", err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		took := time.Since(start)
		if err != nil || res.StatusCode != 200 || !strings.Contains(string(body), "ct_exporter_build_info") {
			t.Fatalf("authorized scrape: %s, %v", res.Status, err)
		}
		var fds float64
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "process_open_fds "); ok {
				fmt.Sscan(v, &fds)
			}
		}
		if fds == 0 {
			t.Fatal("no process_open_fds in the scrape")
		}
		return took, fds
	}
	e.Eventually("TLS listener", func() bool {
		res, err := e.Client.Get(e.URL("/-/healthy"))
		if err == nil {
			res.Body.Close()
		}
		return err == nil
	})
	_, before := scrape()

	// The TLS ones first, while there is room for them, so that the test
	// does not wait for their handshakes; the silent ones after them, as
	// fast as the kernel takes them: with a plain limit (netutil), those
	// would queue ahead of the scrape until timeouts close the TLS ones.
	tlsConfig := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	for i := range idle {
		c, err := net.Dial("tcp", e.Addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		if i >= idle/2 {
			continue
		}
		tc := tls.Client(c, tlsConfig)
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("connection %d: TLS handshake: %v", i, err)
		}
		if i%2 == 0 {
			continue
		}
		io.WriteString(tc, "GET /metrics HTTP/1.1\r\nHost: "+e.Addr+"\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || res.Close {
			t.Fatalf("connection %d: unauthenticated request: %s, close %v; want 401 kept alive", i, res.Status, res.Close)
		}
	}

	var worst time.Duration
	var fds float64
	for range 5 {
		took, n := scrape()
		worst, fds = max(worst, took), max(fds, n)
	}
	t.Logf("with %d idle connections: slowest of 5 authorized scrapes %v; open files %v (%v before)", idle, worst, fds, before)
	// The promise is a second; the margin is for -race on a loaded machine.
	if worst > 5*time.Second {
		t.Errorf("an authorized scrape took %v with %d idle connections open", worst, idle)
	}
	// Every connection the exporter holds is a descriptor: the 512 allowed,
	// one waiting in Accept, and the few outgoing ones of a poll.
	if fds > before+512+8 {
		t.Errorf("%v open files with %d idle connections, %v before: --web.max-connections=512 is not enforced", fds, idle, before)
	}
}

func TestIdleKeepAliveConnectionIsClosed(t *testing.T) {
	dir := t.TempDir()
	e := harness.StartExporter(t, "--config.file="+minimalConfig(t, dir), "--state.file="+filepath.Join(dir, "s.state"), "--web.idle-timeout=1s")
	e.WaitReady()
	c := dialRaw(t, e.Addr)
	c.send("GET /-/healthy HTTP/1.1\r\nHost: " + e.Addr + "\r\n\r\n")
	if res := c.mustAnswer(200); res.Close {
		t.Fatal("the server closed the connection after the response: nothing tests the idle timeout")
	}
	c.closedByServer()
}

func TestMaxConnections(t *testing.T) {
	dir := t.TempDir()
	e := harness.StartExporter(t, "--config.file="+minimalConfig(t, dir), "--state.file="+filepath.Join(dir, "s.state"), "--web.max-connections=3")
	e.WaitReady()
	// Each sends a request whose body never comes: the exporter reads it
	// before answering, so the connection is busy.
	var held []*rawConn
	for range 3 {
		c := dialRaw(t, e.Addr)
		c.send("POST /-/healthy HTTP/1.1\r\nHost: " + e.Addr + "\r\nContent-Length: 1\r\n\r\n")
		held = append(held, c)
	}
	fourth := dialRaw(t, e.Addr)
	fourth.send("GET /-/healthy HTTP/1.1\r\nHost: " + e.Addr + "\r\n\r\n")
	fourth.mustWait()
	held[0].Close()
	fourth.mustAnswer(200)

	// The fourth is idle now; a fifth takes its place at once.
	fifth := dialRaw(t, e.Addr)
	fifth.send("GET /-/healthy HTTP/1.1\r\nHost: " + e.Addr + "\r\n\r\n")
	fifth.mustAnswer(200)
	fourth.closedByServer()
	// The busy ones were never cut off.
	held[1].send("x")
	held[1].mustAnswer(200)
}

func TestMaxConnectionsRefusesZero(t *testing.T) {
	dir := t.TempDir()
	code, out := harness.Run(t, "--config.file="+minimalConfig(t, dir), "--state.file="+filepath.Join(dir, "s.state"),
		"--web.listen-address="+testenv.FreeAddr(t), "--web.max-connections=0")
	if code != 1 || !strings.Contains(out, "web.max-connections") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// A web page cannot make the operator's browser reload the exporter.
func TestReloadRefusesCrossOrigin(t *testing.T) {
	dir := t.TempDir()
	cfg := minimalConfig(t, dir)
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "s.state"))
	e.WaitReady()
	reloadedAt := func() float64 { return harness.Value(e.Scrape(), "ct_config_last_reload_success_timestamp_seconds") }
	watchesOrg := func() bool {
		return harness.Count(e.Scrape(), "ct_certificate_series_dropped_total", "watch", "example.org") == 1
	}
	at := reloadedAt()
	// A reload would now add a watch.
	testenv.WriteFile(t, cfg, "watches: [{domain: example.com}, {domain: example.org}]\nsources: [{name: crtsh, type: crtsh, url: 'http://127.0.0.1:1/', interval: 1h}]\n")

	reload := func(method string, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, e.URL("/-/reload"), strings.NewReader("x=1"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := e.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	for _, h := range [][]string{
		{"Origin", "https://evil.example"},
		{"Origin", "http://evil.example:" + strings.Split(e.Addr, ":")[1]},
		{"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://other." + e.Addr},
		// Sec-Fetch-Site is what a browser knows; Origin alone is not
		// trusted over it.
		{"Sec-Fetch-Site", "cross-site", "Origin", "http://" + e.Addr},
	} {
		for _, method := range []string{"POST", "PUT"} {
			if code, body := reload(method, h...); code != http.StatusForbidden || !strings.Contains(body, "Cross-origin") {
				t.Errorf("%s with %q: %d %s; want 403", method, h, code, body)
			}
		}
	}
	if got := reloadedAt(); got != at || watchesOrg() {
		t.Fatalf("a cross-origin request reloaded the configuration (reload time %v, was %v)", got, at)
	}

	// curl -X POST, and the exporter's own origin, still reload.
	for _, h := range [][]string{
		nil,
		{"Origin", "http://" + e.Addr},
		{"Sec-Fetch-Site", "same-origin", "Origin", "http://" + e.Addr},
	} {
		if code, body := reload("POST", h...); code != 200 {
			t.Fatalf("POST with %q: %d %s", h, code, body)
		}
		next := reloadedAt()
		if next <= at {
			t.Fatalf("POST with %q answered 200 but did not reload", h)
		}
		at = next
	}
	if !watchesOrg() {
		t.Fatal("the reload did not apply the new configuration")
	}
}

// The report's case: a process allowed 128 files, 118 unauthenticated
// keep-alive connections. The connection limit fits under the file limit, so
// the idle connections make room for the scrape and leave the crt.sh poll its
// descriptors.
func TestIdleConnectionsUnderALowFileLimit(t *testing.T) {
	crtsh := crtshfake.New()
	defer crtsh.Close()
	dir := t.TempDir()
	hash, err := bcryptHash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(dir, "web.yml"), "basic_auth_users:\n  prometheus: "+hash+"\n")
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, fmt.Sprintf("watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh, url: %q, interval: 200ms, request_interval: 0s}]\n", crtsh.URL+"/"))
	e := harness.StartExporterWith(t, harness.Binary(t), func(cmd *exec.Cmd) {
		cmd.Args = append([]string{"sh", "-c", `ulimit -n 128 && exec "$0" "$@"`}, cmd.Args...)
		cmd.Path = "/bin/sh"
	}, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "s.state"), "--web.config.file="+filepath.Join(dir, "web.yml"))
	e.Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var worst time.Duration
	lastSuccess := func() float64 {
		t.Helper()
		req, _ := http.NewRequest("GET", e.URL("/metrics"), nil)
		req.SetBasicAuth("prometheus", "s3cret")
		start := time.Now()
		res, err := e.Client.Do(req)
		if err != nil {
			t.Fatalf("authorized scrape: %v", err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		worst = max(worst, time.Since(start))
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("authorized scrape: %s, %v", res.Status, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		return harness.Value(families, "ct_source_last_success_timestamp_seconds", "source", "crtsh")
	}
	e.Eventually("the first crt.sh poll", func() bool {
		c, err := net.Dial("tcp", e.Addr)
		if err != nil {
			return false
		}
		c.Close()
		return lastSuccess() > 0
	})

	for i := range 118 {
		c := dialRaw(t, e.Addr)
		c.send("GET /metrics HTTP/1.1\r\nHost: " + e.Addr + "\r\n\r\n")
		if res := c.mustAnswer(http.StatusUnauthorized); res.Close {
			t.Fatalf("connection %d: the 401 closed the connection: nothing is held open", i)
		}
	}
	flooded := float64(time.Now().UnixNano()) / 1e9
	worst = 0
	e.Eventually("a crt.sh poll after the idle connections", func() bool { return lastSuccess() > flooded })
	t.Logf("slowest authorized scrape with 118 idle connections under a 128-file limit: %v", worst)
	if worst > 5*time.Second {
		t.Errorf("an authorized scrape took %v", worst)
	}
}

// Socket activation still works, and its sockets are limited too.
func TestMaxConnectionsWithSystemdSocket(t *testing.T) {
	activate := testenv.Require(t, "systemd-socket-activate", "systemd")
	dir := t.TempDir()
	e := harness.StartExporterWith(t, harness.Binary(t), func(cmd *exec.Cmd) {
		addr, _ := strings.CutPrefix(cmd.Args[1], "--web.listen-address=")
		cmd.Args = append([]string{"systemd-socket-activate", "--listen=" + addr}, cmd.Args...)
		cmd.Path = activate
	}, "--web.systemd-socket", "--web.max-connections=1", "--config.file="+minimalConfig(t, dir), "--state.file="+filepath.Join(dir, "s.state"))
	e.WaitReady()
	silent := dialRaw(t, e.Addr)
	c := dialRaw(t, e.Addr)
	c.send("GET /-/healthy HTTP/1.1\r\nHost: " + e.Addr + "\r\n\r\n")
	c.mustAnswer(200)
	silent.closedByServer()
}

// The limit is over all listeners together.
func TestMaxConnectionsOverSeveralListenAddresses(t *testing.T) {
	dir := t.TempDir()
	second := testenv.FreeAddr(t)
	e := harness.StartExporter(t, "--web.listen-address="+second, "--web.max-connections=1",
		"--config.file="+minimalConfig(t, dir), "--state.file="+filepath.Join(dir, "s.state"))
	e.WaitReady()
	silent := dialRaw(t, e.Addr)
	c := dialRaw(t, second)
	c.send("GET /-/healthy HTTP/1.1\r\nHost: " + second + "\r\n\r\n")
	c.mustAnswer(200)
	silent.closedByServer()
}
