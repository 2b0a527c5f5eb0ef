package config

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/watch"
)

func TestParseValidAndDefaults(t *testing.T) {
	cfg, err := Parse([]byte(`
watches:
  - domain: Bücher.Example.
    expected_issuers: ["Let's Encrypt", "/^CN=R1[0-4], O=Let's Encrypt, C=US$/"]
    authorized_keys: ["`+strings.Repeat("ab", 32)+`"]
  - domain: example.org
    include_subdomains: false
  - domain: 192.0.2.0/24
sources:
  - name: crtsh
    type: crtsh
  - name: mirror
    type: crtsh
    url: http://mirror.example:8080/
    request_interval: 0s
`), "test.yml")
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(cfg.RecentWindow); got != DefaultRecentWindow {
		t.Errorf("recent_window = %v", got)
	}
	if cfg.RecentSeriesLimit != DefaultRecentSeriesLimit {
		t.Errorf("recent_series_limit = %d", cfg.RecentSeriesLimit)
	}
	if cfg.MaxIssuersPerWatch != DefaultMaxIssuersPerWatch {
		t.Errorf("max_issuers_per_watch = %d", cfg.MaxIssuersPerWatch)
	}
	ws := cfg.Policy.Watches()
	if len(ws) != 3 || ws[0].Domain != "xn--bcher-kva.example" || !ws[0].IncludeSubdomains || ws[1].IncludeSubdomains || !ws[2].IsIP() {
		t.Fatalf("watches = %+v", ws)
	}
	if len(ws[0].ExpectedIssuers) != 2 || len(ws[0].AuthorizedKeys) != 1 {
		t.Errorf("watch 0 policy = %+v", ws[0])
	}
	s := cfg.Sources[0]
	if s.URL != DefaultCrtshURL || time.Duration(s.Interval) != time.Hour || time.Duration(s.Timeout) != time.Minute || time.Duration(s.RequestInterval) != 2*time.Second {
		t.Errorf("crtsh defaults = %+v", s)
	}
	if m := cfg.Sources[1]; m.RequestInterval != 0 || m.URL != "http://mirror.example:8080/" || time.Duration(m.Interval) != time.Hour {
		t.Errorf("explicit values were replaced by defaults: %+v", m)
	}
	var out strings.Builder
	cfg.Describe(&out)
	for _, want := range []string{
		"watch xn--bcher-kva.example: xn--bcher-kva.example and every subdomain",
		`issuer_allowed: issuer O or CN equal to "Let's Encrypt" (any case); or issuer DN matching /^CN=R1[0-4], O=Let's Encrypt, C=US$/`,
		"watch example.org: only example.org",
		"any other issuance: unreviewed",
		"source crtsh: crtsh https://crt.sh/ every 1h",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Describe lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "warning") {
		t.Errorf("Describe warns about a configuration without a problem:\n%s", out.String())
	}
}

// --config.check warns, under the watch, about each /…/ expected issuer that
// also accepts longer DNs, and about no other entry.
func TestDescribeWarnsAboutUnanchoredIssuerExpressions(t *testing.T) {
	cfg, err := Parse([]byte(`
watches:
  - domain: example.com
    expected_issuers:
      - "Let's Encrypt"
      - "/^CN=R1[0-4], O=Let's Encrypt/"
      - "/CN=E[5-9], O=Let's Encrypt, C=US$/"
      - "/^CN=(R1[0-4]|E[5-9]), O=Let's Encrypt, C=US$/"
  - domain: example.org
    expected_issuers: ["/^CN=R11, O=Let's Encrypt, C=US$|DigiCert/"]
  - domain: example.net
    expected_issuers: ["/\\ACN=R11, O=Let's Encrypt, C=US\\z/", "/^CN=R11, O=Let's Encrypt, C=US$|^CN=R10, O=Let's Encrypt, C=US$/"]
sources: [{name: crtsh, type: crtsh}]
`), "test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cfg.Describe(&out)
	var warnings []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "  warning: ") || strings.HasPrefix(line, "watch ") {
			warnings = append(warnings, line)
		}
	}
	const longer = " is not anchored at both ends (^ at the start, $ at the end): it also accepts longer DNs"
	want := []string{
		"watch example.com: example.com and every subdomain (*.example.com)",
		"  warning: expected issuer /^CN=R1[0-4], O=Let's Encrypt/" + longer,
		"  warning: expected issuer /CN=E[5-9], O=Let's Encrypt, C=US$/" + longer,
		"watch example.org: example.org and every subdomain (*.example.org)",
		"  warning: expected issuer /^CN=R11, O=Let's Encrypt, C=US$|DigiCert/" + longer,
		"watch example.net: example.net and every subdomain (*.example.net)",
	}
	if len(warnings) != len(want) {
		t.Fatalf("watch and warning lines:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(warnings[i], want[i]) {
			t.Errorf("line %d = %q, want it to begin %q", i, warnings[i], want[i])
		}
	}
}

func TestParseErrorsNameFileLineAndFix(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want []string
	}{
		"unknown top-level key": {`
watches: [{domain: example.com}]
sources: [{name: c, type: crtsh}]
recent_windw: 1h
`, []string{`f.yml:4: unknown key "recent_windw" in the configuration; the keys are: max_issuers_per_watch, recent_series_limit, recent_window, sources, watch_files, watches`}},
		"limits": {`
watches: [{domain: example.com}]
sources: [{name: c, type: crtsh}]
recent_series_limit: -1
max_issuers_per_watch: -5
`, []string{
			`f.yml:4: recent_series_limit must be positive`,
			`f.yml:5: max_issuers_per_watch must be positive`,
		}},
		"unknown watch key": {`
watches:
  - domain: example.com
    include_subdomain: true
sources: [{name: c, type: crtsh}]
`, []string{`f.yml:4: unknown key "include_subdomain" in watches entry "example.com"`}},
		"bad duration": {`
watches: [{domain: example.com}]
sources:
  - name: c
    type: crtsh
    interval: 1 hour
`, []string{`f.yml:6: "1 hour" is not a duration`}},
		"domains": {`
watches:
  - domain: ""
  - domain: "*.example.com"
  - domain: https://example.com/
  - domain: com
  - domain: Example.COM.
  - domain: example.com
  - domain: ` + strings.Repeat("a.", 127) + `com
sources: [{name: c, type: crtsh}]
`, []string{
			`f.yml:9: watch domain "` + strings.Repeat("a.", 127) + `com": not a valid host name: longer than 253 characters`,
			`f.yml:3: watch domain "": the domain is empty`,
			`f.yml:4: watch domain "*.example.com": wildcards are not domains: watch example.com with include_subdomains: true`,
			`f.yml:5: watch domain "https://example.com/": a domain is a host name`,
			`f.yml:6: watch domain "com": a top-level domain alone cannot be watched`,
			`f.yml:8: watch example.com is configured twice (also at line 7)`,
		}},
		"sources": {`
watches: [{domain: example.com}]
sources:
  - name: a
    type: crtsh
  - name: a
    type: crtsh
    url: ftp://x
  - type: crtsh
  - name: b
    type: certspotter
  - name: d
    type: carrier-pigeon
  - name: e
    type: crtsh
    interval: 0s
`, []string{
			`f.yml:16: source e: interval must be positive`,
			`f.yml:6: source name "a" is used twice (also at line 4)`,
			`f.yml:8: source a: url "ftp://x" is not an http or https URL`,
			`f.yml:9: source 3 has no name`,
			`f.yml:13: source d: unknown type "carrier-pigeon"`,
		}},
		"policy": {`
watches:
  - domain: example.com
    expected_issuers: ["/[/"]
    authorized_keys: [nothex]
    authorized_certificates: [abcd]
    authorized_key_files: [does-not-exist/*.pem]
sources: [{name: c, type: crtsh}]
`, []string{
			`f.yml:4: watch example.com: invalid regular expression /[/`,
			`f.yml:5: watch example.com: authorized key "nothex" is not a SHA-256 in hex`,
			`f.yml:6: watch example.com: authorized certificate "abcd" is not a tbs_sha256 in hex`,
			`f.yml:7: watch example.com: authorized_key_files "does-not-exist/*.pem" matches no file`,
		}},
		"max_logs": {`
watches: [{domain: example.com}]
sources:
  - name: zero
    type: loglist
    max_logs: 0
  - name: negative
    type: loglist
    max_logs: -5
  - name: crtsh
    type: crtsh
    max_logs: 10
`, []string{
			`f.yml:6: source zero: max_logs must be positive`,
			`f.yml:9: source negative: max_logs must be positive`,
			`f.yml:12: source crtsh: max_logs does not apply to type crtsh`,
		}},
		"max_logs not a number": {"watches: [{domain: example.com}]\nsources:\n  - name: l\n    type: loglist\n    max_logs: many\n",
			[]string{"f.yml:5: cannot unmarshal"}},
		"empty":         {"", []string{"f.yml:1: the configuration is empty"}},
		"nothing to do": {"recent_window: 1h\n", []string{"no watches", "no sources"}},
		"wrong type": {"watches: [{domain: example.com}]\nsources: [{name: c, type: crtsh}]\nrecent_series_limit: many\n",
			[]string{"f.yml:3: cannot unmarshal"}},
		"not yaml": {"watches: [\n", []string{"f.yml: "}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "f.yml")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestCTLogDefaults(t *testing.T) {
	key := "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEr+TzlCzfpie1/rJhgxnIITojqKk9VK+8MZoc08HjtsLzD8e5yjsdeWVhIiWCVk6Y6KomKTYeKGBv6xVu93zQug=="
	cfg, err := Parse([]byte(`
watches: [{domain: example.com}]
sources:
  - {name: r, type: ctlog, url: "https://log.example/", public_key: "`+key+`"}
  - {name: s, type: ctlog, protocol: static, url: "https://tiles.example/", public_key: "`+key+`", start: "1000", requests_per_second: 5}
`), "f.yml")
	if err != nil {
		t.Fatal(err)
	}
	r, s := cfg.Sources[0], cfg.Sources[1]
	if r.Protocol != ProtocolRFC6962 || r.Start != "end" || r.Workers != DefaultLogWorkers || r.BatchSize != DefaultRFC6962Batch ||
		time.Duration(r.Interval) != 10*time.Second || time.Duration(r.MMD) != 24*time.Hour || len(r.PublicKeyDER) != 91 {
		t.Errorf("rfc6962 defaults: %+v", r)
	}
	if s.Protocol != ProtocolStatic || s.Start != "1000" || s.BatchSize != DefaultStaticBatch || s.RequestsPerSecond != 5 {
		t.Errorf("static: %+v", s)
	}
}

func TestLogListMaxLogs(t *testing.T) {
	cfg, err := Parse([]byte(`
watches: [{domain: example.com}]
sources:
  - {name: google, type: loglist}
  - {name: one, type: loglist, max_logs: 1}
`), "f.yml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Sources[0].MaxLogs; got != 200 {
		t.Errorf("max_logs defaults to %d, want 200", got)
	}
	if got := cfg.Sources[1].MaxLogs; got != 1 {
		t.Errorf("max_logs: 1 reads as %d", got)
	}
	var out strings.Builder
	cfg.Describe(&out)
	if !strings.Contains(out.String(), "more than 200 (max_logs) is refused") {
		t.Errorf("Describe does not give the limit:\n%s", out.String())
	}
}

func TestAuthorizedKeyFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewIssuer(t, "Issuing CA", "Test")
	leaf, err := ca.Issue(testpki.Leaf{DNSNames: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Issue(testpki.Leaf{DNSNames: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "live", "example.com")
	if err := os.MkdirAll(live, 0o755); err != nil {
		t.Fatal(err)
	}
	// fullchain.pem: the leaf and its CA; the CA's key must not become authorized.
	fullchain := append(testpki.PEM(leaf.Final), testpki.PEM(ca.DER)...)
	write(t, filepath.Join(live, "fullchain.pem"), fullchain)
	spki, err := x509.MarshalPKIXPublicKey(other.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "next.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))
	cfgPath := filepath.Join(dir, "ct.yml")
	write(t, cfgPath, []byte(`
watches:
  - domain: example.com
    authorized_key_files: ["live/*/fullchain.pem", "`+filepath.Join(dir, "next.pub")+`"]
sources: [{name: c, type: crtsh}]
`))
	cfg, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	keys := cfg.Policy.Watches()[0].AuthorizedKeys
	want := map[[32]byte]bool{testpki.SPKISHA256(leaf.Key.Public()): true, testpki.SPKISHA256(other.Key.Public()): true}
	if len(keys) != 2 {
		t.Fatalf("%d keys authorized, want 2", len(keys))
	}
	for k := range keys {
		if !want[k] {
			t.Errorf("unexpected key %s authorized", hex.EncodeToString(k[:]))
		}
	}
	cand := watch.Candidate{SPKISHA256: testpki.SPKISHA256(leaf.Key.Public())}
	w := cfg.Policy.Watches()[0]
	if v := w.Verdict(cand); v != watch.Authorized {
		t.Errorf("verdict for the key in fullchain.pem = %v", v)
	}

	// A file without keys is an error, not an empty authorization.
	write(t, filepath.Join(live, "fullchain.pem"), testpki.PEM(ca.DER))
	if _, err := Load(cfgPath); err == nil || !strings.Contains(err.Error(), "holds no end-entity certificate") {
		t.Fatalf("Load with a CA-only file = %v", err)
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := Load("../config.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Watches) == 0 || len(cfg.Sources) == 0 {
		t.Fatal("the example watches nothing")
	}
}

// Every key of the schema is documented in config.example.yml.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../config.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, typ := range []reflect.Type{typeOfConfig, reflect.TypeFor[Watch](), reflect.TypeFor[Source]()} {
		for k := range yamlFields(typ) {
			seen[k] = true
		}
	}
	for k := range seen {
		if !strings.Contains(string(data), k+":") {
			t.Errorf("config.example.yml does not document %s", k)
		}
	}
}

func TestCertspotterToken(t *testing.T) {
	dir := t.TempDir()
	const key = "k3y-do-not-print-0123456789"
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "two"), []byte(key+" "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(body string) string {
		path := filepath.Join(dir, "f.yml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfg, err := Load(write("watches: [{domain: example.com}]\nsources:\n  - {name: cs, type: certspotter, token_file: token}\n  - {name: anon, type: certspotter}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cs, anon := cfg.Sources[0], cfg.Sources[1]
	if cs.Token.Reveal() != key || anon.Token.Reveal() != "" {
		t.Fatalf("tokens: %q %q", cs.Token.Reveal(), anon.Token.Reveal())
	}
	if cs.URL != DefaultCertspotterURL || time.Duration(cs.RequestInterval) != DefaultCertspotterRequestGap ||
		time.Duration(cs.Interval) != DefaultCertspotterInterval {
		t.Errorf("defaults: %+v", cs)
	}
	// Every way the configuration is printed leaves the key out.
	var out bytes.Buffer
	cfg.Describe(&out)
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("cfg", "source", cs, "token", cs.Token)
	js, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{
		"Describe": out.String(), "%v": fmt.Sprintf("%v", cs), "%+v": fmt.Sprintf("%+v", cs), "%#v": fmt.Sprintf("%#v", cs),
		"%s": fmt.Sprintf("%s", cs.Token), "%x": fmt.Sprintf("%x", cs.Token), "%q": fmt.Sprintf("%q", cs.Token),
		"slog": logged.String(), "json": string(js),
	} {
		if strings.Contains(s, key) || strings.Contains(s, fmt.Sprintf("%x", key)) {
			t.Errorf("%s prints the key: %s", what, s)
		}
	}
	if !strings.Contains(out.String(), "API key read from token") {
		t.Errorf("Describe does not say where the key comes from:\n%s", out.String())
	}

	for name, want := range map[string]string{
		"missing": "f.yml:4: source cs: token_file: open " + filepath.Join(dir, "missing") + ": no such file or directory",
		"empty":   "f.yml:4: source cs: token_file " + filepath.Join(dir, "empty") + " is empty",
		"two":     "f.yml:4: source cs: token_file " + filepath.Join(dir, "two") + " holds more than one printable word",
	} {
		_, err := Load(write("watches: [{domain: example.com}]\nsources:\n  - name: cs\n    token_file: " + name + "\n    type: certspotter\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", name, err, want)
		}
		if err != nil && strings.Contains(err.Error(), key) {
			t.Errorf("%s: the error prints the key: %v", name, err)
		}
	}
	_, err = Load(write("watches: [{domain: example.com}]\nsources:\n  - {name: c, type: crtsh, token_file: token}\n"))
	if err == nil || !strings.Contains(err.Error(), "token_file does not apply to type crtsh") {
		t.Errorf("token_file on crt.sh: %v", err)
	}
}

// The API key must not cross the network in clear text: a plain http url
// with a token_file is refused at the url's line, except for a loopback
// address, which never leaves the host.
func TestCertspotterTokenNeedsHTTPS(t *testing.T) {
	dir := t.TempDir()
	const key = "k3y-do-not-print-0123456789"
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(url string, token bool) (*Config, error) {
		body := "watches: [{domain: example.com}]\nsources:\n  - name: cs\n    type: certspotter\n    url: " + url + "\n"
		if token {
			body += "    token_file: token\n"
		}
		path := filepath.Join(dir, "f.yml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load(path)
	}
	for _, u := range []string{"http://api.certspotter.com/", "http://10.0.0.1:8080/", "http://[2001:db8::1]/", "http://127.0.0.1.example.net/", "http://localhost.example.net/", "http://[::ffff:10.0.0.1]/"} {
		_, err := load(u, true)
		want := "f.yml:5: source cs: url \"" + u + "\" is plain http and token_file is set"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s with token_file: got %v, want %q", u, err, want)
		}
		if err != nil && strings.Contains(err.Error(), key) {
			t.Errorf("%s: the error prints the key: %v", u, err)
		}
		// Anonymous queries have nothing to leak.
		if _, err := load(u, false); err != nil {
			t.Errorf("%s without token_file: %v", u, err)
		}
	}
	for _, u := range []string{"https://api.certspotter.com/", "http://127.0.0.1:8080/", "http://127.8.9.10/", "http://[::1]:9000/", "http://localhost:8080/", "http://LocalHost./", "http://[::ffff:127.0.0.1]/"} {
		cfg, err := load(u, true)
		if err != nil {
			t.Errorf("%s with token_file: %v", u, err)
			continue
		}
		if cfg.Sources[0].Token.Reveal() != key {
			t.Errorf("%s: token not read", u)
		}
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "localhost.": true, "127.0.0.1": true, "127.255.255.254": true, "::1": true,
		"::ffff:127.0.0.1": true, "": false, "128.0.0.1": false, "0.0.0.0": false, "::": false, "example.com": false,
		"localhost.example.com": false, "foo.localhost": false, "127.0.0.1.nip.io": false, "::1%lo": false,
	} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestMaxIssuersPerWatchIsRead(t *testing.T) {
	cfg, err := Parse([]byte("watches: [{domain: example.com}]\nsources: [{name: c, type: crtsh}]\nmax_issuers_per_watch: 300\n"), "f.yml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxIssuersPerWatch != 300 {
		t.Fatalf("max_issuers_per_watch = %d, want 300", cfg.MaxIssuersPerWatch)
	}
}
