package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/tools"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ct_exporter-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if binary, err = tools.BuildExporter(dir, raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// exporter is a running ct_exporter process.
type exporter struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	scheme string
	client *http.Client
	logs   *bytes.Buffer
	exited chan struct{}
}

// requestTimeout bounds a request to the exporter: a guard against a hung
// exporter, not a measure of speed. An exporter starved of CPU (a test run
// under nice on a loaded machine) takes seconds to answer a scrape.
const requestTimeout = 60 * time.Second

func startExporter(t *testing.T, args ...string) *exporter {
	t.Helper()
	return startExporterWith(t, binary, nil, args...)
}

// startExporterWith starts the program bin (a ct_exporter) with args;
// configure, when not nil, adjusts the command first (user, directory,
// environment).
func startExporterWith(t *testing.T, bin string, configure func(*exec.Cmd), args ...string) *exporter {
	t.Helper()
	e := &exporter{t: t, addr: tools.FreeAddr(t), scheme: "http", client: &http.Client{Timeout: requestTimeout}, logs: &bytes.Buffer{}, exited: make(chan struct{})}
	e.cmd = exec.Command(bin, append([]string{"--web.listen-address=" + e.addr, "--log.level=debug"}, args...)...)
	if configure != nil {
		configure(e.cmd)
	}
	e.cmd.Stdout = e.logs
	e.cmd.Stderr = e.logs
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.cmd.Wait(); close(e.exited) }()
	t.Cleanup(func() {
		e.cmd.Process.Kill()
		<-e.exited
		if t.Failed() {
			t.Logf("exporter log:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *exporter) url(path string) string { return e.scheme + "://" + e.addr + path }

// waitReady polls /-/ready until it answers 200.
func (e *exporter) waitReady() {
	e.t.Helper()
	e.eventually("ready", func() bool {
		res, err := e.client.Get(e.url("/-/ready"))
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
}

func (e *exporter) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-e.exited:
			e.t.Fatalf("exporter exited while waiting for %s", what)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *exporter) scrape() map[string]*dto.MetricFamily {
	e.t.Helper()
	res, err := e.client.Get(e.url("/metrics"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		e.t.Fatalf("/metrics: %s", res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return families
}

// value sums the samples of a family whose labels include the given pairs.
func value(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	total := 0.0
	f := families[name]
	if f == nil {
		return 0
	}
	for _, m := range f.Metric {
		if !hasLabels(m, labels...) {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total
}

func count(families map[string]*dto.MetricFamily, name string, labels ...string) int {
	n := 0
	if f := families[name]; f != nil {
		for _, m := range f.Metric {
			if hasLabels(m, labels...) {
				n++
			}
		}
	}
	return n
}

func hasLabels(m *dto.Metric, pairs ...string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range m.Label {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func post(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	res, err := c.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func runBinary(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	writeFile(t, good, "watches: [{domain: Example.COM}]\nsources: [{name: crtsh, type: crtsh}]\n")
	code, out := runBinary(t, "--config.check", "--config.file="+good)
	if code != 0 || !strings.Contains(out, "watch example.com: example.com and every subdomain") {
		t.Fatalf("valid config: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "warning") {
		t.Fatalf("a configuration without a problem warned:\n%s", out)
	}
	loose := filepath.Join(dir, "loose.yml")
	writeFile(t, loose, "watches: [{domain: example.com, expected_issuers: [\"/^CN=R1[0-4], O=Let's Encrypt/\"]}]\nsources: [{name: crtsh, type: crtsh}]\n")
	code, out = runBinary(t, "--config.check", "--config.file="+loose)
	if code != 0 || !strings.Contains(out, "warning: expected issuer /^CN=R1[0-4], O=Let's Encrypt/ is not anchored at both ends") ||
		!strings.Contains(out, "it also accepts longer DNs") {
		t.Fatalf("an unanchored expected issuer: exit %d, want 0 and a warning\n%s", code, out)
	}
	bad := filepath.Join(dir, "bad.yml")
	writeFile(t, bad, "watches:\n  - domain: example.com\n    expected_issuer: [x]\nsources: [{name: crtsh, type: crtsh, interval: soon}]\n")
	code, out = runBinary(t, "--config.check", "--config.file="+bad)
	if code != 1 || !strings.Contains(out, bad+`:3: unknown key "expected_issuer"`) {
		t.Fatalf("invalid config: exit %d\n%s", code, out)
	}
	if code, _ := runBinary(t, "--config.check", "--config.file="+filepath.Join(dir, "missing.yml")); code != 1 {
		t.Fatalf("missing config: exit %d", code)
	}
}

func TestReloadAndEndpoints(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	base := "sources: [{name: crtsh, type: crtsh, url: 'http://127.0.0.1:1/', interval: 1h}]\n"
	writeFile(t, cfg, "watches: [{domain: example.com}]\n"+base)
	e := startExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "s.state"))
	e.waitReady()

	for path, want := range map[string]string{"/-/healthy": "Healthy", "/": "ct_exporter", "/metrics": "ct_exporter_build_info"} {
		res, err := e.client.Get(e.url(path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %s, body lacks %q", path, res.Status, want)
		}
	}
	if res, err := e.client.Get(e.url("/-/reload")); err != nil || res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload = %v, %v", res.Status, err)
	}

	// A good reload adds a watch.
	writeFile(t, cfg, "watches: [{domain: example.com}, {domain: example.org}]\n"+base)
	if code, body := post(t, e.client, e.url("/-/reload")); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	m := e.scrape()
	if count(m, "ct_certificate_series_dropped_total", "watch", "example.org") != 1 || value(m, "ct_config_last_reload_successful") != 1 {
		t.Fatal("reloaded watch not in effect")
	}
	// A bad one is rejected and the old configuration kept.
	writeFile(t, cfg, "watches: [{domain: ''}]\n"+base)
	code, body := post(t, e.client, e.url("/-/reload"))
	if code != 400 || !strings.Contains(body, cfg+":1: watch domain") {
		t.Fatalf("bad reload: %d %s", code, body)
	}
	m = e.scrape()
	if value(m, "ct_config_last_reload_successful") != 0 || count(m, "ct_certificate_series_dropped_total", "watch", "example.org") != 1 {
		t.Fatal("bad reload not reported, or the old configuration was not kept")
	}
	// SIGHUP reloads too.
	writeFile(t, cfg, "watches: [{domain: example.net}]\n"+base)
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.eventually("SIGHUP reload", func() bool {
		m := e.scrape()
		return value(m, "ct_config_last_reload_successful") == 1 && count(m, "ct_certificate_series_dropped_total", "watch", "example.net") == 1
	})
	// The unreachable source is marked down, never "no certificates".
	e.eventually("source down", func() bool {
		m := e.scrape()
		return count(m, "ct_source_up", "source", "crtsh") == 1 && value(m, "ct_source_up", "source", "crtsh") == 0 &&
			value(m, "ct_source_errors_total", "source", "crtsh", "reason", "network") > 0
	})
}

func TestDamagedStateRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	writeFile(t, cfg, "watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh}]\n")
	state := filepath.Join(dir, "s.state")
	writeFile(t, state, "this is not a state file, but somebody's data\n")
	code, out := runBinary(t, "--config.file="+cfg, "--state.file="+state, "--web.listen-address="+tools.FreeAddr(t))
	if code != 1 || !strings.Contains(out, state) || !strings.Contains(out, "move it aside") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if data, _ := os.ReadFile(state); !strings.HasPrefix(string(data), "this is not") {
		t.Fatal("the damaged state file was replaced")
	}
}

func TestTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, pool := serverCert(t)
	writeFile(t, filepath.Join(dir, "tls.crt"), string(certPEM))
	writeFile(t, filepath.Join(dir, "tls.key"), string(keyPEM))
	hash, err := bcryptHash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "web.yml"), fmt.Sprintf(
		"tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: %s\n",
		filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), hash))
	cfg := filepath.Join(dir, "ct.yml")
	writeFile(t, cfg, "watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh, url: 'http://127.0.0.1:1/'}]\n")
	e := startExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "s.state"), "--web.config.file="+filepath.Join(dir, "web.yml"))
	e.scheme = "https"
	tlsClient := &http.Client{Timeout: requestTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", e.url("/metrics"), nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		res, err := tlsClient.Do(req)
		if err != nil {
			return -1
		}
		res.Body.Close()
		return res.StatusCode
	}
	e.eventually("TLS listener", func() bool { return get("prometheus", "s3cret") == 200 })
	if code := get("prometheus", "wrong"); code != 401 {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code := get("", ""); code != 401 {
		t.Errorf("no credentials: %d, want 401", code)
	}
	// Plain HTTP gets no metrics.
	res, err := e.client.Get("http://" + e.addr + "/metrics")
	if err == nil {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(body), "ct_") {
			t.Fatal("metrics served over plain HTTP")
		}
	}
}

func serverCert(t *testing.T) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	certPEM, keyPEM, err := selfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certPEM, keyPEM, pool
}
