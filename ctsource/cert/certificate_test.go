package cert

import (
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"testing"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

func newCA(t *testing.T) *testpki.CA { return testpki.NewIssuer(t, "R11", "Let's Encrypt") }

func TestPrecertAndFinalShareTBS(t *testing.T) {
	ca := newCA(t)
	iss, err := ca.Issue(testpki.Leaf{
		CN:       "www.Example.com",
		DNSNames: []string{"www.Example.com", "example.com."},
		IPs:      []net.IP{net.ParseIP("192.0.2.7")},
		Serial:   big.NewInt(0x00c0ffee),
		SCTs:     3,
	})
	if err != nil {
		t.Fatal(err)
	}
	pre, err := Parse(iss.Precert)
	if err != nil {
		t.Fatal(err)
	}
	final, err := Parse(iss.Final)
	if err != nil {
		t.Fatal(err)
	}
	if pre.TBSSHA256 != final.TBSSHA256 {
		t.Fatalf("tbs_sha256 differs: precert %x, final %x", pre.TBSSHA256, final.TBSSHA256)
	}
	if pre.CertSHA256 == final.CertSHA256 {
		t.Fatal("cert_sha256 of precert and final are equal")
	}
	if want := sha256.Sum256(iss.Final); final.CertSHA256 != want {
		t.Fatalf("cert_sha256 = %x, want %x", final.CertSHA256, want)
	}
	if !pre.Precert || final.Precert {
		t.Fatalf("precert flags: pre %v final %v", pre.Precert, final.Precert)
	}
	if pre.EmbeddedSCTs != -1 || final.EmbeddedSCTs != 3 {
		t.Fatalf("SCTs: pre %d final %d, want -1 and 3", pre.EmbeddedSCTs, final.EmbeddedSCTs)
	}
	if final.SPKISHA256 != testpki.SPKISHA256(iss.Key.Public()) {
		t.Fatal("SPKI hash differs from the key's")
	}
	if final.Serial != "00c0ffee" { // DER content bytes, as crt.sh shows them
		t.Fatalf("serial = %q", final.Serial)
	}
	if final.Issuer.CN != "R11" || final.Issuer.O != "Let's Encrypt" || final.Issuer.DN != "CN=R11, O=Let's Encrypt, C=US" {
		t.Fatalf("issuer = %+v", final.Issuer)
	}
	names, ips := AppendNormalized(nil, final.DNSNames, final.SubjectCN), final.IPAddresses
	if want := []string{"www.example.com", "example.com", "www.example.com"}; !slices.Equal(names, want) {
		t.Fatalf("names = %q, want %q", names, want)
	}
	if len(ips) != 1 || ips[0] != netip.MustParseAddr("192.0.2.7") {
		t.Fatalf("ips = %v", ips)
	}
}

// The splice must agree with certificate-transparency-go's re-encoding
// helpers on well-formed DER, which is what logs use to build precert entries.
func TestStripTBSAgreesWithCTGo(t *testing.T) {
	ca := newCA(t)
	iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{"a.example.org"}, SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		der    []byte
		remove func([]byte) ([]byte, error)
	}{
		"precert": {iss.Precert, ctx509.RemoveCTPoison},
		"final":   {iss.Final, ctx509.RemoveSCTList},
	} {
		cert, err := ctx509.ParseCertificate(tc.der)
		if err != nil {
			t.Fatal(err)
		}
		want, err := tc.remove(cert.RawTBSCertificate)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := StripTBS(cert.RawTBSCertificate)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != hex.EncodeToString(want) {
			t.Errorf("%s: StripTBS differs from certificate-transparency-go", name)
		}
		// Stripping is idempotent: a log's precert entry has no poison left.
		again, _, err := StripTBS(got)
		if err != nil || string(again) != string(got) {
			t.Errorf("%s: StripTBS is not idempotent: %v", name, err)
		}
	}
}

func TestParseCertificateRejectsGarbage(t *testing.T) {
	for _, der := range [][]byte{nil, []byte("not a certificate"), {0x30, 0x03, 0x02, 0x01}} {
		if _, err := Parse(der); err == nil {
			t.Errorf("ParseCertificate(%x) succeeded", der)
		}
	}
	if _, _, err := StripTBS([]byte{0x30, 0x00}); err == nil {
		t.Error("StripTBS accepted a TBS without serial")
	}
}

func TestFormatDNEscapes(t *testing.T) {
	ca, err := testpki.NewRoot(`Evil, "CA" <x>`, "O+Co")
	if err != nil {
		t.Fatal(err)
	}
	got := FormatDN(ca.Cert.RawIssuer)
	want := `CN=Evil\, \"CA\" \<x\>, O=O\+Co, C=US`
	if got != want {
		t.Fatalf("FormatDN = %s, want %s", got, want)
	}
	if got := FormatDN([]byte{1, 2}); got != "#0102" {
		t.Fatalf("FormatDN(garbage) = %s", got)
	}
}
