// Package docs holds the user documentation. Its tests check what the
// documents claim against the code: the openssl commands of authorizing.md
// against the hashes the exporter computes, every link and anchor, and
// (metrics_test.go) the metrics reference and the flags table against what
// the real exporter serves and --help shows.
package docs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/watch"
)

// shellBlocks returns the ```sh blocks of a Markdown file, with the line each
// starts at.
func shellBlocks(t *testing.T, file string) map[int]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[int]string{}
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case start == 0 && trimmed == "```sh":
			start = i + 1
			blocks[start] = ""
		case start != 0 && trimmed == "```":
			start = 0
		case start != 0:
			blocks[start] += trimmed + "\n"
		}
	}
	return blocks
}

// hashOutput reads the hash sha256sum prints.
func hashOutput(t *testing.T, out []byte) string {
	t.Helper()
	f := strings.Fields(string(out))
	if len(f) == 0 || len(f[0]) != 64 {
		t.Fatalf("not sha256sum output: %q", out)
	}
	return f[0]
}

func sh(t *testing.T, dir, script string) []byte {
	t.Helper()
	cmd := exec.Command("sh", "-e", "-c", script)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s: %v\n%s", script, err, stderr)
	}
	return out
}

// The openssl commands authorizing.md gives print, for RSA and ECDSA keys
// and from a certificate, a private key or a request, the hash the exporter
// computes for the certificate's key; that hash in authorized_keys
// authorizes the certificate, as does the certificate in
// authorized_key_files.
func TestOpenSSLKeyHashesAuthorize(t *testing.T) {
	openssl := testenv.Require(t, "openssl", "openssl")
	t.Logf("using %s", openssl)
	const doc = "authorizing.md"
	var commands []string
	var rotation string
	for _, block := range shellBlocks(t, doc) {
		if strings.Contains(block, "genpkey") {
			rotation = block
			continue
		}
		for _, line := range strings.Split(block, "\n") {
			if strings.HasPrefix(line, "openssl ") && strings.HasSuffix(line, "| sha256sum") && !strings.Contains(line, "s_client") {
				commands = append(commands, line)
			}
		}
	}
	for _, want := range []string{"openssl x509 -in cert.pem", "openssl pkey -in privkey.pem", "openssl req -in req.csr"} {
		found := false
		for _, c := range commands {
			found = found || strings.HasPrefix(c, want)
		}
		if !found {
			t.Errorf("%s: no command starting %q (found %q)", doc, want, commands)
		}
	}

	ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")
	keys := map[string]func() (crypto.Signer, error){
		"ECDSA P-256": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		"RSA 2048":    func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) },
	}
	for name, gen := range keys {
		t.Run(name, func(t *testing.T) {
			key, err := gen()
			if err != nil {
				t.Fatal(err)
			}
			iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{"www.example.com"}, Key: key, SCTs: 2})
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := cert.Parse(iss.Final)
			if err != nil {
				t.Fatal(err)
			}
			exporters := hex.EncodeToString(parsed.SPKISHA256[:])

			dir := t.TempDir()
			pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "www.example.com"}}, key)
			if err != nil {
				t.Fatal(err)
			}
			// A certbot fullchain.pem: the certificate, then its issuer.
			write(t, filepath.Join(dir, "cert.pem"), append(testpki.PEM(iss.Final), testpki.PEM(ca.DER)...))
			write(t, filepath.Join(dir, "privkey.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
			write(t, filepath.Join(dir, "req.csr"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))

			for _, c := range commands {
				if got := hashOutput(t, sh(t, dir, c)); got != exporters {
					t.Errorf("%s\nprints %s; the exporter computes %s for the certificate's key", c, got, exporters)
				}
			}

			// The printed value is what authorized_keys takes, and the
			// certificate file is what authorized_key_files takes.
			for _, policy := range []string{
				"authorized_keys: [" + hashOutput(t, sh(t, dir, commands[0])) + "]",
				"authorized_key_files: [cert.pem]",
			} {
				cfgPath := filepath.Join(dir, "ct.yml")
				write(t, cfgPath, []byte(fmt.Sprintf("watches:\n  - domain: example.com\n    expected_issuers: [\"Other CA\"]\n    %s\nsources: [{name: crtsh, type: crtsh}]\n", policy)))
				cfg, err := config.Load(cfgPath)
				if err != nil {
					t.Fatal(err)
				}
				w, ok := cfg.Policy.Get("example.com")
				if !ok {
					t.Fatal("no watch example.com")
				}
				if v := w.Verdict(parsed.Candidate()); v != watch.Authorized {
					t.Errorf("with %s the certificate is %s, want authorized", policy, v)
				}
			}
			// And without it, the same watch would page: the test above
			// is not passing for another reason.
			other, err := ca.Issue(testpki.Leaf{DNSNames: []string{"www.example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			otherCert, err := cert.Parse(other.Final)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(filepath.Join(dir, "ct.yml"))
			if err != nil {
				t.Fatal(err)
			}
			w, _ := cfg.Policy.Get("example.com")
			if v := w.Verdict(otherCert.Candidate()); v != watch.IssuerUnexpected {
				t.Errorf("a certificate for another key is %s, want issuer_unexpected", v)
			}
		})
	}

	// The rotation recipe: the hash it prints for the new request is the
	// new key's.
	if rotation == "" {
		t.Fatalf("%s: no rotation block (openssl genpkey …)", doc)
	}
	dir := t.TempDir()
	got := hashOutput(t, sh(t, dir, rotation))
	data, err := os.ReadFile(filepath.Join(dir, "next.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("next.key is not PEM")
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(spki); got != hex.EncodeToString(want[:]) {
		t.Errorf("the rotation recipe prints %s for next.key; its SPKI SHA-256 is %x", got, want)
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

var (
	mdHeading = regexp.MustCompile(`^(#{1,6})\s+(.+?)\s*#*\s*$`)
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	slugDrop  = regexp.MustCompile(`[^\p{L}\p{N}\s_-]`)
)

// anchors are the ids GitHub gives a Markdown file's headings: lower case,
// punctuation dropped, spaces made hyphens, repeats numbered.
func anchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	fence := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
		}
		m := mdHeading.FindStringSubmatch(line)
		if m == nil || fence {
			continue
		}
		slug := strings.ReplaceAll(slugDrop.ReplaceAllString(strings.ToLower(m[2]), ""), " ", "-")
		a := slug
		for n := 1; out[a]; n++ {
			a = fmt.Sprintf("%s-%d", slug, n)
		}
		out[a] = true
	}
	return out
}

// Every relative link of the README and the docs leads to a file that
// exists, and every #anchor to a heading.
func TestLinks(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md", "../CHANGELOG.md")
	checked := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		fence := false
		for i, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fence = !fence
			}
			if fence {
				continue
			}
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				link := m[1]
				if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
					continue
				}
				path, anchor, _ := strings.Cut(link, "#")
				target := file
				if path != "" {
					target = filepath.Join(filepath.Dir(file), path)
					if _, err := os.Stat(target); err != nil {
						t.Errorf("%s:%d: link to %s: %v", file, i+1, link, err)
						continue
					}
				}
				if anchor != "" {
					if !strings.HasSuffix(target, ".md") {
						t.Errorf("%s:%d: link to %s: an anchor into a file that is not Markdown", file, i+1, link)
					} else if !anchors(t, target)[anchor] {
						t.Errorf("%s:%d: link to %s: %s has no heading #%s", file, i+1, link, target, anchor)
					}
				}
				checked++
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d links checked: has the link format changed?", checked)
	}
}

// The table of docs/ha.md says which alerts two replicas raise once and
// which once per replica; the rules decide it, by whether they aggregate
// the replica labels away.
func TestHAAlertTable(t *testing.T) {
	data, err := os.ReadFile("../alerts/ct_exporter.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if strings.Contains(r.Expr, "without (instance, pod") {
				want[r.Alert] = "one alert"
			} else {
				want[r.Alert] = "one per replica"
			}
		}
	}
	doc, err := os.ReadFile("ha.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `(CT[A-Za-z]+)` \\| (one alert|one per replica) \\|$")
	got := map[string]string{}
	for _, line := range strings.Split(string(doc), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			got[m[1]] = m[2]
		}
	}
	for alert, w := range want {
		if got[alert] != w {
			t.Errorf("ha.md: %s is %q in the table; its rule makes it %q", alert, got[alert], w)
		}
	}
	for alert := range got {
		if _, ok := want[alert]; !ok {
			t.Errorf("ha.md: %s is in the table but not a shipped alert", alert)
		}
	}
}

// The rule docs/ha.md suggests for "no replica is up" is valid and fires
// only when every replica is down (or none is scraped), with the labels the
// example routing needs.
func TestHAAllReplicasDownRule(t *testing.T) {
	promtool := testenv.Require(t, "promtool", "prometheus")
	doc, err := os.ReadFile("ha.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\ngroups:\n")
	if !ok {
		t.Fatal("ha.md: no rule group (```yaml, groups:)")
	}
	rule, _, _ := strings.Cut(rest, "```")
	dir := t.TempDir()
	write(t, filepath.Join(dir, "rules.yml"), []byte("groups:\n"+rule))
	write(t, filepath.Join(dir, "test.yml"), []byte(`rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="ct_exporter",instance="a:9812"}'
        values: '1x10 0x30'
      - series: 'up{job="ct_exporter",instance="b:9812"}'
        values: '0x40'
    alert_rule_test:
      - eval_time: 15m
        alertname: CTExporterAllReplicasDown
        exp_alerts: []
      - eval_time: 25m
        alertname: CTExporterAllReplicasDown
        exp_alerts: [{exp_labels: {severity: critical, job: ct_exporter}, exp_annotations: {summary: "No ct_exporter replica is up: certificates are not being watched"}}]
  - interval: 1m
    input_series: []
    alert_rule_test:
      - eval_time: 15m
        alertname: CTExporterAllReplicasDown
        exp_alerts: [{exp_labels: {severity: critical, job: ct_exporter}, exp_annotations: {summary: "No ct_exporter replica is up: certificates are not being watched"}}]
`))
	cmd := exec.Command(promtool, "test", "rules", "test.yml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
