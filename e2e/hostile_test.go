package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/oddcert"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// Hostile or broken upstreams, everything at once against one exporter:
// crt.sh failing (502, or hanging) for the first of three watches only; a
// log serving a validly logged certificate whose issuer CN is 40,000
// characters, then ordinary ones; 300 issuers for one watch; a log list of
// 5,000 logs; a log whose correctly signed tree head claims 2^63+5 entries.
// Throughout, ordinary issuances for the other watches are counted, the odd
// certificate is recorded once, no label value exceeds 256 bytes, and
// goroutines and descriptors stay bounded.
func TestHostileUpstreams(t *testing.T) {
	for _, mode := range []string{"502", "hang"} {
		t.Run(mode, func(t *testing.T) { hostileUpstreams(t, mode) })
	}
}

func hostileUpstreams(t *testing.T, mode string) {
	const crtshInterval = 2 * time.Second
	crtsh := crtshfake.New()
	defer crtsh.Close()
	switch mode {
	case "502":
		crtsh.FaultFor(crtshfake.KindSearch, "fail.example", 1<<30, crtshfake.Fault502)
	case "hang":
		crtsh.SetDelayFor("fail.example", time.Hour)
	}
	ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")
	issue := func(name string) *testpki.Issued {
		t.Helper()
		iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{name}, SCTs: 2})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	for _, n := range []string{"a.fail.example", "a.example.com", "a.example.org"} {
		crtsh.Add(issue(n).Final)
	}

	// The log: the 40,000-character issuer, an ordinary certificate, and
	// 300 issuers for one watch.
	log := ctlogfake.New(t)
	long := oddcert.Cases()[slices.IndexFunc(oddcert.Cases(), func(c oddcert.Case) bool { return c.Name == "long-issuer-cn" })]
	log.AddCert(long.DER, long.Issuer)
	log.AddCert(issue("log.example.com").Final, ca.DER)
	for i := range 300 {
		other := testpki.NewIssuer(t, fmt.Sprintf("Issuer %03d", i), "Many CAs")
		iss, err := other.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("h%d.many.example", i)}})
		if err != nil {
			t.Fatal(err)
		}
		log.AddCert(iss.Final, other.DER)
	}
	log.Publish()

	// A log whose correctly signed tree head is 2^63+5 entries.
	huge := ctlogfake.New(t)
	huge.ServeSTH(huge.SignSTH(1<<63+5, uint64(time.Now().UnixMilli()), [32]byte{1}))

	dir := t.TempDir()
	list := filepath.Join(dir, "log_list.json")
	writeHugeLogList(t, list, 5000, log.URL)
	cfg := filepath.Join(dir, "ct.yml")
	b64 := base64.StdEncoding.EncodeToString
	testenv.WriteFile(t, cfg, fmt.Sprintf(`
watches:
  - domain: fail.example
  - domain: example.com
  - domain: example.org
  - domain: many.example
sources:
  - {name: crtsh, type: crtsh, url: %q, interval: %s, timeout: 1s, request_interval: 0s}
  - {name: log, type: ctlog, url: %q, public_key: %s, start: beginning, interval: 200ms}
  - {name: huge, type: ctlog, url: %q, public_key: %s, interval: 200ms}
  - {name: list, type: loglist, url: %q}
`, crtsh.URL+"/", crtshInterval, log.URL+"/", b64(log.PublicKeyDER()), huge.URL+"/", b64(huge.PublicKeyDER()), list))
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "ct.state"))
	e.WaitReady()

	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last: %s", last)
		}
	}()
	e.Eventually("everything reported", func() bool {
		m := e.Scrape()
		last = fmt.Sprint(harness.Value(m, "ct_new_certificates_total", "watch", "example.com"), harness.Value(m, "ct_new_certificates_total", "watch", "example.org"),
			harness.Count(m, "ct_certificate_first_seen_timestamp_seconds", "watch", "example.com"), harness.Value(m, "ct_new_certificates_total", "watch", "many.example"),
			harness.Value(m, "ct_source_errors_total", "source", "list", "reason", "list_too_large"), harness.Value(m, "ct_log_verification_failures_total", "log", "huge", "check", "tree_size"),
			harness.Value(m, "ct_source_errors_total", "source", "crtsh"))
		return harness.Value(m, "ct_new_certificates_total", "watch", "example.com") == 3 && // crt.sh's, the long issuer's, the log's
			harness.Value(m, "ct_new_certificates_total", "watch", "example.org") == 1 &&
			harness.Count(m, "ct_certificate_first_seen_timestamp_seconds", "watch", "example.com") == 3 &&
			harness.Value(m, "ct_new_certificates_total", "watch", "many.example") == 300 &&
			harness.Value(m, "ct_source_errors_total", "source", "list", "reason", "list_too_large") >= 1 &&
			harness.Value(m, "ct_log_verification_failures_total", "log", "huge", "check", "tree_size") >= 1 &&
			harness.Value(m, "ct_source_errors_total", "source", "crtsh") >= 1
	})
	m := e.Scrape()
	if got := harness.Value(m, "ct_new_certificates_total", "watch", "many.example", "issuer", "other"); got != 200 {
		t.Errorf("many.example: %v issuances counted under issuer=\"other\", want 200 (beyond max_issuers_per_watch 100)", got)
	}
	if got := harness.Count(m, "ct_new_certificates_total", "watch", "many.example"); got != 101 {
		t.Errorf("many.example: %d ct_new_certificates_total series, want 100 issuers and other", got)
	}
	if got := harness.Value(m, "ct_new_certificates_total", "watch", "fail.example"); got != 0 {
		t.Errorf("fail.example counted %v though crt.sh fails for it", got)
	}
	if got := harness.Count(m, "ct_log_tree_size", "log", "huge"); got != 0 {
		t.Errorf("the huge tree head is exposed: %d series", got)
	}

	// Ordinary new issuances keep being counted while the failures go on.
	for round := range 3 {
		start := time.Now()
		crtsh.Add(issue(fmt.Sprintf("r%d.example.com", round)).Final)
		crtsh.Add(issue(fmt.Sprintf("r%d.example.org", round)).Final)
		log.AddCert(issue(fmt.Sprintf("r%d.log.example.com", round)).Final, ca.DER)
		log.Publish()
		e.Eventually(fmt.Sprintf("round %d counted", round), func() bool {
			m := e.Scrape()
			return harness.Value(m, "ct_new_certificates_total", "watch", "example.com") == float64(3+2*(round+1)) &&
				harness.Value(m, "ct_new_certificates_total", "watch", "example.org") == float64(2+round)
		})
		t.Logf("%s: round %d counted %v after it was issued (crt.sh interval %v)", mode, round, time.Since(start).Round(time.Millisecond), crtshInterval)
	}

	m = e.Scrape()
	longest, where := 0, ""
	for name, f := range m {
		for _, s := range f.Metric {
			for _, l := range s.Label {
				if len(l.GetValue()) > longest {
					longest, where = len(l.GetValue()), name+"{"+l.GetName()+"}"
				}
			}
		}
	}
	if longest > 256 {
		t.Errorf("a label value of %d bytes: %s", longest, where)
	}
	if n := harness.Count(m, "ct_certificate_first_seen_timestamp_seconds", "tbs_sha256", fmt.Sprintf("%x", long.TBSSHA256)); n != 1 {
		t.Errorf("the 40,000-character issuer's certificate has %d series, want 1", n)
	}
	goroutines, fds := harness.Value(m, "go_goroutines"), harness.Value(m, "process_open_fds")
	t.Logf("%s: longest label value %d bytes (%s); %v goroutines, %v open descriptors", mode, longest, where, goroutines, fds)
	if goroutines > 200 || fds > 100 {
		t.Errorf("%v goroutines and %v descriptors: not bounded", goroutines, fds)
	}
}

// writeHugeLogList writes a v3 log list of n usable logs at url (each with a
// key of its own).
func writeHugeLogList(t *testing.T, path string, n int, url string) {
	t.Helper()
	logs := make([]string, n)
	for i := range logs {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		logs[i] = fmt.Sprintf(`{"description": "Log %d", "log_id": %q, "key": %q, "url": %q, "mmd": 86400, "state": {"usable": {"timestamp": "2026-01-01T00:00:00Z"}}}`,
			i, base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(der), fmt.Sprintf("%s/%d/", url, i))
	}
	data := `{"version": "1", "operators": [{"name": "T", "email": ["t@example.com"], "logs": [` + strings.Join(logs, ",") + `], "tiled_logs": []}]}`
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
