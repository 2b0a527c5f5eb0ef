package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/dashboards"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/sunlightlog"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// world is everything around the exporter under test.
type world struct {
	t        testing.TB
	root     *testpki.CA
	expected *testpki.CA // Let's Encrypt, in expected_issuers
	evil     *testpki.CA // an issuer nobody expects
	ownKey   *ecdsa.PrivateKey
	log      *sunlightlog.Log
	crtsh    *crtshfake.Server
	stack    *stack
	addr     string
}

func newWorld(t testing.TB, logInterval string, rulesOverride string) *world {
	t.Helper()
	w := &world{t: t}
	var err error
	if w.root, err = testpki.NewRoot("E2E Root", "Test PKI"); err != nil {
		t.Fatal(err)
	}
	if w.expected, err = w.root.NewIntermediate("R11", "Let's Encrypt"); err != nil {
		t.Fatal(err)
	}
	if w.evil, err = w.root.NewIntermediate("Evil Issuing CA", "Evil Corp"); err != nil {
		t.Fatal(err)
	}
	if w.ownKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	w.log = sunlightlog.Start(t, w.root.Cert)
	w.crtsh = crtshfake.New()
	t.Cleanup(w.crtsh.Close)

	dir := t.TempDir()
	spki := testpki.SPKISHA256(w.ownKey.Public())
	cfg := filepath.Join(dir, "ct_exporter.yml")
	testenv.WriteFile(t, cfg, fmt.Sprintf(`
watches:
  - domain: example.com
    expected_issuers: ["Let's Encrypt"]
    authorized_keys: [%s]
sources:
  - {name: crtsh, type: crtsh, url: %q, interval: 1s, timeout: 2s, request_interval: 0s}
  - name: e2elog
    type: ctlog
    protocol: static
    url: %q
    public_key: %s
    start: beginning
    interval: %s
`, hex.EncodeToString(spki[:]), w.crtsh.URL+"/", w.log.MonitoringPrefix(),
		base64.StdEncoding.EncodeToString(w.log.PublicKey()), logInterval))
	// Without the race detector: the end-to-end tests time detection.
	w.addr = harness.StartExporterWith(t, harness.BinaryWithoutRace(t), nil,
		"--config.file="+cfg, "--state.file="+filepath.Join(dir, "ct.state")).Addr
	testenv.Eventually(t, 30*time.Second, "exporter ready", func() bool { return httpOK("http://" + w.addr + "/-/ready") })
	w.stack = startStack(t, w.addr, renderRules(t, dir, rulesOverride))
	return w
}

// submit logs a precertificate and its final certificate, and returns the
// issuance's tbs_sha256 and the precertificate's SHA-256.
func (w *world) submit(ca *testpki.CA, leaf testpki.Leaf) (tbs, precert string) {
	w.t.Helper()
	iss, err := ca.Issue(leaf)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := w.log.AddPreChain(ctx, iss.Precert, ca.DER, w.root.DER); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.log.AddChain(ctx, iss.Final, ca.DER, w.root.DER); err != nil {
		w.t.Fatal(err)
	}
	c, err := cert.Parse(iss.Precert)
	if err != nil {
		w.t.Fatal(err)
	}
	return hex.EncodeToString(c.TBSSHA256[:]), hex.EncodeToString(c.CertSHA256[:])
}

func TestAlertsEndToEnd(t *testing.T) {
	w := newWorld(t, "1s", "{ sourceDownFor: '5s' }")
	hook := w.stack.hook

	// Submitted first: an issuance for a key the owner authorized, from the
	// unexpected issuer. It must never alert.
	authorizedTBS, _ := w.submit(w.evil, testpki.Leaf{DNSNames: []string{"mine.example.com"}, Key: w.ownKey, SCTs: 2})
	allowedTBS, _ := w.submit(w.expected, testpki.Leaf{DNSNames: []string{"www.example.com"}, SCTs: 2})
	unexpectedTBS, unexpectedCert := w.submit(w.evil, testpki.Leaf{CN: "login.example.com", DNSNames: []string{"login.example.com", "example.com"}, SCTs: 2})

	var got harness.Alert
	testenv.Eventually(t, 60*time.Second, "CTUnexpectedIssuerCertificate at the webhook", func() bool {
		a, _, ok := hook.Firing(map[string]string{"alertname": "CTUnexpectedIssuerCertificate", "tbs_sha256": unexpectedTBS})
		got = a
		return ok
	})
	for k, want := range map[string]string{
		"severity": "critical", "watch": "example.com", "verdict": "issuer_unexpected",
		"issuer": "Evil Issuing CA", "dns_names": "login.example.com,example.com", "cert_sha256": unexpectedCert,
		"subject_cn": "login.example.com",
	} {
		if got.Labels[k] != want {
			t.Errorf("alert label %s = %q, want %q", k, got.Labels[k], want)
		}
	}
	t.Logf("webhook received %s: %v\n  summary: %s\n  description: %s",
		got.Labels["alertname"], got.Labels, got.Annotations["summary"], got.Annotations["description"])
	if d := got.Annotations["description"]; !strings.Contains(d, "https://crt.sh/?sha256="+unexpectedCert) || !strings.Contains(d, unexpectedTBS) {
		t.Errorf("description lacks the crt.sh link or tbs_sha256: %s", d)
	}
	if !strings.HasSuffix(got.Annotations["runbook_url"], "#ctunexpectedissuercertificate") {
		t.Errorf("runbook_url = %s", got.Annotations["runbook_url"])
	}
	testenv.Eventually(t, 60*time.Second, "CTNewCertificate for the expected issuer", func() bool {
		_, _, ok := hook.Firing(map[string]string{"alertname": "CTNewCertificate", "tbs_sha256": allowedTBS, "severity": "info"})
		return ok
	})

	// The authorized issuance was processed before the unexpected one and
	// is exposed; several evaluations later, nothing fired for it.
	ctx := context.Background()
	testenv.Eventually(t, 30*time.Second, "the authorized issuance in Prometheus", func() bool {
		r, err := w.stack.query(ctx, fmt.Sprintf(`ct_certificate_first_seen_timestamp_seconds{verdict="authorized",tbs_sha256=%q}`, authorizedTBS))
		return err == nil && len(r) == 1
	})
	seen := time.Now()
	testenv.Eventually(t, 30*time.Second, "five more rule evaluations", func() bool { return time.Since(seen) > 5*time.Second })
	if a, _, ok := hook.Firing(map[string]string{"tbs_sha256": authorizedTBS}); ok {
		t.Fatalf("an authorized issuance alerted: %+v", a)
	}
	if r, err := w.stack.query(ctx, fmt.Sprintf(`ALERTS{tbs_sha256=%q}`, authorizedTBS)); err != nil || len(r) != 0 {
		t.Fatalf("ALERTS for the authorized issuance: %v, %v", r, err)
	}

	checkDashboards(t, w)

	// crt.sh goes away: CTSourceDown arrives once it has failed long enough,
	// and CTSourceWatchStale names the watch it no longer searches (3
	// intervals of 1s).
	w.crtsh.Close()
	testenv.Eventually(t, 90*time.Second, "CTSourceDown and CTSourceWatchStale", func() bool {
		_, _, down := hook.Firing(map[string]string{"alertname": "CTSourceDown", "source": "crtsh", "severity": "warning"})
		_, _, stale := hook.Firing(map[string]string{"alertname": "CTSourceWatchStale", "source": "crtsh", "watch": "example.com", "severity": "warning"})
		return down && stale
	})
}

// Every query of every dashboard runs against the Prometheus of the
// end-to-end world without error, and the core panels have data.
func checkDashboards(t *testing.T, w *world) {
	t.Helper()
	queries, err := dashboards.Queries(filepath.Join(testenv.RepoRoot(), "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) < 20 {
		t.Fatalf("only %d dashboard queries", len(queries))
	}
	vars := map[string]string{
		"__rate_interval": "4s", "__interval": "1s", "__range": "1h",
		// As Grafana writes a regex-escaped value into a PromQL string.
		"job": "ct_exporter", "instance": strings.ReplaceAll(regexp.QuoteMeta(w.addr), `\`, `\\`),
		"team": ".*",
	}
	withData := map[string]bool{}
	ctx := context.Background()
	for _, q := range queries {
		expr := dashboards.Substitute(q.Expr, vars)
		if strings.Contains(expr, "$") {
			t.Errorf("%s: unsubstituted variable in %s", q, expr)
			continue
		}
		var r []map[string]any
		if q.Instant || q.Kind == "variable" {
			r, err = w.stack.query(ctx, expr)
		} else {
			r, err = w.stack.queryRange(ctx, expr, 5*time.Minute, time.Second)
		}
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		if len(r) > 0 {
			withData[q.Panel] = true
		}
	}
	for _, core := range []string{"Recent issuances", "New issuances by watch, issuer and verdict", "Source up", "Entries behind", "Tree size"} {
		if !withData[core] {
			t.Errorf("core panel %q returned no data", core)
		}
	}
	t.Logf("%d dashboard queries ran, %d panels with data", len(queries), len(withData))
}
