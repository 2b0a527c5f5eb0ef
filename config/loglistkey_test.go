package config

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// listKeyPEM is a public key in PEM, as Google publishes log_list_pubkey.pem.
func listKeyPEM(t *testing.T, pub crypto.PublicKey) (pemText string, der []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), der
}

// indent makes a PEM text a YAML block scalar's content.
func indent(s, by string) string {
	return by + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+by)
}

// A loglist's public_key (inline PEM, or base64 DER) or public_key_file
// (RSA or ECDSA) is read at load; the signature's location defaults to
// log_list.sig beside log_list.json, for a URL and for a file alike.
func TestLogListSignatureKey(t *testing.T) {
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM, rsaDER := listKeyPEM(t, rsaKey.Public())
	ecPEM, ecDER := listKeyPEM(t, ecKey.Public())
	for _, f := range []struct{ name, content string }{
		{"keys/log_list_pubkey.pem", rsaPEM},
		{"lists/log_list.json", "{}"},
		{"lists/log_list.sig", "sig"},
		{"lists/mine.json", "{}"},
		{"lists/mine.json.sig", "sig"},
	} {
		path := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(f.content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "ct.yml")
	if err := os.WriteFile(cfgPath, []byte(`
watches: [{domain: example.com}]
sources:
  - name: google
    type: loglist
    public_key_file: keys/log_list_pubkey.pem
  - name: inline
    type: loglist
    url: https://mirror.example/ct/v3/log_list.json
    public_key: |
`+indent(ecPEM, "      ")+`
  - name: der
    type: loglist
    url: https://mirror.example/all_logs_list.json
    public_key: `+base64.StdEncoding.EncodeToString(ecDER)+`
    signature_url: https://mirror.example/all_logs_list.sig
  - name: file
    type: loglist
    url: lists/log_list.json
    public_key_file: keys/log_list_pubkey.pem
  - name: file_sig
    type: loglist
    url: lists/mine.json
    public_key_file: keys/log_list_pubkey.pem
    signature_url: lists/mine.json.sig
  - name: unsigned
    type: loglist
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		der []byte
		sig string
	}{
		{rsaDER, "https://www.gstatic.com/ct/log_list/v3/log_list.sig"},
		{ecDER, "https://mirror.example/ct/v3/log_list.sig"},
		{ecDER, "https://mirror.example/all_logs_list.sig"},
		{rsaDER, filepath.Join(dir, "lists/log_list.sig")},
		{rsaDER, filepath.Join(dir, "lists/mine.json.sig")},
		{nil, ""},
	} {
		s := cfg.Sources[i]
		if !bytes.Equal(s.PublicKeyDER, want.der) || s.SignatureURL != want.sig {
			t.Errorf("source %s: key %d bytes (want %d), signature %q (want %q)", s.Name, len(s.PublicKeyDER), len(want.der), s.SignatureURL, want.sig)
		}
	}
	var out strings.Builder
	cfg.Describe(&out)
	for _, want := range []string{
		"accepted only when its signature https://www.gstatic.com/ct/log_list/v3/log_list.sig verifies with an RSA key",
		"accepted only when its signature https://mirror.example/all_logs_list.sig verifies with an ECDSA key",
		"not verified: no public_key",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--config.check does not say %q:\n%s", want, out.String())
		}
	}
}

// Every mistake with a list's key or signature is an error naming the line.
func TestLogListSignatureErrors(t *testing.T) {
	dir := t.TempDir()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM, _ := listKeyPEM(t, ecKey.Public())
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPEM, _ := listKeyPEM(t, edKey.Public())
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakPEM, _ := listKeyPEM(t, weak.Public())
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("ec.pem", ecPEM)
	write("ed.pem", edPEM)
	write("cert.pem", string(endEntityPEM(t)))
	write("big.pem", strings.Repeat("x", 70<<10))
	write("log_list.json", "{}")
	cfgPath := write("ct.yml", `
watches: [{domain: example.com}]
sources:
  - name: both
    type: loglist
    public_key: x
    public_key_file: ec.pem
  - name: garbage
    type: loglist
    public_key: "not a key"
  - name: ed
    type: loglist
    public_key_file: ed.pem
  - name: weak
    type: loglist
    public_key: |
`+indent(weakPEM, "      ")+`
  - name: cert
    type: loglist
    public_key_file: cert.pem
  - name: missing
    type: loglist
    public_key_file: nowhere.pem
  - name: big
    type: loglist
    public_key_file: big.pem
  - name: nodefault
    type: loglist
    url: https://valid.apple.com/ct/log_list/current_log_list.json?x=1
    public_key_file: ec.pem
  - name: nokey
    type: loglist
    signature_url: https://www.gstatic.com/ct/log_list/v3/log_list.sig
  - name: badsig
    type: loglist
    public_key_file: ec.pem
    signature_url: ftp://example.com/log_list.sig
  - name: nosigfile
    type: loglist
    url: log_list.json
    public_key_file: ec.pem
  - name: ctlog
    type: ctlog
    url: https://log.example/
    public_key: MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEr+TzlCzfpie1/rJhgxnIITojqKk9VK+8MZoc08HjtsLzD8e5yjsdeWVhIiWCVk6Y6KomKTYeKGBv6xVu93zQug==
    signature_url: https://log.example/sig
`)
	_, err = Load(cfgPath)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`ct.yml:7: source both: public_key and public_key_file are both set`,
		`ct.yml:10: source garbage: public_key: not a PEM public key (-----BEGIN PUBLIC KEY-----) nor base64 DER`,
		`ct.yml:13: source ed: public_key_file ` + filepath.Join(dir, "ed.pem") + `: a ed25519.PublicKey key: a log list is signed with RSA (PKCS#1 v1.5, SHA-256) or ECDSA (SHA-256)`,
		`ct.yml:16: source weak: public_key: an RSA key of 1024 bits`,
		`source cert: public_key_file ` + filepath.Join(dir, "cert.pem") + `: the PEM block is a "CERTIFICATE": it must be a PUBLIC KEY`,
		`source missing: public_key_file: open ` + filepath.Join(dir, "nowhere.pem") + `: no such file or directory`,
		`source big: public_key_file: ` + filepath.Join(dir, "big.pem") + ` is larger than 65536 bytes: it is not a public key`,
		`source nodefault: a list whose url does not end in log_list.json has no default signature_url: set signature_url`,
		`source nokey: signature_url is set but no public_key or public_key_file`,
		`source badsig: signature_url "ftp://example.com/log_list.sig" is not an http or https URL`,
		`source nosigfile: the list's signature file: stat ` + filepath.Join(dir, "log_list.sig") + `: no such file or directory`,
		`source ctlog: signature_url does not apply to type ctlog`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// Each error names its line: count them against the keys' lines.
	lines := map[string]int{}
	for i, l := range strings.Split(mustRead(t, cfgPath), "\n") {
		for _, key := range []string{"public_key_file: cert.pem", "public_key_file: nowhere.pem", "public_key_file: big.pem", "signature_url: ftp:", "url: log_list.json"} {
			if strings.Contains(l, key) {
				lines[key] = i + 1
			}
		}
	}
	for key, n := range lines {
		if n == 0 {
			t.Fatalf("line of %q not found", key)
		}
	}
	for _, want := range []string{
		"ct.yml:" + strconv.Itoa(lines["public_key_file: cert.pem"]) + ": source cert:",
		"ct.yml:" + strconv.Itoa(lines["public_key_file: nowhere.pem"]) + ": source missing:",
		"ct.yml:" + strconv.Itoa(lines["public_key_file: big.pem"]) + ": source big:",
		"ct.yml:" + strconv.Itoa(lines["signature_url: ftp:"]) + ": source badsig:",
		"ct.yml:" + strconv.Itoa(lines["url: log_list.json"]+1) + ": source nosigfile:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
