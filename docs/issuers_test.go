package docs

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/watch"
)

var (
	// A /…/ entry as YAML writes it: a double-quoted scalar.
	quotedIssuerRE = regexp.MustCompile(`"(/(?:[^"\\\n]|\\.)*/)"`)
	// A /…/ entry as --config.check prints it.
	describedIssuerRE = regexp.MustCompile(`(?m)issuer DN matching (/.*?/)(?:; or |$)`)
)

// issuerDN renders an issuer as the exporter does before matching /…/
// entries against it.
func issuerDN(t *testing.T, cn, o string) string {
	t.Helper()
	der, err := asn1.Marshal(pkix.Name{Country: []string{"US"}, Organization: []string{o}, CommonName: cn}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	return cert.FormatDN(der)
}

// issuerExamples returns the /…/ expected_issuers entries a file shows, in
// configuration (YAML, unquoted as the exporter reads them) and in
// --config.check output, each with its line.
func issuerExamples(t *testing.T, file string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		for _, m := range quotedIssuerRE.FindAllStringSubmatch(line, -1) {
			var entry string
			if err := yaml.Unmarshal([]byte(`"`+m[1]+`"`), &entry); err != nil {
				t.Errorf("%s:%d: %s is not a YAML string: %v", file, i+1, m[0], err)
				continue
			}
			found[entry] = i + 1
		}
		for _, m := range describedIssuerRE.FindAllStringSubmatch(line, -1) {
			found[m[1]] = i + 1
		}
	}
	return found
}

// issuerExampleProblems says what is wrong with a /…/ example: it must be
// anchored at both ends, an example for Let's Encrypt must accept one of its
// intermediates as the exporter writes them, and none may accept a longer
// DN around one of them.
func issuerExampleProblems(t *testing.T, entry string) []string {
	t.Helper()
	m, err := watch.ParseIssuerMatcher(entry)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if !m.Anchored() {
		problems = append(problems, "not anchored at both ends")
	}
	var real []string
	for _, cn := range []string{"R10", "R11", "R12", "R13", "R14", "E5", "E6", "E7", "E8", "E9"} {
		real = append(real, issuerDN(t, cn, "Let's Encrypt"))
	}
	accepted := false
	for _, dn := range real {
		accepted = accepted || m.Matches(watch.Issuer{DN: dn})
		for _, longer := range []string{
			strings.Replace(dn, "O=Let's Encrypt", "O=Let's Encrypt Evil Twin", 1),
			dn + ", OU=Evil",
			"OU=Evil, " + dn,
		} {
			if m.Matches(watch.Issuer{DN: longer}) {
				problems = append(problems, fmt.Sprintf("accepts %q", longer))
			}
		}
	}
	if strings.Contains(entry, "Let's Encrypt") && !accepted {
		problems = append(problems, fmt.Sprintf("accepts none of Let's Encrypt's intermediates (%s, …)", real[1]))
	}
	return problems
}

// Every /…/ expected_issuers example a user may copy matches whole DNs:
// one without ^ and $ would also allow a look-alike issuer.
func TestIssuerExpressionExamplesAreAnchored(t *testing.T) {
	if got, want := issuerDN(t, "R11", "Let's Encrypt"), "CN=R11, O=Let's Encrypt, C=US"; got != want {
		t.Fatalf("the exporter writes the issuer DN %q, the documents %q", got, want)
	}
	// The check catches the example the README once showed.
	if p := issuerExampleProblems(t, "/^CN=R1[0-4], O=Let's Encrypt/"); len(p) == 0 {
		t.Fatal("an unanchored example passes the check")
	}

	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{"../README.md", "../config.example.yml"}, docs...)
	must := map[string]bool{"../README.md": true, "../config.example.yml": true, "configuration.md": true}
	total := 0
	for _, file := range files {
		examples := issuerExamples(t, file)
		if must[file] && len(examples) == 0 {
			t.Errorf("%s: no /…/ expected_issuers example found; the extraction no longer matches how it is written", file)
		}
		for entry, line := range examples {
			total++
			for _, p := range issuerExampleProblems(t, entry) {
				t.Errorf("%s:%d: %s %s", file, line, entry, p)
			}
		}
	}
	t.Logf("%d /…/ expected_issuers examples checked", total)
}
