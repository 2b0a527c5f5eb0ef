package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// Two teams' watches, from a watch file and a group: each team's
// Alertmanager route (matchers: [team=...]) gets its own certificate
// alerts, with the shipped rules (watchLabels ["team"]) and a real
// Prometheus and Alertmanager, and nothing of the other team's.
func TestAlertsRouteToTeams(t *testing.T) {
	root, err := testpki.NewRoot("E2E Root", "Test PKI")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := root.NewIntermediate("Evil Issuing CA", "Evil Corp")
	if err != nil {
		t.Fatal(err)
	}
	crtsh := crtshfake.New()
	t.Cleanup(crtsh.Close)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct_exporter.yml")
	testenv.WriteFile(t, cfg, fmt.Sprintf(`
watches:
  - domains: [web.example.com, www.example.org]
    expected_issuers: ["Let's Encrypt"]
    labels: {team: web}
watch_files: ["teams/*.yml"]
sources:
  - {name: crtsh, type: crtsh, url: %q, interval: 1s, timeout: 2s, request_interval: 0s}
`, crtsh.URL+"/"))
	if err := os.Mkdir(filepath.Join(dir, "teams"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(dir, "teams", "payments.yml"), `
- domain: pay.example.net
  expected_issuers: ["Let's Encrypt"]
  labels: {team: payments, service: checkout}
`)
	addr := harness.StartExporterWith(t, harness.BinaryWithoutRace(t), nil,
		"--config.file="+cfg, "--state.file="+filepath.Join(dir, "ct.state")).Addr
	testenv.Eventually(t, 30*time.Second, "exporter ready", func() bool { return httpOK("http://" + addr + "/-/ready") })

	// The shipped rules file, as rendered for watchLabels ["team"].
	rules := filepath.Join(testenv.RepoRoot(), "alerts", "ct_exporter.rules.yml")
	hooks := map[string]*harness.Webhook{"payments": harness.NewWebhook(t), "web": harness.NewWebhook(t), "default": harness.NewWebhook(t)}
	s := startStackWith(t, addr, rules, fmt.Sprintf(`
route:
  receiver: default
  group_by: [alertname, watch, tbs_sha256]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['team="payments"']
      receiver: payments
    - matchers: ['team="web"']
      receiver: web
receivers:
  - name: default
    webhook_configs: [{url: %q}]
  - name: payments
    webhook_configs: [{url: %q}]
  - name: web
    webhook_configs: [{url: %q}]
`, hooks["default"].URL+"/", hooks["payments"].URL+"/", hooks["web"].URL+"/"))
	_ = s

	issue := func(names ...string) {
		iss, err := ca.Issue(testpki.Leaf{CN: names[0], DNSNames: names})
		if err != nil {
			t.Fatal(err)
		}
		crtsh.Add(iss.Final)
	}
	issue("pay.example.net")
	issue("login.web.example.com")
	issue("www.example.org")

	want := map[string][]string{
		"payments": {"pay.example.net"},
		"web":      {"login.web.example.com", "www.example.org"},
	}
	for team, names := range want {
		for _, name := range names {
			testenv.Eventually(t, 90*time.Second, team+" gets the alert for "+name, func() bool {
				_, _, ok := hooks[team].Firing(map[string]string{"alertname": "CTUnexpectedIssuerCertificate", "dns_names": name, "team": team})
				return ok
			})
		}
	}
	// Let Alertmanager send whatever it would send, then count.
	time.Sleep(3 * time.Second)
	for team, hook := range hooks {
		distinct := map[string]bool{}
		for _, note := range hook.Notifications() {
			for _, a := range note.Alerts {
				distinct[a.Labels["alertname"]+" "+a.Labels["dns_names"]] = true
				if want := team; a.Labels["team"] != want && (team != "default" || a.Labels["team"] != "") {
					t.Errorf("the %s webhook got an alert of team %q: %v", team, a.Labels["team"], a.Labels)
				}
			}
		}
		t.Logf("webhook %s: %d distinct alert(s) %v", team, len(distinct), distinct)
	}
	// The watch files are read again on reload: a new watch of payments
	// gets its labels on ct_watch_info.
	testenv.WriteFile(t, filepath.Join(dir, "teams", "payments.yml"), `
- domains: [pay.example.net, new.example.net]
  expected_issuers: ["Let's Encrypt"]
  labels: {team: payments, service: checkout}
`)
	res, err := http.Post("http://"+addr+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("reload: %s", res.Status)
	}
	metrics := httpBody(t, "http://"+addr+"/metrics")
	if want := `ct_watch_info{service="checkout",team="payments",watch="new.example.net"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("after the reload /metrics lacks %s", want)
	}
	if a, _, ok := hooks["payments"].Firing(map[string]string{"dns_names": "pay.example.net"}); ok && a.Labels["service"] != "" {
		t.Errorf("service is not in _config.watchLabels, yet joined: %v", a.Labels)
	}
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
