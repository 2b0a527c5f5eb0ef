package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/certspotterfake"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// ct_exporter check, as a cron user runs it: every kind of source polled
// once, new issuances printed (escaped) and recorded, the exit code telling
// whether to look.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	le := testpki.NewIssuer(t, "R11", "Let's Encrypt")
	rogue := testpki.NewIssuer(t, "Rogue CA", "Rogue Inc")
	issue := func(ca *testpki.CA, names ...string) *testpki.Issued {
		t.Helper()
		iss, err := ca.Issue(testpki.Leaf{CN: names[0], DNSNames: names, SCTs: 2})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}

	crtsh := crtshfake.New()
	t.Cleanup(crtsh.Close)
	api := certspotterfake.New()
	t.Cleanup(api.Close)
	api.SetToken("cron-user-key")
	log := ctlogfake.New(t)

	// crt.sh: an expected issuer; Cert Spotter: a rogue CA, with a name
	// holding a terminal escape; the log: both again (deduplicated) and a
	// third issuance only it has.
	allowed := issue(le, "www.example.com")
	crtsh.Add(allowed.Precert)
	crtsh.Add(allowed.Final)
	bad := issue(rogue, "login.example.com", "x\x1b[2J.example.com")
	for _, der := range [][]byte{bad.Precert, bad.Final} {
		if _, err := api.Add(der); err != nil {
			t.Fatal(err)
		}
	}
	only := issue(le, "api.example.com")
	log.AddCert(allowed.Final, le.DER)
	log.AddCert(bad.Final, rogue.DER)
	log.AddPrecert(only.Precert, le.DER, le.DER)
	log.Publish()

	testenv.WriteFile(t, filepath.Join(dir, "token"), "cron-user-key\n")
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, fmt.Sprintf(`
watches:
  - domain: example.com
    expected_issuers: ["Let's Encrypt"]
sources:
  - {name: crtsh, type: crtsh, url: %q, request_interval: 0s}
  - {name: certspotter, type: certspotter, url: %q, token_file: token, request_interval: 0s}
  - {name: log, type: ctlog, url: %q, public_key: %q, start: beginning}
`, crtsh.URL+"/", api.URL+"/", log.URL+"/", base64.StdEncoding.EncodeToString(log.PublicKeyDER())))
	state := filepath.Join(dir, "ct.state")

	code, out, errOut := harness.RunSplit(t, "check", "--config.file="+cfg, "--state.file="+state)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (an issuer_unexpected issuance):\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+3+2 || !strings.HasPrefix(lines[0], "VERDICT") || !strings.HasPrefix(lines[1], "issuer_unexpected") ||
		!strings.Contains(out, "3 new certificate(s).") {
		t.Fatalf("want a header, the unexpected issuance first, three rows:\n%s", out)
	}
	if strings.Contains(out, "\x1b") || !strings.Contains(out, `x\u{1b}[2J.example.com`) || !strings.Contains(out, "Rogue CA") {
		t.Fatalf("a name with a terminal escape is not printed escaped:\n%q", out)
	}
	for _, want := range []string{"www.example.com", "api.example.com", "https://crt.sh/?sha256=", "precert", "  2  "} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, "cron-user-key") {
		t.Fatal("the API key was printed")
	}
	if strings.Contains(errOut, "new certificate") {
		t.Fatalf("info lines repeat the table on stderr by default:\n%s", errOut)
	}

	// Recorded: a second run has nothing new, and says so.
	code, out, errOut = harness.RunSplit(t, "check", "--config.file="+cfg, "--state.file="+state)
	if code != 0 || strings.TrimSpace(out) != "No new certificates." {
		t.Fatalf("second run: exit %d:\n%s\n%s", code, out, errOut)
	}

	// JSON: one allowed issuance, exit 0.
	late := issue(le, "late.example.com")
	log.AddCert(late.Final, le.DER)
	log.Publish()
	code, out, errOut = harness.RunSplit(t, "check", "--output=json", "--log.level=info", "--config.file="+cfg, "--state.file="+state)
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != 0 || len(rows) != 1 {
		t.Fatalf("json run: exit %d, %v:\n%s\n%s", code, err, out, errOut)
	}
	if !strings.Contains(errOut, `msg="new certificate"`) {
		t.Fatalf("--log.level=info is not honoured by check:\n%s", errOut)
	}
	r := rows[0]
	if r["verdict"] != "issuer_allowed" || r["watch"] != "example.com" || r["embedded_scts"] != float64(2) ||
		fmt.Sprint(r["dns_names"]) != "[late.example.com]" || len(fmt.Sprint(r["tbs_sha256"])) != 64 ||
		strings.HasPrefix(fmt.Sprint(r["first_seen"]), "0001") {
		t.Fatalf("json row: %v", r)
	}

	// A source that fails: exit 2, and what the others found still printed.
	// An unexpected issuance found at the same time wins: exit 1.
	crtsh.Close()
	code, _, errOut = harness.RunSplit(t, "check", "--config.file="+cfg, "--state.file="+state)
	if code != 2 || !strings.Contains(errOut, "1 of 3 sources failed") || !strings.Contains(errOut, "source crtsh") {
		t.Fatalf("a failed source: exit %d:\n%s", code, errOut)
	}
	worse := issue(rogue, "pay.example.com")
	log.AddCert(worse.Final, rogue.DER)
	log.Publish()
	code, out, errOut = harness.RunSplit(t, "check", "--config.file="+cfg, "--state.file="+state)
	if code != 1 || !strings.Contains(out, "pay.example.com") || !strings.Contains(errOut, "source crtsh") {
		t.Fatalf("an unexpected issuance and a failed source: exit %d, want 1:\n%s\n%s", code, out, errOut)
	}

	// The exporter holds the state file: check says so, and changes nothing.
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+state)
	e.WaitReady()
	code, _, errOut = harness.RunSplit(t, "check", "--config.file="+cfg, "--state.file="+state)
	if code != 2 || !strings.Contains(errOut, state) {
		t.Fatalf("state in use: exit %d:\n%s", code, errOut)
	}
}
