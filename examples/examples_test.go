// Package examples holds an example Alertmanager configuration and
// notification templates for ct_exporter's alerts, and deployment examples
// (kubernetes/, systemd/, docker-compose/). Its tests check them with the
// real amtool, Alertmanager, promtool, systemd-analyze and ct_exporter
// binary, and check that docs/runbook.md has a section for every shipped
// alert.
package examples

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

const (
	configFile   = "alertmanager.yml"
	templateFile = "ct_exporter.tmpl"
	rulesFile    = "../alerts/ct_exporter.rules.yml"
	runbookFile  = "../docs/runbook.md"
	runbookURL   = "https://github.com/ct-exporter/ct_exporter/blob/main/docs/runbook.md"
)

// The receivers each severity must reach.
var wantReceivers = map[string][]string{
	"critical": {"ct-pagerduty", "ct-opsgenie"},
	"warning":  {"ct-slack"},
	"info":     {"ct-email"},
}

// certificateAlert is the matcher the configuration uses for certificate
// alerts (they are grouped per issuance).
var certificateAlert = regexp.MustCompile(`^CT.*Certificate.*$`)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// rule is one alerting rule of the shipped rules file.
type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var rules []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				rules = append(rules, r)
			}
		}
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no alerting rules", rulesFile)
	}
	return rules
}

func ruleByName(t *testing.T, name string) rule {
	t.Helper()
	for _, r := range loadRules(t) {
		if r.Alert == name {
			return r
		}
	}
	t.Fatalf("%s: no alert %s", rulesFile, name)
	return rule{}
}

// exampleLabels returns the labels an alert of rule r carries (see the
// rules and their promtool tests): certificate alerts describe an issuance,
// the others a place in the exporter.
func exampleLabels(r rule) map[string]string {
	l := map[string]string{"alertname": r.Alert, "job": "ct_exporter"}
	for k, v := range r.Labels {
		l[k] = v
	}
	switch {
	case certificateAlert.MatchString(r.Alert):
		l["watch"] = "example.com"
		l["tbs_sha256"] = "aa11"
		l["cert_sha256"] = "cc11"
		l["issuer"] = "R11"
		l["serial"] = "01"
		l["dns_names"] = "www.example.com"
		if m := regexp.MustCompile(`verdict="(\w+)"`).FindStringSubmatch(r.Expr); m != nil {
			l["verdict"] = m[1]
		}
	case strings.Contains(r.Expr, "ct_source_"):
		l["instance"], l["source"] = "ct:9812", "crtsh"
	case strings.Contains(r.Expr, "ct_log_"):
		l["instance"], l["log"] = "ct:9812", "argon2026h2"
		if strings.Contains(r.Expr, "verification_failures") {
			l["check"] = "consistency"
		}
	default:
		l["instance"] = "ct:9812"
	}
	return l
}

// --- amtool check-config and route tests -----------------------------------

func TestAlertmanagerConfigChecks(t *testing.T) {
	amtool := testenv.Require(t, "amtool", "prometheus-alertmanager")
	out := run(t, amtool, "check-config", configFile)
	// check-config parses the template files too: "1 templates" then a
	// second SUCCESS for them.
	if !strings.Contains(out, "1 templates") || strings.Count(out, "SUCCESS") != 2 {
		t.Fatalf("amtool check-config did not load the template:\n%s", out)
	}
}

func routeTest(t *testing.T, amtool string, labels map[string]string) []string {
	t.Helper()
	args := []string{"config", "routes", "test", "--config.file=" + configFile}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k+"="+labels[k])
	}
	return strings.Split(strings.TrimSpace(run(t, amtool, args...)), ",")
}

// Every shipped alert reaches the receivers of its severity: critical pages
// through PagerDuty and Opsgenie, warning goes to Slack, info to e-mail.
func TestRoutesEveryShippedAlertBySeverity(t *testing.T) {
	amtool := testenv.Require(t, "amtool", "prometheus-alertmanager")
	seen := map[string]bool{}
	for _, r := range loadRules(t) {
		sev := r.Labels["severity"]
		want, ok := wantReceivers[sev]
		if !ok {
			t.Errorf("%s: severity %q has no route in this test", r.Alert, sev)
			continue
		}
		seen[sev] = true
		labels := exampleLabels(r)
		if got := routeTest(t, amtool, labels); !slices.Equal(got, want) {
			t.Errorf("%s (severity %s, labels %v) routes to %v, want %v", r.Alert, sev, labels, got, want)
		}
	}
	for sev := range wantReceivers {
		if !seen[sev] {
			t.Errorf("no shipped alert has severity %s: update the test or the configuration", sev)
		}
	}
}

func TestRoutesEdgeCases(t *testing.T) {
	amtool := testenv.Require(t, "amtool", "prometheus-alertmanager")
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   []string
	}{
		{"certificate alert, critical", map[string]string{"alertname": "CTUnexpectedIssuerCertificate", "severity": "critical", "job": "ct_exporter", "watch": "example.com", "tbs_sha256": "aa11"}, wantReceivers["critical"]},
		{"certificate alert, warning", map[string]string{"alertname": "CTUnreviewedCertificate", "severity": "warning", "job": "ct_exporter", "watch": "example.com", "tbs_sha256": "aa11"}, wantReceivers["warning"]},
		{"certificate alert, info", map[string]string{"alertname": "CTNewCertificate", "severity": "info", "job": "ct_exporter", "watch": "example.com", "tbs_sha256": "aa11"}, wantReceivers["info"]},
		{"exporter alert, critical", map[string]string{"alertname": "CTExporterStateWriteFailing", "severity": "critical", "job": "ct_exporter", "instance": "ct:9812"}, wantReceivers["critical"]},
		{"exporter alert, info (none shipped yet)", map[string]string{"alertname": "CTSomethingNew", "severity": "info", "job": "ct_exporter", "instance": "ct:9812"}, wantReceivers["info"]},
		{"unknown severity is not lost and does not page", map[string]string{"alertname": "CTUnexpectedIssuerCertificate", "severity": "page", "job": "ct_exporter"}, []string{"ct-slack"}},
		{"no severity", map[string]string{"alertname": "CTSourceDown", "job": "ct_exporter"}, []string{"ct-slack"}},
		{"payments' critical certificate pages payments", map[string]string{"alertname": "CTUnexpectedIssuerCertificate", "severity": "critical", "job": "ct_exporter", "watch": "pay.example.com", "tbs_sha256": "aa11", "team": "payments"}, []string{"payments-pagerduty"}},
		{"payments' warning goes to its channel", map[string]string{"alertname": "CTUnreviewedCertificate", "severity": "warning", "job": "ct_exporter", "watch": "pay.example.com", "tbs_sha256": "aa11", "team": "payments"}, []string{"payments-slack"}},
		{"web's critical certificate goes to web", map[string]string{"alertname": "CTUnexpectedIssuerCertificate", "severity": "critical", "job": "ct_exporter", "watch": "example.org", "tbs_sha256": "aa11", "team": "web"}, []string{"web-slack"}},
		{"a team without a route: by severity", map[string]string{"alertname": "CTUnexpectedIssuerCertificate", "severity": "critical", "job": "ct_exporter", "watch": "example.net", "tbs_sha256": "aa11", "team": "other"}, wantReceivers["critical"]},
		{"another job's critical alert is not ct_exporter's to page", map[string]string{"alertname": "NodeDown", "severity": "critical", "job": "node"}, []string{"ct-slack"}},
	} {
		if got := routeTest(t, amtool, tc.labels); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v routes to %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// --verify.receivers is amtool's own assertion; it must agree.
	run(t, amtool, "config", "routes", "test", "--config.file="+configFile, "--verify.receivers=ct-pagerduty,ct-opsgenie",
		"alertname=CTLogVerificationFailed", "severity=critical", "job=ct_exporter", "log=argon2026h2", "instance=ct:9812")
}

// --- template rendering with amtool template render ------------------------

// alert and data have the shape of Alertmanager's template.Data, which
// amtool template render --template.data reads.
type alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

type data struct {
	Receiver          string            `json:"receiver"`
	Status            string            `json:"status"`
	Alerts            []alert           `json:"alerts"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
}

var (
	promLabel = regexp.MustCompile(`\{\{\s*\$labels\.(\w+)\s*\}\}`)
	promValue = regexp.MustCompile(`\{\{\s*\$value[^}]*\}\}`)
	// {{ if $labels.x }}…{{ else }}…{{ end }}, and {{ with … | query }}…{{ end }},
	// which renders nothing here: there is no Prometheus to query.
	promIfLabel   = regexp.MustCompile(`\{\{ if \$labels\.(\w+) \}\}(.*?)\{\{ else \}\}(.*?)\{\{ end \}\}`)
	promWithQuery = regexp.MustCompile(`\{\{ with .*? \| query \}\}.*?\{\{ end \}\}`)
)

// newAlert makes an alert of the shipped rule name with the given labels,
// its annotations expanded from the rule as Prometheus would.
func newAlert(t *testing.T, name, status string, labels map[string]string, value string) alert {
	t.Helper()
	r := ruleByName(t, name)
	l := map[string]string{"alertname": name, "job": "ct_exporter"}
	for k, v := range r.Labels {
		l[k] = v
	}
	for k, v := range labels {
		l[k] = v
	}
	ann := map[string]string{}
	for k, v := range r.Annotations {
		v = promWithQuery.ReplaceAllString(v, "")
		v = promIfLabel.ReplaceAllStringFunc(v, func(m string) string {
			sub := promIfLabel.FindStringSubmatch(m)
			if l[sub[1]] != "" {
				return sub[2]
			}
			return sub[3]
		})
		v = promLabel.ReplaceAllStringFunc(v, func(m string) string { return l[promLabel.FindStringSubmatch(m)[1]] })
		v = promValue.ReplaceAllString(v, value)
		if strings.Contains(v, "{{") {
			t.Fatalf("%s: annotation %s not expanded by the test: %s", name, k, v)
		}
		ann[k] = v
	}
	start := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	a := alert{Status: status, Labels: l, Annotations: ann, StartsAt: start,
		GeneratorURL: "http://prometheus.example.net:9090/graph?g0.expr=ALERTS",
		Fingerprint:  fmt.Sprintf("%016x", len(name)*7919+len(l))}
	if status == "resolved" {
		a.EndsAt = start.Add(time.Hour)
	}
	return a
}

// group builds the notification data Alertmanager would for these alerts:
// common labels and annotations are those all alerts share.
func group(receiver string, groupBy []string, alerts ...alert) data {
	d := data{Receiver: receiver, Status: "resolved", Alerts: alerts, GroupLabels: map[string]string{},
		CommonLabels: map[string]string{}, CommonAnnotations: map[string]string{}, ExternalURL: "http://alertmanager.example.net:9093"}
	for k, v := range alerts[0].Labels {
		d.CommonLabels[k] = v
	}
	for k, v := range alerts[0].Annotations {
		d.CommonAnnotations[k] = v
	}
	for _, a := range alerts {
		if a.Status == "firing" {
			d.Status = "firing"
		}
		for k, v := range d.CommonLabels {
			if a.Labels[k] != v {
				delete(d.CommonLabels, k)
			}
		}
		for k, v := range d.CommonAnnotations {
			if a.Annotations[k] != v {
				delete(d.CommonAnnotations, k)
			}
		}
	}
	for _, k := range groupBy {
		if v, ok := alerts[0].Labels[k]; ok {
			d.GroupLabels[k] = v
		}
	}
	return d
}

// Attacker-controlled certificate fields: a name with markup, an issuer
// with markup and an ampersand, a subject CN that Slack would read as a
// mention.
var evilCertificate = map[string]string{
	"watch":       "example.com",
	"verdict":     "issuer_unexpected",
	"tbs_sha256":  "5e1f6b1c0a3d2f4e6b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c",
	"cert_sha256": "c0ffee00112233445566778899aabbccddeeff00112233445566778899aabbcc",
	"issuer":      "Evil <b>CA</b> & Co",
	"serial":      "0badc0de",
	"subject_cn":  "<!channel>",
	"dns_names":   "<script>x</script>.example.com,example.com",
}

type renderer struct {
	t      *testing.T
	amtool string
	dir    string
}

func newRenderer(t *testing.T) *renderer {
	return &renderer{t: t, amtool: testenv.Require(t, "amtool", "prometheus-alertmanager"), dir: t.TempDir()}
}

// render renders text (a template string, as in a receiver's field) with d,
// using Alertmanager's own template code through amtool; typ is text or
// html (html/template, as Alertmanager uses for e-mail HTML bodies).
func (r *renderer) render(d data, typ, text string) string {
	r.t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		r.t.Fatal(err)
	}
	f, err := os.CreateTemp(r.dir, "data-*.json")
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		r.t.Fatal(err)
	}
	f.Close()
	return run(r.t, r.amtool, "template", "render", "--template.glob="+templateFile,
		"--template.data="+f.Name(), "--template.type="+typ, "--template.text="+text)
}

func mustContain(t *testing.T, what, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("%s does not contain %q:\n%s", what, s, out)
		}
	}
}

func mustNotContain(t *testing.T, what, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if strings.Contains(out, s) {
			t.Errorf("%s contains %q:\n%s", what, s, out)
		}
	}
}

func TestTemplatesRenderCertificateForHumans(t *testing.T) {
	r := newRenderer(t)
	a := newAlert(t, "CTUnexpectedIssuerCertificate", "firing", evilCertificate, "2026-03-02 09:29:13 +0000 UTC")
	d := group("ct-email", []string{"alertname", "watch", "tbs_sha256"}, a)
	tbs, crtsh := evilCertificate["tbs_sha256"], "https://crt.sh/?sha256="+evilCertificate["cert_sha256"]
	runbook := runbookURL + "#ctunexpectedissuercertificate"

	title := r.render(d, "text", `{{ template "ct.title" . }}`)
	if want := "[FIRING:1] CTUnexpectedIssuerCertificate example.com: <script>x</script>.example.com, example.com (issuer Evil <b>CA</b> & Co)"; title != want {
		t.Errorf("ct.title = %q, want %q", title, want)
	}

	// Plain text (PagerDuty, Opsgenie, the e-mail's text part): everything
	// on-call needs, and how to authorize.
	text := r.render(d, "text", `{{ template "ct.text" . }}`)
	mustContain(t, "ct.text", text,
		"Names:        <script>x</script>.example.com, example.com",
		"Watch:        example.com",
		"Issuer:       Evil <b>CA</b> & Co",
		"Serial:       0badc0de",
		"Verdict:      issuer_unexpected",
		"tbs_sha256:   "+tbs,
		"Certificate:  "+crtsh,
		"first seen 2026-03-02 09:29:13 +0000 UTC", // the rule's description
		"authorized_certificates: ["+tbs+"]",
		"authorized_keys:", "authorized_key_files:",
		"Runbook:      "+runbook,
		"Alertmanager: http://alertmanager.example.net:9093",
	)

	// E-mail HTML: html/template escapes every value from the certificate.
	html := r.render(d, "html", `{{ template "ct.email.html" . }}`)
	mustContain(t, "ct.email.html", html,
		"<code>&lt;script&gt;x&lt;/script&gt;.example.com, example.com</code>",
		"Evil &lt;b&gt;CA&lt;/b&gt; &amp; Co",
		"&lt;!channel&gt;",
		`<a href="`+crtsh+`">`+crtsh+`</a>`,
		"<code>"+tbs+"</code>",
		"<code>authorized_certificates: ["+tbs+"]</code>",
		`<a href="`+runbook+`">Runbook</a>`,
		"first seen 2026-03-02 09:29:13 &#43;0000 UTC", // html/template escapes + too
	)
	mustNotContain(t, "ct.email.html", html, "<script>", "<b>CA</b>", "<!channel>", "& Co")
	if !strings.HasPrefix(html, "<!DOCTYPE html>") {
		t.Errorf("ct.email.html does not start with a doctype:\n%s", html)
	}

	// Slack: &, < and > escaped, so that names cannot become links or
	// mentions; the links the template makes itself stay links.
	slack := r.render(d, "text", `{{ template "ct.slack.text" . }}`)
	mustContain(t, "ct.slack.text", slack,
		"*Names:* &lt;script&gt;x&lt;/script&gt;.example.com, example.com",
		"*Subject CN:* &lt;!channel&gt;",
		"*Issuer:* Evil &lt;b&gt;CA&lt;/b&gt; &amp; Co",
		"`"+tbs+"`",
		"<"+crtsh+"|crt.sh>",
		"authorized_certificates: ["+tbs+"]",
		"<"+runbook+"|Runbook>",
	)
	mustNotContain(t, "ct.slack.text", slack, "<script>", "<!channel>", "<b>", "& Co")
	slackTitle := r.render(d, "text", `{{ template "ct.slack.title" . }}`)
	mustNotContain(t, "ct.slack.title", slackTitle, "<script>", "<b>", "& Co")
	mustContain(t, "ct.slack.title", slackTitle, "&lt;script&gt;x&lt;/script&gt;.example.com")
}

func TestTemplatesRenderOtherAlerts(t *testing.T) {
	r := newRenderer(t)

	// An expected issuer: the reminder that it is no proof.
	allowed := map[string]string{}
	for k, v := range evilCertificate {
		allowed[k] = v
	}
	allowed["verdict"], allowed["issuer"], allowed["subject_cn"] = "issuer_allowed", "R11", "www.example.com"
	d := group("ct-email", []string{"alertname", "watch", "tbs_sha256"}, newAlert(t, "CTNewCertificate", "firing", allowed, "2026-03-02 09:29:13 +0000 UTC"))
	mustContain(t, "ct.text (CTNewCertificate)", r.render(d, "text", `{{ template "ct.text" . }}`),
		"An expected issuer is no proof", "authorized_certificates: ["+allowed["tbs_sha256"]+"]")

	// Too few SCTs: no verdict label, authorizing does not fix it.
	scts := map[string]string{}
	for _, k := range []string{"watch", "tbs_sha256", "cert_sha256", "issuer", "serial", "dns_names"} {
		scts[k] = allowed[k]
	}
	d = group("ct-slack", []string{"alertname", "watch", "tbs_sha256"}, newAlert(t, "CTCertificateTooFewSCTs", "firing", scts, "1"))
	text := r.render(d, "text", `{{ template "ct.text" . }}`)
	mustContain(t, "ct.text (CTCertificateTooFewSCTs)", text, "embeds 1 SCT(s)", "https://crt.sh/?sha256="+scts["cert_sha256"], runbookURL+"#ctcertificatetoofewscts")
	mustNotContain(t, "ct.text (CTCertificateTooFewSCTs)", text, "Verdict:", "authorized_certificates:")

	// A log alert: where, which check, the runbook; nothing about crt.sh.
	d = group("ct-pagerduty", []string{"alertname", "instance", "source", "log"},
		newAlert(t, "CTLogVerificationFailed", "firing", map[string]string{"instance": "ct:9812", "log": "argon2026h2", "check": "consistency"}, "1"))
	title := r.render(d, "text", `{{ template "ct.title" . }}`)
	if want := "[FIRING:1] CTLogVerificationFailed log argon2026h2 check consistency on ct:9812"; title != want {
		t.Errorf("ct.title = %q, want %q", title, want)
	}
	text = r.render(d, "text", `{{ template "ct.text" . }}`)
	mustContain(t, "ct.text (CTLogVerificationFailed)", text, "Log:          argon2026h2", "Check:        consistency", "Instance:     ct:9812",
		"failed the consistency check", runbookURL+"#ctlogverificationfailed")
	mustNotContain(t, "ct.text (CTLogVerificationFailed)", text, "crt.sh", "authorized_certificates")
	if link := r.render(d, "text", `{{ template "ct.link" . }}`); link != runbookURL+"#ctlogverificationfailed" {
		t.Errorf("ct.link of a log alert = %q, want its runbook", link)
	}

	// A watch a search source cannot search: which source, which watch; it
	// is no certificate alert.
	d = group("ct-slack", []string{"alertname", "instance", "source", "log"},
		newAlert(t, "CTSourceWatchStale", "firing", map[string]string{"source": "crtsh", "watch": "big.example.com"}, "3h 3m 20s"))
	if title, want := r.render(d, "text", `{{ template "ct.title" . }}`), "[FIRING:1] CTSourceWatchStale source crtsh watch big.example.com"; title != want {
		t.Errorf("ct.title = %q, want %q", title, want)
	}
	text = r.render(d, "text", `{{ template "ct.text" . }}`)
	mustContain(t, "ct.text (CTSourceWatchStale)", text, "Source:       crtsh", "Watch:        big.example.com",
		"has not searched watch big.example.com successfully for 3h 3m 20s", runbookURL+"#ctsourcewatchstale")
	mustNotContain(t, "ct.text (CTSourceWatchStale)", text, "crt.sh/?sha256", "authorized_certificates")
	mustContain(t, "ct.slack.text (CTSourceWatchStale)", r.render(d, "text", `{{ template "ct.slack.text" . }}`), "*Watch:* big.example.com")

	// A resolved certificate group.
	d = group("ct-slack", []string{"alertname", "watch", "tbs_sha256"}, newAlert(t, "CTUnreviewedCertificate", "resolved", allowed, "0"))
	mustContain(t, "ct.title (resolved)", r.render(d, "text", `{{ template "ct.title" . }}`), "[RESOLVED] CTUnreviewedCertificate example.com")
	mustContain(t, "ct.text (resolved)", r.render(d, "text", `{{ template "ct.text" . }}`), "Resolved:\n  - CTUnreviewedCertificate example.com")
	mustContain(t, "ct.slack.text (resolved)", r.render(d, "text", `{{ template "ct.slack.text" . }}`), "*Resolved:*")
}

// templateField is a receiver field of the configuration holding a template.
type templateField struct {
	path, typ, text string
}

// receiverTemplates returns every string in the configuration's receivers
// that contains a template; the e-mail html field is rendered as HTML.
func receiverTemplates(t *testing.T) []templateField {
	t.Helper()
	cfg := loadConfig(t)
	var out []templateField
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case string:
			if strings.Contains(v, "{{") {
				typ := "text"
				if strings.Contains(path, "email_configs") && strings.HasSuffix(path, ".html") {
					typ = "html"
				}
				out = append(out, templateField{path, typ, v})
			}
		}
	}
	for _, rcv := range cfg["receivers"].([]any) {
		walk(rcv.(map[string]any)["name"].(string), rcv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// Every template string of every receiver executes with Alertmanager's
// template code, for certificate and other alerts, firing and resolved
// (check-config only parses the template file).
func TestReceiverFieldsRender(t *testing.T) {
	r := newRenderer(t)
	fields := receiverTemplates(t)
	if len(fields) < 15 {
		t.Fatalf("only %d template fields found in the receivers", len(fields))
	}
	datasets := map[string]data{
		"certificate": group("x", []string{"alertname", "watch", "tbs_sha256"},
			newAlert(t, "CTUnexpectedIssuerCertificate", "firing", evilCertificate, "2026-03-02 09:29:13 +0000 UTC")),
		"source": group("x", []string{"alertname", "instance", "source", "log"},
			newAlert(t, "CTSourceDown", "firing", map[string]string{"instance": "ct:9812", "source": "crtsh"}, "0"),
			newAlert(t, "CTSourceDown", "resolved", map[string]string{"instance": "ct:9812", "source": "crtsh"}, "0")),
		"state": group("x", []string{"alertname", "instance", "source", "log"},
			newAlert(t, "CTExporterStateWriteFailing", "resolved", map[string]string{"instance": "ct:9812"}, "1")),
	}
	for name, d := range datasets {
		for _, f := range fields {
			out := r.render(d, f.typ, f.text)
			// A PagerDuty link without an href is rejected by PagerDuty:
			// the whole notification would fail.
			if strings.Contains(f.path, "links") && strings.HasSuffix(f.path, ".href") && !strings.HasPrefix(out, "https://") {
				t.Errorf("%s with %s data: %q is not a link", f.path, name, out)
			}
			for _, must := range []string{"description", "message", "title", "Subject", "text", "html", "firing"} {
				if strings.HasSuffix(f.path, "."+must) && strings.TrimSpace(out) == "" {
					t.Errorf("%s with %s data renders empty", f.path, name)
				}
			}
			if f.typ == "html" {
				mustNotContain(t, f.path, out, "<script>")
			}
		}
	}
}

// --- a real Alertmanager: grouping per issuance and inhibition --------------

func loadConfig(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testConfig is the example configuration with every receiver replaced by a
// webhook of the same name, and the waits shortened; routes, grouping and
// inhibit rules are the example's.
func testConfig(t *testing.T, hook string) []byte {
	t.Helper()
	cfg := loadConfig(t)
	for _, r := range cfg["receivers"].([]any) {
		m := r.(map[string]any)
		name := m["name"].(string)
		for k := range m {
			delete(m, k)
		}
		m["name"] = name
		m["webhook_configs"] = []any{map[string]any{"url": hook + "/" + name, "send_resolved": true}}
	}
	var shorten func(route map[string]any)
	shorten = func(route map[string]any) {
		for _, k := range []string{"group_wait", "group_interval"} {
			if _, ok := route[k]; ok {
				route[k] = "1s"
			}
		}
		if rs, ok := route["routes"].([]any); ok {
			for _, r := range rs {
				shorten(r.(map[string]any))
			}
		}
	}
	shorten(cfg["route"].(map[string]any))
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func startAlertmanager(t *testing.T, config []byte) string {
	t.Helper()
	am := testenv.Require(t, "prometheus-alertmanager", "prometheus-alertmanager")
	dir := t.TempDir()
	tmpl, err := os.ReadFile(templateFile)
	if err != nil {
		t.Fatal(err)
	}
	// The template is loaded by the real Alertmanager too.
	if err := os.WriteFile(filepath.Join(dir, templateFile), tmpl, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, config, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	p := harness.StartProcess(t, am, "--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	base := "http://" + addr
	testenv.Eventually(t, 30*time.Second, "alertmanager ready", func() bool {
		select {
		case <-p.Exited:
			t.Fatalf("alertmanager exited:\n%s", p.Log())
		default:
		}
		res, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	// Alertmanager warns about a configuration that does not do what it
	// says (a repeat_interval beyond --data.retention, for one).
	for _, line := range strings.Split(p.Log(), "\n") {
		if l := strings.ToLower(line); strings.Contains(l, "level=warn") && strings.Contains(l, "component=configuration") {
			t.Errorf("alertmanager warns about the configuration: %s", line)
		}
	}
	return base
}

// key names an alert in this test by its alertname and distinguishing label.
func key(l map[string]string) string {
	parts := []string{l["alertname"]}
	for _, k := range []string{"tbs_sha256", "instance", "source", "log"} {
		if v := l[k]; v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

// The example routes, groups and inhibits as its comments say, in a real
// Alertmanager: one notification per issuance; the exporter's own trouble
// (a failing log, a failing state file, a source down) never inhibits a
// certificate alert, and inhibits only what it explains.
func TestAlertmanagerGroupsPerIssuanceAndInhibits(t *testing.T) {
	hook := harness.NewWebhook(t)
	base := startAlertmanager(t, testConfig(t, hook.URL))

	cert := func(name, tbs string) map[string]string {
		l := exampleLabels(ruleByName(t, name))
		l["tbs_sha256"], l["cert_sha256"] = tbs, "c"+tbs
		return l
	}
	other := func(name string, extra ...string) map[string]string {
		r := ruleByName(t, name)
		l := map[string]string{"alertname": name, "job": "ct_exporter", "severity": r.Labels["severity"]}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	alerts := []map[string]string{
		cert("CTUnexpectedIssuerCertificate", "aa11"),
		cert("CTUnexpectedIssuerCertificate", "bb22"), // another issuance, same watch
		cert("CTUnreviewedCertificate", "cc33"),
		cert("CTNewCertificate", "dd44"),
		cert("CTCertificateTooFewSCTs", "aa11"),
		// Source and log alerts carry no instance: one per problem for
		// every replica. Those about one exporter process carry it.
		other("CTLogVerificationFailed", "log", "argon", "check", "consistency"),
		other("CTExporterStateWriteFailing", "instance", "ct:9812"),
		other("CTSourceDown", "source", "crtsh"),                               // inhibited: a state file of the job cannot be written
		other("CTSourceWatchStale", "source", "crtsh", "watch", "example.com"), // the same
		other("CTLogFallingBehind", "log", "argon"),                            // inhibited twice over
		other("CTLogSTHStale", "log", "argon"),                                 // inhibited: verification failed
		other("CTLogSTHStale", "log", "xenon"),                                 // not: another log
		other("CTExporterConfigReloadFailed", "instance", "ct:9812"),           // never inhibited
	}
	inhibited := map[string]bool{
		"CTSourceDown source=crtsh":       true,
		"CTSourceWatchStale source=crtsh": true,
		"CTLogFallingBehind log=argon":    true,
		"CTLogSTHStale log=argon":         true,
	}
	// Which receivers each alert that is not inhibited must reach, alone in
	// its notification, with which group labels.
	type want struct {
		receivers   []string
		groupLabels []string
	}
	wants := map[string]want{}
	for _, l := range alerts {
		k := key(l)
		if inhibited[k] {
			continue
		}
		w := want{receivers: wantReceivers[l["severity"]]}
		groupBy := []string{"alertname", "instance", "source", "log"}
		if certificateAlert.MatchString(l["alertname"]) {
			groupBy = []string{"alertname", "watch", "tbs_sha256"}
		}
		for _, g := range groupBy {
			if l[g] != "" {
				w.groupLabels = append(w.groupLabels, g+"="+l[g])
			}
		}
		wants[k] = w
	}
	if len(inhibited)+len(wants) != len(alerts) {
		t.Fatalf("test: %d alerts, %d inhibited, %d expected", len(alerts), len(inhibited), len(wants))
	}

	var post []map[string]any
	now := time.Now().UTC()
	for _, l := range alerts {
		post = append(post, map[string]any{"labels": l, "annotations": map[string]string{"summary": key(l)},
			"startsAt": now.Format(time.RFC3339), "endsAt": now.Add(time.Hour).Format(time.RFC3339)})
	}
	body, _ := json.Marshal(post)
	res, err := http.Post(base+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v2/alerts: %s", res.Status)
	}

	// got: alert key -> receivers it reached; checks each notification.
	got := func() map[string][]string {
		out := map[string][]string{}
		for _, n := range hook.Notifications() {
			if len(n.Alerts) != 1 {
				var ks []string
				for _, a := range n.Alerts {
					ks = append(ks, key(a.Labels))
				}
				t.Errorf("notification to %s groups %d alerts, want one per notification: %v", n.Receiver, len(n.Alerts), ks)
				continue
			}
			k := key(n.Alerts[0].Labels)
			var gl []string
			for g, v := range n.GroupLabels {
				gl = append(gl, g+"="+v)
			}
			if w, ok := wants[k]; ok && !sameSet(gl, w.groupLabels) {
				t.Errorf("%s: group labels %v, want %v", k, gl, w.groupLabels)
			}
			if !slices.Contains(out[k], n.Receiver) {
				out[k] = append(out[k], n.Receiver)
			}
		}
		return out
	}
	missing := func() []string {
		var m []string
		g := got()
		for k, w := range wants {
			if !sameSet(g[k], w.receivers) {
				m = append(m, fmt.Sprintf("%s reached %v, want %v", k, g[k], w.receivers))
			}
		}
		sort.Strings(m)
		return m
	}
	for deadline := time.Now().Add(30 * time.Second); len(missing()) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s, not every alert that is not inhibited was notified:\n%s", strings.Join(missing(), "\n"))
		}
	}
	// A few more group intervals: the inhibited alerts stay quiet, and
	// nothing reaches a receiver it should not.
	time.Sleep(3 * time.Second)
	for k, rs := range got() {
		if inhibited[k] {
			t.Errorf("%s was inhibited but reached %v", k, rs)
		} else if !sameSet(rs, wants[k].receivers) {
			t.Errorf("%s reached %v, want %v", k, rs, wants[k].receivers)
		}
	}

	// Alertmanager's own view: inhibited ones suppressed, the rest active.
	res, err = http.Get(base + "/api/v2/alerts?" + url.Values{"inhibited": {"true"}, "silenced": {"true"}, "active": {"true"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var state []struct {
		Labels map[string]string `json:"labels"`
		Status struct {
			State       string   `json:"state"`
			InhibitedBy []string `json:"inhibitedBy"`
		} `json:"status"`
	}
	if err := json.NewDecoder(res.Body).Decode(&state); err != nil {
		t.Fatal(err)
	}
	if len(state) != len(alerts) {
		t.Errorf("Alertmanager holds %d alerts, want %d", len(state), len(alerts))
	}
	for _, a := range state {
		k := key(a.Labels)
		if inhibited[k] {
			if a.Status.State != "suppressed" || len(a.Status.InhibitedBy) == 0 {
				t.Errorf("%s: state %s, inhibited by %v; want suppressed by an inhibit rule", k, a.Status.State, a.Status.InhibitedBy)
			}
		} else if a.Status.State != "active" {
			t.Errorf("%s: state %s (inhibited by %v), want active", k, a.Status.State, a.Status.InhibitedBy)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// --- the runbook -------------------------------------------------------------

var (
	heading      = regexp.MustCompile(`^(#{1,6})\s+(.+?)\s*#*\s*$`)
	anchorDrop   = regexp.MustCompile(`[^\p{L}\p{N}\s_-]`)
	internalLink = regexp.MustCompile(`\]\(#([^)]+)\)`)
	relativeLink = regexp.MustCompile(`\]\((\.\./[^)#]+)(#[^)]*)?\)`)
	metricName   = regexp.MustCompile(`\bct_[a-z_]+\b`)
)

// githubAnchor is the id GitHub gives a heading: lower case, punctuation
// dropped, spaces made hyphens.
func githubAnchor(text string) string {
	s := strings.ToLower(strings.TrimSpace(text))
	s = anchorDrop.ReplaceAllString(s, "")
	return strings.ReplaceAll(s, " ", "-")
}

// section is a heading of the runbook and the text up to the next heading
// of the same or a higher level.
type section struct {
	level  int
	title  string
	anchor string
	body   string
}

func runbookSections(t *testing.T) []section {
	t.Helper()
	b, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	var secs []section
	count := map[string]int{}
	fence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
		}
		if m := heading.FindStringSubmatch(line); m != nil && !fence {
			a := githubAnchor(m[2])
			if n := count[a]; n > 0 {
				count[a]++
				a = fmt.Sprintf("%s-%d", a, n)
			} else {
				count[a] = 1
			}
			secs = append(secs, section{level: len(m[1]), title: m[2], anchor: a})
		}
		if len(secs) > 0 {
			secs[len(secs)-1].body += line + "\n"
		}
	}
	if fence {
		t.Fatalf("%s: unclosed code fence", runbookFile)
	}
	return secs
}

// Every shipped alert links to a runbook section that exists, whose anchor
// is the lower-cased alert name, and that section says how urgent the alert
// is and names the metrics the alert is computed from.
func TestRunbookHasASectionForEveryAlert(t *testing.T) {
	secs := runbookSections(t)
	byAnchor := map[string]int{}
	for i, s := range secs {
		byAnchor[s.anchor] = i
	}
	alerts := map[string]bool{}
	for _, r := range loadRules(t) {
		alerts[r.Alert] = true
		u := r.Annotations["runbook_url"]
		base, frag, ok := strings.Cut(u, "#")
		if !ok || base != runbookURL {
			t.Errorf("%s: runbook_url %q is not %s#<anchor>", r.Alert, u, runbookURL)
			continue
		}
		if frag != strings.ToLower(r.Alert) {
			t.Errorf("%s: runbook_url fragment %q, want %q", r.Alert, frag, strings.ToLower(r.Alert))
		}
		i, ok := byAnchor[frag]
		if !ok {
			t.Errorf("%s: %s has no heading with anchor #%s", r.Alert, runbookFile, frag)
			continue
		}
		// The section and its subsections.
		body := secs[i].body
		for _, s := range secs[i+1:] {
			if s.level <= secs[i].level {
				break
			}
			body += s.body
		}
		if want := "**Severity: " + r.Labels["severity"]; !strings.Contains(body, want) {
			t.Errorf("%s: runbook section does not say %q", r.Alert, want+"**")
		}
		for _, m := range metricName.FindAllString(r.Expr, -1) {
			if !strings.Contains(body, m) {
				t.Errorf("%s: runbook section does not mention %s, which the alert is computed from", r.Alert, m)
			}
		}
	}
	// No section for an alert that does not exist (any more).
	for _, s := range secs {
		if s.level == 2 && regexp.MustCompile(`^CT[A-Za-z]+$`).MatchString(s.title) && !alerts[s.title] {
			t.Errorf("%s: section %q is not an alert of %s", runbookFile, s.title, rulesFile)
		}
	}
	for _, want := range []string{"authorizing-your-own-certificate", "why-an-issuer-allowlist-alone-is-weak", "silencing"} {
		if _, ok := byAnchor[want]; !ok {
			t.Errorf("%s: no section #%s", runbookFile, want)
		}
	}
}

// Links inside the runbook lead somewhere.
func TestRunbookLinks(t *testing.T) {
	secs := runbookSections(t)
	anchors := map[string]bool{}
	for _, s := range secs {
		anchors[s.anchor] = true
	}
	b, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range internalLink.FindAllStringSubmatch(string(b), -1) {
		if !anchors[m[1]] {
			t.Errorf("%s: link to #%s, which is no heading", runbookFile, m[1])
		}
	}
	for _, m := range relativeLink.FindAllStringSubmatch(string(b), -1) {
		if _, err := os.Stat(filepath.Join(filepath.Dir(runbookFile), m[1])); err != nil {
			t.Errorf("%s: link to %s: %v", runbookFile, m[1], err)
		}
	}
	// The documented way to compute a key's hash.
	mustContain(t, runbookFile, string(b),
		"openssl x509 -in cert.pem -noout -pubkey | openssl pkey -pubin -outform der | sha256sum",
		"authorized_key_files", "authorized_certificates", "POST /-/reload", "SIGHUP")
}
