package e2e

import (
	"encoding/base64"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// Names an attacker puts in a certificate to run script in the status page.
const (
	statusSANScript = "<script>alert(1)</script>.example.com"
	statusSANImg    = `"><img src=x onerror=alert(1)>.example.com`
)

// startStatusExporter runs the exporter with something in every section of
// the status page: two watches, a crt.sh source that found an issuance
// from an unexpected issuer whose names are markup, a source that is down,
// and a CT log caught up with an expected issuance.
func startStatusExporter(t *testing.T) *harness.Exporter {
	t.Helper()
	crtsh := crtshfake.New()
	t.Cleanup(crtsh.Close)
	log := ctlogfake.New(t)
	le := testpki.NewIssuer(t, "R11", "Let's Encrypt")
	evil := testpki.NewIssuer(t, "Evil <i>CA</i>", "Evil")

	bad, err := evil.Issue(testpki.Leaf{CN: "<b>evil</b>.example.com", DNSNames: []string{statusSANScript, statusSANImg, "login.example.com"}, SCTs: 1})
	if err != nil {
		t.Fatal(err)
	}
	crtsh.Add(bad.Precert)
	crtsh.Add(bad.Final)
	good, err := le.Issue(testpki.Leaf{DNSNames: []string{"www.example.com", "example.com"}, SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	log.AddPrecert(good.Precert, le.DER, le.DER)
	log.AddCert(good.Final, le.DER)
	other, err := le.Issue(testpki.Leaf{DNSNames: []string{"example.org"}, SCTs: 3})
	if err != nil {
		t.Fatal(err)
	}
	log.AddCert(other.Final, le.DER)
	log.Publish()

	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, fmt.Sprintf(`
watches:
  - domain: example.com
    expected_issuers: ["Let's Encrypt"]
  - domain: example.org
    include_subdomains: false
sources:
  - {name: crtsh, type: crtsh, url: %q, interval: 1h, request_interval: 0s}
  - {name: crtsh-mirror, type: crtsh, url: 'http://127.0.0.1:1/', interval: 1s, timeout: 2s} # retries back off up to the interval
  - name: testlog
    type: ctlog
    url: %q
    public_key: %s
    start: beginning
    interval: 1s
`, crtsh.URL+"/", log.URL+"/", base64.StdEncoding.EncodeToString(log.PublicKeyDER())))
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "ct.state"))
	e.WaitReady()
	e.Eventually("every section filled", func() bool {
		m := e.Scrape()
		return harness.Count(m, "ct_certificate_first_seen_timestamp_seconds") == 3 &&
			harness.Value(m, "ct_certificate_embedded_scts", "watch", "example.com") == 3 && // both final certificates seen
			harness.Count(m, "ct_log_tree_size", "log", "testlog") == 1 && harness.Value(m, "ct_log_entries_behind", "log", "testlog") == 0 &&
			harness.Count(m, "ct_source_up", "source", "crtsh-mirror") == 1 &&
			// Issuances and log positions are recorded in the middle of a
			// poll, up or down only set when it ends.
			harness.Count(m, "ct_source_up", "source", "crtsh") == 1 && harness.Value(m, "ct_source_up", "source", "crtsh") == 1 &&
			harness.Count(m, "ct_source_up", "source", "testlog") == 1 && harness.Value(m, "ct_source_up", "source", "testlog") == 1
	})
	return e
}

func TestStatusPageServedByTheExporter(t *testing.T) {
	e := startStatusExporter(t)
	res, err := e.Client.Get(e.URL("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(data)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %s, Content-Type %q", res.Status, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`href="/metrics"`, "<code>example.com</code>", "only example.org",
		"<code>crtsh</code>", `<td class="up">up</td>`, `<td class="down">down</td>`, "network: ",
		"<code>testlog</code>",
		`<span class="badge issuer_unexpected">issuer_unexpected</span>`, "Evil &lt;i&gt;CA&lt;/i&gt;",
		"&lt;script&gt;alert(1)&lt;/script&gt;.example.com", "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.example.com",
		"&lt;b&gt;evil&lt;/b&gt;.example.com", "https://crt.sh/?sha256=",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the status page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
		t.Error("certificate markup reached the page as markup")
	}
	if t.Failed() {
		t.Logf("page:\n%s", body)
	}
	res, err = e.Client.Get(e.URL("/no-such-page"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("GET /no-such-page: %s, want 404", res.Status)
	}
}
