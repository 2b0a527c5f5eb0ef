package docs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/ctlog"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/oddcert"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/watch"
)

// The tests of this file run the real exporter, built once by the harness.
func TestMain(m *testing.M) { harness.Main(m) }

const metricsDoc = "metrics.md"

// notExposedInTest lists documented families the test cannot make the
// exporter expose, each with the reason. It is empty: a log, crt.sh and one
// issuance with its final certificate bring out every family.
var notExposedInTest = map[string]string{}

// docMetric is a row of a metrics table in docs/metrics.md.
type docMetric struct {
	typ    string
	labels []string
	line   int
}

var (
	metricRow     = regexp.MustCompile("^\\| `(ct_[a-z0-9_]+)` \\| ([a-z]+) \\| ([^|]*) \\|")
	labelValueRow = regexp.MustCompile("^\\| `([a-z_]+)` \\| `([a-z0-9_]+)` \\|")
	backtickedRE  = regexp.MustCompile("`([^`]+)`")
)

func readMetricsDoc(t *testing.T) (map[string]docMetric, map[string][]string) {
	t.Helper()
	data, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	metrics := map[string]docMetric{}
	values := map[string][]string{}
	for i, line := range strings.Split(string(data), "\n") {
		if m := metricRow.FindStringSubmatch(line); m != nil {
			if _, dup := metrics[m[1]]; dup {
				t.Errorf("%s:%d: %s is documented twice", metricsDoc, i+1, m[1])
			}
			var labels []string
			for _, l := range backtickedRE.FindAllStringSubmatch(m[3], -1) {
				labels = append(labels, l[1])
			}
			if len(labels) == 0 && strings.TrimSpace(m[3]) != "none" {
				t.Errorf("%s:%d: labels of %s: write them in backticks, or none", metricsDoc, i+1, m[1])
			}
			sort.Strings(labels)
			metrics[m[1]] = docMetric{typ: m[2], labels: labels, line: i + 1}
		} else if m := labelValueRow.FindStringSubmatch(line); m != nil {
			values[m[1]] = append(values[m[1]], m[2])
		}
	}
	if len(metrics) == 0 {
		t.Fatalf("%s: no metric rows found: has the table format changed?", metricsDoc)
	}
	return metrics, values
}

// docType is how docs/metrics.md writes a family's type.
func docType(t dto.MetricType) string {
	return strings.ToLower(t.String())
}

// labelNames is the union of the label names of a family's series.
func labelNames(f *dto.MetricFamily) []string {
	set := map[string]bool{}
	for _, m := range f.Metric {
		for _, l := range m.Label {
			set[l.GetName()] = true
		}
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range set {
			if !yield(k) {
				return
			}
		}
	})
}

func labelValues(f *dto.MetricFamily, name string) []string {
	set := map[string]bool{}
	for _, m := range f.GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == name {
				set[l.GetValue()] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// The metrics reference matches what the real exporter serves: every ct_*
// family it exposes is documented with its type and labels, every
// documented family is exposed, and the documented label values are the
// code's.
func TestMetricsReference(t *testing.T) {
	doc, values := readMetricsDoc(t)

	// A CT log with one issuance (precertificate and final certificate, so
	// that the SCT count is known) and crt.sh with another: every family
	// the exporter has appears.
	log := ctlogfake.New(t)
	crtsh := crtshfake.New()
	defer crtsh.Close()
	ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")
	inLog, err := ca.Issue(testpki.Leaf{DNSNames: []string{"www.example.com"}, SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	log.AddPrecert(inLog.Precert, ca.DER, ca.DER)
	log.AddCert(inLog.Final, ca.DER)
	// And one the strict X.509 parser refuses, for the parse error series.
	odd := oddcert.Cases()[slices.IndexFunc(oddcert.Cases(), func(c oddcert.Case) bool { return c.Name == "bad-certificate-policies" })]
	log.AddCert(odd.DER, odd.Issuer)
	log.Publish()
	onCrtsh, err := ca.Issue(testpki.Leaf{DNSNames: []string{"api.example.com"}, SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	crtsh.Add(onCrtsh.Precert)
	crtsh.Add(onCrtsh.Final)

	dir := t.TempDir()
	// A signed log list naming the same log (followed once), for the list's
	// timestamp.
	writeSignedLogList(t, dir, log.URL+"/", log.PublicKeyDER())
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, fmt.Sprintf(`
watches: [{domain: example.com, expected_issuers: ["Let's Encrypt"]}]
sources:
  - {name: crtsh, type: crtsh, url: %q, request_interval: 0s}
  - {name: testlog, type: ctlog, url: %q, public_key: %s, start: beginning, interval: 100ms}
  - {name: list, type: loglist, url: log_list.json, public_key_file: log_list_pubkey.pem}
`, crtsh.URL+"/", log.URL+"/", base64.StdEncoding.EncodeToString(log.PublicKeyDER())))
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "ct.state"))
	e.WaitReady()
	e.Eventually("both issuances, both sources polled, the log's tree head", func() bool {
		m := e.Scrape()
		return harness.Count(m, "ct_certificate_embedded_scts") == 3 && harness.Count(m, "ct_certificate_parse_error_info") == 1 && harness.Count(m, "ct_source_up") == 3 &&
			harness.Value(m, "ct_source_up") == 3 && harness.Count(m, "ct_log_tree_size", "log", "testlog") == 1 &&
			harness.Count(m, "ct_loglist_timestamp_seconds", "source", "list") == 1 &&
			harness.Count(m, "ct_source_watch_last_success_timestamp_seconds", "watch", "example.com") == 1
	})
	served := e.Scrape()

	for name, f := range served {
		if !strings.HasPrefix(name, "ct_") {
			continue
		}
		d, ok := doc[name]
		if !ok {
			t.Errorf("%s is exposed but not documented in %s (type %s, labels %q)", name, metricsDoc, docType(f.GetType()), labelNames(f))
			continue
		}
		if got := docType(f.GetType()); got != d.typ {
			t.Errorf("%s:%d: %s is documented as a %s; it is a %s", metricsDoc, d.line, name, d.typ, got)
		}
		if got := labelNames(f); !slices.Equal(got, d.labels) {
			t.Errorf("%s:%d: %s is documented with labels %q; it has %q", metricsDoc, d.line, name, d.labels, got)
		}
	}
	for name, d := range doc {
		if _, ok := served[name]; ok {
			if why, listed := notExposedInTest[name]; listed {
				t.Errorf("%s is in notExposedInTest (%s) but was exposed: remove it from the list", name, why)
			}
			continue
		}
		if _, ok := notExposedInTest[name]; !ok {
			t.Errorf("%s:%d: %s is documented but the exporter does not expose it", metricsDoc, d.line, name)
		}
	}

	// Label values: the documented sets are the code's, and the exporter
	// serves them (reasons and checks are all present from the start).
	var verdicts []string
	for v := watch.Authorized; v <= watch.IssuerUnexpected; v++ {
		verdicts = append(verdicts, v.String())
	}
	for label, want := range map[string][]string{"verdict": verdicts, "reason": ctsource.Reasons, "check": ctlog.Checks} {
		if got := sorted(values[label]); !slices.Equal(got, sorted(want)) {
			t.Errorf("%s: the documented values of %s are %q; the code's are %q", metricsDoc, label, got, sorted(want))
		}
	}
	if got := labelValues(served["ct_source_errors_total"], "reason"); !slices.Equal(got, sorted(values["reason"])) {
		t.Errorf("ct_source_errors_total serves reasons %q; documented: %q", got, sorted(values["reason"]))
	}
	if got := labelValues(served["ct_log_verification_failures_total"], "check"); !slices.Equal(got, sorted(values["check"])) {
		t.Errorf("ct_log_verification_failures_total serves checks %q; documented: %q", got, sorted(values["check"]))
	}
	for _, v := range labelValues(served["ct_new_certificates_total"], "verdict") {
		if !slices.Contains(values["verdict"], v) {
			t.Errorf("ct_new_certificates_total has verdict %q, which is not documented", v)
		}
	}

	// The README's shorter metrics table names only real families.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("`(ct_[a-z0-9_]+)`").FindAllStringSubmatch(string(readme), -1) {
		if _, ok := served[m[1]]; !ok {
			if _, ok := doc[m[1]]; !ok {
				t.Errorf("README.md names %s, which the exporter does not expose", m[1])
			}
		}
	}
}

// writeSignedLogList writes dir/log_list.json naming one usable log, its
// signature beside it (log_list.sig) and the signing key
// (log_list_pubkey.pem), as Google publishes them.
func writeSignedLogList(t *testing.T, dir, logURL string, logKey []byte) {
	t.Helper()
	signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	list := fmt.Sprintf(`{"version": "1", "log_list_timestamp": "2026-10-01T00:00:00Z", "operators": [{"name": "T", "email": ["t@example.com"], "logs": [`+
		`{"description": "Test log", "log_id": "%s", "key": "%s", "url": %q, "mmd": 86400, "state": {"usable": {"timestamp": "2026-01-01T00:00:00Z"}}}], "tiled_logs": []}]}`,
		base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(logKey), logURL)
	digest := sha256.Sum256([]byte(list))
	sig, err := ecdsa.SignASN1(rand.Reader, signer, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(dir, "log_list.json"), list)
	testenv.WriteFile(t, filepath.Join(dir, "log_list.sig"), string(sig))
	testenv.WriteFile(t, filepath.Join(dir, "log_list_pubkey.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})))
}

// The flags table of docs/configuration.md lists exactly the flags
// ct_exporter --help shows, with the defaults it shows.
func TestFlagsReference(t *testing.T) {
	code, help := harness.Run(t, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d\n%s", code, help)
	}
	helpFlag := regexp.MustCompile(`^\s+(?:-\w, )?--(?:\[no-\])?([a-z][a-z0-9.-]*)(?:=("[^"]*"|\S+))?`)
	shown := map[string]string{}
	for _, line := range strings.Split(help, "\n") {
		if m := helpFlag.FindStringSubmatch(line); m != nil {
			shown[m[1]] = strings.Trim(m[2], `"`)
		}
	}
	if len(shown) < 5 {
		t.Fatalf("read only %d flags from --help: has its format changed?\n%s", len(shown), help)
	}

	data, err := os.ReadFile("configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	docRow := regexp.MustCompile("^\\| (`-[^|]*) \\|([^|]*)\\|")
	documented := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		m := docRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var names []string
		for _, n := range backtickedRE.FindAllStringSubmatch(m[1], -1) {
			if strings.HasPrefix(n[1], "--") {
				names = append(names, strings.TrimPrefix(n[1], "--"))
			}
		}
		def := strings.TrimSpace(m[2])
		for _, name := range names {
			documented[name] = true
			want, ok := shown[name]
			if !ok {
				t.Errorf("docs/configuration.md:%d: --%s is documented but ct_exporter has no such flag", i+1, name)
				continue
			}
			if d := backtickedRE.FindStringSubmatch(def); d != nil && d[1] != want {
				t.Errorf("docs/configuration.md:%d: --%s is documented with default %s; --help shows %q", i+1, name, def, want)
			}
		}
	}
	for name := range shown {
		if !documented[name] && name != "help-long" && name != "help-man" {
			t.Errorf("--%s is a flag (ct_exporter --help) but not documented in docs/configuration.md", name)
		}
	}
}
