package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

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
	jsonnet := testenv.Require(t, "jsonnet", "jsonnet")
	src := filepath.Join(dir, "rules.jsonnet")
	lib := filepath.Join(testenv.RepoRoot(), "alerts", "alerts.libsonnet")
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

// stack is Prometheus and Alertmanager, wired to a webhook.
type stack struct {
	promURL string
	amURL   string
	hook    *harness.Webhook
}

// startStack starts Alertmanager and Prometheus scraping target every
// second with the given rules.
func startStack(t testing.TB, target, rules string) *stack {
	t.Helper()
	hook := harness.NewWebhook(t)
	s := startStackWith(t, target, rules, fmt.Sprintf(`
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
`, hook.URL+"/"))
	s.hook = hook
	return s
}

// startStackWith is startStack with the given Alertmanager configuration.
func startStackWith(t testing.TB, target, rules, alertmanagerConfig string) *stack {
	t.Helper()
	prom := testenv.Require(t, "prometheus", "prometheus")
	am := testenv.Require(t, "prometheus-alertmanager", "prometheus-alertmanager")
	dir := t.TempDir()
	s := &stack{}

	amAddr := testenv.FreeAddr(t)
	amCfg := filepath.Join(dir, "alertmanager.yml")
	testenv.WriteFile(t, amCfg, alertmanagerConfig)
	harness.StartProcess(t, am, "--config.file="+amCfg, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=")
	s.amURL = "http://" + amAddr
	testenv.Eventually(t, 30*time.Second, "alertmanager ready", func() bool { return httpOK(s.amURL + "/-/ready") })

	promAddr := testenv.FreeAddr(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	testenv.WriteFile(t, promCfg, fmt.Sprintf(`
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
	harness.StartProcess(t, prom, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+promAddr)
	s.promURL = "http://" + promAddr
	testenv.Eventually(t, 30*time.Second, "prometheus ready", func() bool { return httpOK(s.promURL + "/-/ready") })
	// Prometheus hands new targets to its scrapers every 5s: wait for the
	// first scrape, as a running Prometheus would already be scraping.
	testenv.Eventually(t, 30*time.Second, "the first scrape", func() bool {
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
