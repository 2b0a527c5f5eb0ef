package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"golang.org/x/crypto/bcrypt"
)

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

// bcryptHash is a password's hash for a web configuration's
// basic_auth_users.
func bcryptHash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	return string(h), err
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	testenv.WriteFile(t, good, "watches: [{domain: Example.COM}]\nsources: [{name: crtsh, type: crtsh}]\n")
	code, out := harness.Run(t, "--config.check", "--config.file="+good)
	if code != 0 || !strings.Contains(out, "watch example.com: example.com and every subdomain") {
		t.Fatalf("valid config: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "warning") {
		t.Fatalf("a configuration without a problem warned:\n%s", out)
	}
	loose := filepath.Join(dir, "loose.yml")
	testenv.WriteFile(t, loose, "watches: [{domain: example.com, expected_issuers: [\"/^CN=R1[0-4], O=Let's Encrypt/\"]}]\nsources: [{name: crtsh, type: crtsh}]\n")
	code, out = harness.Run(t, "--config.check", "--config.file="+loose)
	if code != 0 || !strings.Contains(out, "warning: expected issuer /^CN=R1[0-4], O=Let's Encrypt/ is not anchored at both ends") ||
		!strings.Contains(out, "it also accepts longer DNs") {
		t.Fatalf("an unanchored expected issuer: exit %d, want 0 and a warning\n%s", code, out)
	}
	bad := filepath.Join(dir, "bad.yml")
	testenv.WriteFile(t, bad, "watches:\n  - domain: example.com\n    expected_issuer: [x]\nsources: [{name: crtsh, type: crtsh, interval: soon}]\n")
	code, out = harness.Run(t, "--config.check", "--config.file="+bad)
	if code != 1 || !strings.Contains(out, bad+`:3: unknown key "expected_issuer"`) {
		t.Fatalf("invalid config: exit %d\n%s", code, out)
	}
	if code, _ := harness.Run(t, "--config.check", "--config.file="+filepath.Join(dir, "missing.yml")); code != 1 {
		t.Fatalf("missing config: exit %d", code)
	}
}

func TestReloadAndEndpoints(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	base := "sources: [{name: crtsh, type: crtsh, url: 'http://127.0.0.1:1/', interval: 1h}]\n"
	testenv.WriteFile(t, cfg, "watches: [{domain: example.com}]\n"+base)
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "s.state"))
	e.WaitReady()

	for path, want := range map[string]string{"/-/healthy": "Healthy", "/": "ct_exporter", "/metrics": "ct_exporter_build_info"} {
		res, err := e.Client.Get(e.URL(path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %s, body lacks %q", path, res.Status, want)
		}
	}
	if res, err := e.Client.Get(e.URL("/-/reload")); err != nil || res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload = %v, %v", res.Status, err)
	}

	// A good reload adds a watch.
	testenv.WriteFile(t, cfg, "watches: [{domain: example.com}, {domain: example.org}]\n"+base)
	if code, body := post(t, e.Client, e.URL("/-/reload")); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	m := e.Scrape()
	if harness.Count(m, "ct_certificate_series_dropped_total", "watch", "example.org") != 1 || harness.Value(m, "ct_config_last_reload_successful") != 1 {
		t.Fatal("reloaded watch not in effect")
	}
	// A bad one is rejected and the old configuration kept.
	testenv.WriteFile(t, cfg, "watches: [{domain: ''}]\n"+base)
	code, body := post(t, e.Client, e.URL("/-/reload"))
	if code != 400 || !strings.Contains(body, cfg+":1: watch domain") {
		t.Fatalf("bad reload: %d %s", code, body)
	}
	m = e.Scrape()
	if harness.Value(m, "ct_config_last_reload_successful") != 0 || harness.Count(m, "ct_certificate_series_dropped_total", "watch", "example.org") != 1 {
		t.Fatal("bad reload not reported, or the old configuration was not kept")
	}
	// SIGHUP reloads too.
	testenv.WriteFile(t, cfg, "watches: [{domain: example.net}]\n"+base)
	if err := e.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.Eventually("SIGHUP reload", func() bool {
		m := e.Scrape()
		return harness.Value(m, "ct_config_last_reload_successful") == 1 && harness.Count(m, "ct_certificate_series_dropped_total", "watch", "example.net") == 1
	})
	// The unreachable source is marked down, never "no certificates".
	e.Eventually("source down", func() bool {
		m := e.Scrape()
		return harness.Count(m, "ct_source_up", "source", "crtsh") == 1 && harness.Value(m, "ct_source_up", "source", "crtsh") == 0 &&
			harness.Value(m, "ct_source_errors_total", "source", "crtsh", "reason", "network") > 0
	})
}

func TestDamagedStateRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, "watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh}]\n")
	state := filepath.Join(dir, "s.state")
	testenv.WriteFile(t, state, "this is not a state file, but somebody's data\n")
	code, out := harness.Run(t, "--config.file="+cfg, "--state.file="+state, "--web.listen-address="+testenv.FreeAddr(t))
	if code != 1 || !strings.Contains(out, state) || !strings.Contains(out, "move it aside") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if data, _ := os.ReadFile(state); !strings.HasPrefix(string(data), "this is not") {
		t.Fatal("the damaged state file was replaced")
	}
}

func TestTLSAndBasicAuth(t *testing.T) {
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
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, "watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh, url: 'http://127.0.0.1:1/'}]\n")
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "s.state"), "--web.config.file="+filepath.Join(dir, "web.yml"))
	e.Scheme = "https"
	tlsClient := &http.Client{Timeout: harness.RequestTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", e.URL("/metrics"), nil)
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
	e.Eventually("TLS listener", func() bool { return get("prometheus", "s3cret") == 200 })
	if code := get("prometheus", "wrong"); code != 401 {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code := get("", ""); code != 401 {
		t.Errorf("no credentials: %d, want 401", code)
	}
	// Plain HTTP gets no metrics.
	res, err := e.Client.Get("http://" + e.Addr + "/metrics")
	if err == nil {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(body), "ct_") {
			t.Fatal("metrics served over plain HTTP")
		}
	}
}
