package certspotterfake_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	ctx509 "github.com/google/certificate-transparency-go/x509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/ct-exporter/ct_exporter/internal/certspotterfake"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// issuance is what a client decodes, with every field expanded.
type issuance struct {
	ID           string    `json:"id"`
	TBSSHA256    string    `json:"tbs_sha256"`
	CertSHA256   string    `json:"cert_sha256"`
	PubkeySHA256 *string   `json:"pubkey_sha256"`
	NotBefore    *string   `json:"not_before"`
	NotAfter     *string   `json:"not_after"`
	DNSNames     []string  `json:"dns_names"`
	CertDER      []byte    `json:"cert_der"`
	Revoked      bool      `json:"revoked"`
	Issuer       *struct { // only what the fake fills in
		Name         string `json:"name"`
		PubkeySHA256 string `json:"pubkey_sha256"`
	} `json:"issuer"`
}

func newServer(t *testing.T) *certspotterfake.Server {
	t.Helper()
	s := certspotterfake.New()
	t.Cleanup(s.Close)
	return s
}

// list asks for every issuance of domain and its subdomains.
func list(t *testing.T, s *certspotterfake.Server, domain string) []issuance {
	t.Helper()
	q := url.Values{"domain": {domain}, "include_subdomains": {"true"}, "expand": {"dns_names", "issuer", "cert_der"}}
	res, err := http.Get(s.URL + "/v1/issuances?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s (%v)", domain, res.Status, body, err)
	}
	var out []issuance
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return out
}

func mustAdd(t *testing.T, s *certspotterfake.Server, der []byte) string {
	t.Helper()
	id, err := s.Add(der)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// rawTBS is the TBSCertificate of a certificate ct-go can parse.
func rawTBS(t *testing.T, der []byte) []byte {
	t.Helper()
	c, err := ctx509.ParseCertificate(der)
	if ctx509.IsFatal(err) {
		t.Fatal(err)
	}
	return c.RawTBSCertificate
}

func TestPrecertAndFinalAreOneIssuance(t *testing.T) {
	for _, finalFirst := range []bool{false, true} {
		s := newServer(t)
		ca := testpki.NewIssuer(t, "Test CA", "Foo, Inc.")
		iss, err := ca.Issue(testpki.Leaf{CN: "www.example.com", DNSNames: []string{"www.example.com", "Example.COM."}, SCTs: 2})
		if err != nil {
			t.Fatal(err)
		}
		order := [][]byte{iss.Precert, iss.Final}
		if finalFirst {
			order = [][]byte{iss.Final, iss.Precert}
		}
		first := mustAdd(t, s, order[0])
		if second := mustAdd(t, s, order[1]); second != first {
			t.Fatalf("finalFirst=%v: ids %s and %s for one issuance", finalFirst, first, second)
		}
		if again := mustAdd(t, s, iss.Final); again != first {
			t.Errorf("adding the final certificate again gave id %s", again)
		}
		got := list(t, s, "example.com")
		if len(got) != 1 {
			t.Fatalf("finalFirst=%v: %d issuances, want 1", finalFirst, len(got))
		}
		is := got[0]
		// Independently of the fake: ct-go's RFC 6962 §3.2 TBS, from the
		// precertificate and from the final certificate.
		pre, err := ctx509.RemoveCTPoison(rawTBS(t, iss.Precert))
		if err != nil {
			t.Fatal(err)
		}
		fin, err := ctx509.RemoveSCTList(rawTBS(t, iss.Final))
		if err != nil {
			t.Fatal(err)
		}
		if is.TBSSHA256 != sum(pre) || is.TBSSHA256 != sum(fin) {
			t.Errorf("tbs_sha256 %s, want %s (precert) = %s (final)", is.TBSSHA256, sum(pre), sum(fin))
		}
		// cert_der is the certificate once known, whatever came first.
		if string(is.CertDER) != string(iss.Final) || is.CertSHA256 != sum(iss.Final) {
			t.Errorf("finalFirst=%v: cert_der is not the final certificate", finalFirst)
		}
		final, err := x509.ParseCertificate(iss.Final)
		if err != nil {
			t.Fatal(err)
		}
		if is.PubkeySHA256 == nil || *is.PubkeySHA256 != sum(final.RawSubjectPublicKeyInfo) {
			t.Errorf("pubkey_sha256 %v", is.PubkeySHA256)
		}
		if is.NotBefore == nil || *is.NotBefore != final.NotBefore.UTC().Format(time.RFC3339) ||
			is.NotAfter == nil || *is.NotAfter != final.NotAfter.UTC().Format(time.RFC3339) {
			t.Errorf("validity %v – %v, want %v – %v", is.NotBefore, is.NotAfter, final.NotBefore, final.NotAfter)
		}
		if want := []string{"www.example.com", "example.com"}; !slices.Equal(is.DNSNames, want) {
			t.Errorf("dns_names %q, want %q (CN and SANs, lower case, no trailing dot)", is.DNSNames, want)
		}
		if is.Issuer == nil || is.Issuer.Name != `C=US, O=Foo\, Inc., CN=Test CA` || is.Issuer.PubkeySHA256 == "" {
			t.Errorf("issuer %+v", is.Issuer)
		}
	}
}

// signer is a CA certificate parsed both ways, and its key.
type signer struct {
	der  []byte
	cert *x509.Certificate
	ct   *ctx509.Certificate
	key  *ecdsa.PrivateKey
}

// psc makes a precertificate signing certificate under ca (self-signed when
// ca is nil, so that it has no authority key identifier).
func psc(t *testing.T, ca *testpki.CA) signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(77),
		Subject:               pkix.Name{CommonName: "Test Precertificate Signing", Organization: []string{"Foo, Inc."}, Country: []string{"US"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 11129, 2, 4, 4}},
	}
	parent, parentKey := tmpl, any(key)
	if ca != nil {
		parent, parentKey = ca.Cert, ca.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ctx509.ParseCertificate(der)
	if ctx509.IsFatal(err) {
		t.Fatal(err)
	}
	return signer{der: der, cert: cert, ct: parsed, key: key}
}

var (
	oidPoison  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}
	oidSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
)

// leafTemplate is one issuance's certificate; extra is its poison or SCT
// list extension.
func leafTemplate(extra pkix.Extension) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:    big.NewInt(0x5eed),
		Subject:         pkix.Name{CommonName: "psc.example.com"},
		DNSNames:        []string{"psc.example.com"},
		NotBefore:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		NotAfter:        time.Date(2026, 4, 2, 3, 4, 5, 0, time.UTC),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{extra},
	}
}

func TestPrecertSignedByPSC(t *testing.T) {
	s := newServer(t)
	_, ca := testpki.NewChain(t, "Test Root", "Foo, Inc.", "Test CA", "Foo, Inc.")
	p := psc(t, ca)
	pscDER := p.der
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	precert, err := x509.CreateCertificate(rand.Reader, leafTemplate(pkix.Extension{Id: oidPoison, Critical: true, Value: asn1.NullBytes}),
		p.cert, leafKey.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	final, err := x509.CreateCertificate(rand.Reader, leafTemplate(pkix.Extension{Id: oidSCTList, Value: []byte{0x04, 0x02, 0x00, 0x00}}),
		ca.Cert, leafKey.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	// A certificate of the same CA, for its issuer object.
	other, err := ca.Issue(testpki.Leaf{DNSNames: []string{"other.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, other.Final)

	id, err := s.AddPrecertWithPSC(precert, pscDER)
	if err != nil {
		t.Fatal(err)
	}
	got := list(t, s, "psc.example.com")
	if len(got) != 1 || string(got[0].CertDER) != string(precert) {
		t.Fatalf("%d issuances, or cert_der is not the precertificate", len(got))
	}
	want, err := ctx509.BuildPrecertTBS(rawTBS(t, precert), p.ct)
	if err != nil {
		t.Fatal(err)
	}
	fin, err := ctx509.RemoveSCTList(rawTBS(t, final))
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(fin) {
		t.Fatal("the test's precertificate and final certificate do not make one issuance")
	}
	if got[0].TBSSHA256 != sum(want) {
		t.Errorf("tbs_sha256 %s, want ct-go's rebuilt TBS %s", got[0].TBSSHA256, sum(want))
	}
	caIssuer := list(t, s, "other.example.com")[0].Issuer
	if got[0].Issuer == nil || *got[0].Issuer != *caIssuer || caIssuer.Name != `C=US, O=Foo\, Inc., CN=Test CA` {
		t.Errorf("issuer %+v, want the CA's %+v, not the PSC", got[0].Issuer, caIssuer)
	}

	if finalID := mustAdd(t, s, final); finalID != id {
		t.Errorf("final certificate got id %s, want the precertificate's %s", finalID, id)
	}
	got = list(t, s, "psc.example.com")
	if len(got) != 1 || string(got[0].CertDER) != string(final) || got[0].CertSHA256 != sum(final) {
		t.Errorf("after the final certificate: %d issuances, cert_der final: %v", len(got), len(got) == 1 && string(got[0].CertDER) == string(final))
	}

	// Without the PSC the precertificate's TBS names the PSC: another
	// issuance, which is why AddPrecertWithPSC exists.
	if plain := mustAdd(t, s, precert); plain == id {
		t.Error("Add of the PSC-signed precertificate joined the issuance without knowing the PSC")
	}
	if _, err := s.AddPrecertWithPSC(precert, ca.DER); err == nil {
		t.Error("an issuer without the CT EKU was taken for a PSC")
	}
	if _, err := s.AddPrecertWithPSC(final, pscDER); err == nil {
		t.Error("a final certificate was taken for a precertificate")
	}
}

// The authority key identifier is replaced, added or dropped as ct-go's
// BuildPrecertTBS does it.
func TestPSCAuthorityKeyIdentifier(t *testing.T) {
	_, ca := testpki.NewChain(t, "Test Root", "Foo, Inc.", "Test CA", "Foo, Inc.")
	withAKI, withoutAKI := psc(t, ca), psc(t, nil)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	poison := pkix.Extension{Id: oidPoison, Critical: true, Value: asn1.NullBytes}
	signedByPSC, err := x509.CreateCertificate(rand.Reader, leafTemplate(poison), withAKI.cert, leafKey.Public(), withAKI.key)
	if err != nil {
		t.Fatal(err)
	}
	selfSigned, err := x509.CreateCertificate(rand.Reader, leafTemplate(poison), leafTemplate(poison), leafKey.Public(), leafKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		precert []byte
		psc     signer
	}{
		{"replaced", signedByPSC, withAKI},
		{"dropped", signedByPSC, withoutAKI},
		{"added", selfSigned, withAKI},
		{"neither", selfSigned, withoutAKI},
	} {
		s := newServer(t)
		if _, err := s.AddPrecertWithPSC(tc.precert, tc.psc.der); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want, err := ctx509.BuildPrecertTBS(rawTBS(t, tc.precert), tc.psc.ct)
		if err != nil {
			t.Fatal(err)
		}
		got := list(t, s, "psc.example.com")
		if len(got) != 1 {
			t.Fatalf("%s: %d issuances", tc.name, len(got))
		}
		if got[0].TBSSHA256 != sum(want) {
			t.Errorf("%s: tbs_sha256 %s, want %s", tc.name, got[0].TBSSHA256, sum(want))
		}
	}
}

func tlv(tag cbasn1.Tag, content ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		for _, c := range content {
			b.AddBytes(c)
		}
	})
	return b.BytesOrPanic()
}

func seq(parts ...[]byte) []byte { return tlv(cbasn1.SEQUENCE, parts...) }

func oid(arcs ...int) []byte {
	var b cryptobyte.Builder
	b.AddASN1ObjectIdentifier(arcs)
	return b.BytesOrPanic()
}

func ext(id []byte, critical bool, value []byte) []byte {
	parts := [][]byte{id}
	if critical {
		parts = append(parts, tlv(cbasn1.BOOLEAN, []byte{0xff}))
	}
	return seq(append(parts, tlv(cbasn1.OCTET_STRING, value))...)
}

func bmp(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r>>8), byte(r))
	}
	return tlv(cbasn1.Tag(30), b)
}

func dns(name string) []byte { return tlv(cbasn1.Tag(2).ContextSpecific(), []byte(name)) }

// odd builds a certificate crypto/x509 and ct-go refuse, with the given
// extensions after the two SAN extensions, and returns it and its TBS as
// RFC 6962 §3.2 wants it (without poison and SCT list), built apart.
func odd(notAfter []byte, last ...[]byte) (der, tbs []byte) {
	cn := oid(2, 5, 4, 3)
	extsFor := func(tail ...[]byte) []byte {
		exts := [][]byte{
			ext(oid(2, 5, 29, 17), false, seq(dns("WWW.Example.COM."), dns("b\xc3\xbccher.example.com"), dns("evil.example.com\x00.attacker.net"), dns("192.0.2.1"))),
			ext(oid(2, 5, 29, 19), true, []byte{0xde, 0xad}), // not a BasicConstraints
			ext(oid(2, 5, 29, 17), false, seq(dns("https://second.example.com/login"), tlv(cbasn1.Tag(6).ContextSpecific(), []byte("https://uri.example.com/%zz")))),
		}
		return tlv(cbasn1.Tag(3).Constructed().ContextSpecific(), seq(append(exts, tail...)...))
	}
	fields := func(extensions []byte) []byte {
		return seq(
			tlv(cbasn1.Tag(0).Constructed().ContextSpecific(), tlv(cbasn1.INTEGER, []byte{2})),
			tlv(cbasn1.INTEGER, []byte{0xff, 0x01}), // negative
			seq(oid(1, 2, 840, 10045, 4, 3, 2)),
			seq(tlv(cbasn1.SET, seq(cn, tlv(cbasn1.T61String, []byte("Odd CA, \xe9"))))),
			seq(tlv(cbasn1.GeneralizedTime, []byte("20260102030405+0100")), notAfter),
			seq(tlv(cbasn1.SET, seq(cn, bmp("CN.Example.com"))), tlv(cbasn1.SET, seq(cn, tlv(cbasn1.UTF8String, []byte("not a name"))))),
			seq(seq(oid(1, 2, 840, 10045, 2, 1), oid(1, 2, 840, 10045, 3, 1, 7)), tlv(cbasn1.BIT_STRING, []byte{0, 4, 1})),
			extensions,
		)
	}
	tbsWith := fields(extsFor(last...))
	der = seq(tbsWith, seq(oid(1, 2, 840, 113549, 1, 1, 11)), tlv(cbasn1.BIT_STRING, []byte{0, 1}))
	return der, fields(extsFor())
}

func TestMalformedCertificatesAccepted(t *testing.T) {
	s := newServer(t)
	notAfter := tlv(cbasn1.UTCTime, []byte("270102030405Z"))
	precert, want := odd(notAfter, ext(oid(1, 3, 6, 1, 4, 1, 11129, 2, 4, 3), true, []byte{0x05, 0x00}))
	final, want2 := odd(notAfter, ext(oid(1, 3, 6, 1, 4, 1, 11129, 2, 4, 2), false, []byte{0x04, 0x00}))
	for _, der := range [][]byte{precert, final} {
		if _, err := ctx509.ParseCertificate(der); !ctx509.IsFatal(err) {
			t.Fatalf("ct-go parses the odd certificate (%v): the test proves nothing", err)
		}
	}
	id := mustAdd(t, s, precert)
	if again := mustAdd(t, s, final); again != id {
		t.Errorf("odd final certificate got id %s, want %s", again, id)
	}
	got := list(t, s, "example.com")
	if len(got) != 1 {
		t.Fatalf("%d issuances, want 1", len(got))
	}
	is := got[0]
	if string(want) != string(want2) || is.TBSSHA256 != sum(want) {
		t.Errorf("tbs_sha256 %s, want %s", is.TBSSHA256, sum(want))
	}
	if string(is.CertDER) != string(final) {
		t.Error("cert_der is not the final certificate")
	}
	wantNames := []string{
		"www.example.com",
		// Non-ASCII bytes are read as UTF-8 and as Latin-1, each in Punycode.
		"xn--bcher-kva.example.com", "xn--bcher-lka6y.example.com",
		// Before the NUL, and the whole name with its NUL label.
		"evil.example.com", "evil.example.<unparsable>.attacker.net",
		// Without https://, before the slash and whole.
		"second.example.com", "second.example.com/login",
		// The BMPString CN; the UTF8String one has a space.
		"cn.example.com",
	}
	if !slices.Equal(is.DNSNames, wantNames) {
		t.Errorf("dns_names\n%q, want\n%q", is.DNSNames, wantNames)
	}
	if is.NotBefore == nil || *is.NotBefore != "2026-01-02T02:04:05Z" || is.NotAfter == nil || *is.NotAfter != "2027-01-02T03:04:05Z" {
		t.Errorf("validity %v – %v", is.NotBefore, is.NotAfter)
	}
	if is.Issuer == nil || is.Issuer.Name != `CN=Odd CA\, é` {
		t.Errorf("issuer %+v", is.Issuer)
	}
	for _, d := range []string{"xn--bcher-kva.example.com", "evil.example.com", "second.example.com"} {
		if got := list(t, s, d); len(got) != 1 {
			t.Errorf("domain=%s: %d issuances", d, len(got))
		}
	}

	// A not_after that does not read is left out.
	broken, _ := odd(tlv(cbasn1.UTCTime, []byte("soon")))
	mustAdd(t, s, broken)
	var raw []map[string]any
	res, err := http.Get(s.URL + "/v1/issuances?domain=cn.example.com")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&raw); err != nil || len(raw) != 2 {
		t.Fatalf("%d issuances (%v)", len(raw), err)
	}
	if _, ok := raw[1]["not_after"]; ok || raw[1]["not_before"] != "2026-01-02T02:04:05Z" {
		t.Errorf("unreadable not_after: %v", raw[1])
	}

	if _, err := s.Add([]byte("not a certificate")); err == nil {
		t.Error("garbage accepted")
	}
}

// status asks for domain's issuances and returns the status.
func status(t *testing.T, s *certspotterfake.Server, domain string) int {
	t.Helper()
	res, err := http.Get(s.URL + "/v1/issuances?" + url.Values{"domain": {domain}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// A failure aimed at one domain leaves the others alone; Fail's, at any.
func TestFailForOneDomain(t *testing.T) {
	s := newServer(t)
	s.FailFor("big.example", 100, http.StatusBadGateway, "", "text/html", "<html>502</html>")
	for range 3 {
		if got := status(t, s, "big.example"); got != http.StatusBadGateway {
			t.Errorf("big.example: %d, want 502", got)
		}
		if got := status(t, s, "small.example"); got != http.StatusOK {
			t.Errorf("small.example took big.example's failure: %d", got)
		}
	}
	s.Fail(1, http.StatusTooManyRequests, "1", "application/json", `{"code":"rate_limited"}`)
	if got := status(t, s, "small.example"); got != http.StatusTooManyRequests {
		t.Errorf("Fail is for any domain: %d, want 429", got)
	}
	s.FailFor("big.example", 0, 0, "", "", "")
	if got := status(t, s, "big.example"); got != http.StatusOK {
		t.Errorf("after dropping the failure: %d", got)
	}
}

// A delay aimed at one domain: its queries hang, the others do not, and an
// abandoned query is recorded without a status.
func TestDelayForOneDomain(t *testing.T) {
	s := newServer(t)
	s.SetDelayFor("slow.example", time.Hour)
	client := &http.Client{Timeout: 50 * time.Millisecond}
	if res, err := client.Get(s.URL + "/v1/issuances?domain=slow.example"); err == nil {
		res.Body.Close()
		t.Fatalf("slow.example answered %s within 50ms", res.Status)
	}
	client.Timeout = 10 * time.Second
	res, err := client.Get(s.URL + "/v1/issuances?domain=fast.example")
	if err != nil {
		t.Fatalf("fast.example was delayed too: %v", err)
	}
	res.Body.Close()
	s.SetDelayFor("slow.example", 0)
	if got := status(t, s, "slow.example"); got != http.StatusOK {
		t.Errorf("after removing the delay: %d", got)
	}
	// The handler records it once it sees the client gone.
	testenv.Eventually(t, 10*time.Second, "the abandoned query recorded without a status", func() bool {
		for _, r := range s.Requests() {
			if r.Domain == "slow.example" && r.Status == 0 {
				return true
			}
		}
		return false
	})
}
