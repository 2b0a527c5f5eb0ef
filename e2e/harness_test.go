// Package e2e runs ct_exporter with the real parts around it: Prometheus
// evaluating the shipped rules, Alertmanager routing to a webhook, a real
// Sunlight CT log, and the fake crt.sh.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/tools"
)

var exporterBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ct_exporter-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if exporterBinary, err = tools.BuildExporter(dir, false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a program started for the test, stopped at cleanup; its
// output is shown when the test fails.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t testing.TB, name string, args ...string) *process {
	t.Helper()
	p := &process{name: filepath.Base(name), log: filepath.Join(t.TempDir(), filepath.Base(name)+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			out, _ := os.ReadFile(p.log)
			if len(out) > 20000 {
				out = out[len(out)-20000:]
			}
			t.Logf("%s log:\n%s", p.name, out)
		}
	})
	return p
}

// eventually polls cond until it holds or the deadline passes.

func httpOK(url string) bool {
	res, err := http.Get(url)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == 200
}

// renderRules renders the shipped rules with a _config override, as a user
// of the mixin would (here: a faster CTSourceDown).
func renderRules(t testing.TB, dir, override string) string {
	t.Helper()
	jsonnet := tools.Require(t, "jsonnet", "jsonnet")
	src := filepath.Join(dir, "rules.jsonnet")
	lib := filepath.Join(tools.RepoRoot(), "alerts", "alerts.libsonnet")
	code := fmt.Sprintf("std.manifestYamlDoc(((import %q) + { _config+:: %s }).prometheusAlerts)", lib, override)
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(jsonnet, "-S", src).CombinedOutput()
	if err != nil {
		t.Fatalf("jsonnet: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Alert is one alert as Alertmanager's webhook delivers it.
type Alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// webhook receives Alertmanager notifications.
type webhook struct {
	*httptest.Server
	mu       sync.Mutex
	received []received
}

type received struct {
	at    time.Time
	alert Alert
}

func newWebhook(t testing.TB) *webhook {
	w := &webhook{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var msg struct {
			Alerts []Alert `json:"alerts"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &msg); err != nil {
			t.Errorf("webhook: %v: %s", err, body)
			return
		}
		now := time.Now()
		w.mu.Lock()
		for _, a := range msg.Alerts {
			w.received = append(w.received, received{now, a})
		}
		w.mu.Unlock()
	}))
	t.Cleanup(w.Close)
	return w
}

// find returns the first firing alert matching every label given, and when
// it arrived.
func (w *webhook) find(labels map[string]string) (Alert, time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
next:
	for _, r := range w.received {
		if r.alert.Status != "firing" {
			continue
		}
		for k, v := range labels {
			if r.alert.Labels[k] != v {
				continue next
			}
		}
		return r.alert, r.at, true
	}
	return Alert{}, time.Time{}, false
}

// stack is Prometheus and Alertmanager, wired to a webhook.
type stack struct {
	promURL string
	amURL   string
	hook    *webhook
}

// startStack starts Alertmanager and Prometheus scraping target every
// second with the given rules.
func startStack(t testing.TB, target, rules string) *stack {
	t.Helper()
	prom := tools.Require(t, "prometheus", "prometheus")
	am := tools.Require(t, "prometheus-alertmanager", "prometheus-alertmanager")
	dir := t.TempDir()
	s := &stack{hook: newWebhook(t)}

	amAddr := tools.FreeAddr(t)
	amCfg := filepath.Join(dir, "alertmanager.yml")
	writeFile(t, amCfg, fmt.Sprintf(`
route:
  receiver: hook
  group_by: [alertname, watch, tbs_sha256, source, log]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %q
        send_resolved: true
`, s.hook.URL+"/"))
	start(t, am, "--config.file="+amCfg, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=")
	s.amURL = "http://" + amAddr
	tools.Eventually(t, 30*time.Second, "alertmanager ready", func() bool { return httpOK(s.amURL + "/-/ready") })

	promAddr := tools.FreeAddr(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	writeFile(t, promCfg, fmt.Sprintf(`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
alerting:
  alertmanagers:
    - static_configs: [{targets: [%q]}]
scrape_configs:
  - job_name: ct_exporter
    static_configs: [{targets: [%q]}]
`, rules, amAddr, target))
	start(t, prom, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+promAddr)
	s.promURL = "http://" + promAddr
	tools.Eventually(t, 30*time.Second, "prometheus ready", func() bool { return httpOK(s.promURL + "/-/ready") })
	// Prometheus hands new targets to its scrapers every 5s: wait for the
	// first scrape, as a running Prometheus would already be scraping.
	tools.Eventually(t, 30*time.Second, "the first scrape", func() bool {
		r, err := s.query(context.Background(), `up{job="ct_exporter"} == 1`)
		return err == nil && len(r) == 1
	})
	return s
}

// query runs an instant PromQL query and returns its result series.
func (s *stack) query(ctx context.Context, expr string) ([]map[string]any, error) {
	return s.get(ctx, "/api/v1/query?query="+url.QueryEscape(expr))
}

// queryRange runs a range query over the last span, as a Grafana time
// series panel does.
func (s *stack) queryRange(ctx context.Context, expr string, span, step time.Duration) ([]map[string]any, error) {
	end := time.Now()
	return s.get(ctx, fmt.Sprintf("/api/v1/query_range?query=%s&start=%d&end=%d&step=%g",
		url.QueryEscape(expr), end.Add(-span).Unix(), end.Unix(), step.Seconds()))
}

func (s *stack) get(ctx context.Context, path string) ([]map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.promURL+path, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []map[string]any `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("%s: %s", path, out.Error)
	}
	return out.Data.Result, nil
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.TrimLeft(content, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}
