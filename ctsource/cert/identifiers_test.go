package cert

import (
	"crypto/x509"
	"net"
	"slices"
	"testing"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// The lean walk must find what the full parse finds.
func TestExtractIdentifiersAgreesWithFullParse(t *testing.T) {
	ca := newCA(t)
	for _, leaf := range []testpki.Leaf{
		{CN: "www.example.com", DNSNames: []string{"www.example.com", "example.com", "*.example.com"}, SCTs: 2},
		{DNSNames: []string{"no-cn.example.org"}},
		{CN: "only-cn.example.net"},
		{CN: "192.0.2.1", IPs: []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::7")}},
	} {
		iss, err := ca.Issue(leaf)
		if err != nil {
			t.Fatal(err)
		}
		for _, der := range [][]byte{iss.Precert, iss.Final} {
			full, err := Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			wantNames, wantIPs := full.DNSNames, full.IPAddresses
			if full.SubjectCN != "" {
				wantNames = append([]string{full.SubjectCN}, wantNames...)
			}
			var id Identifiers
			if err := ExtractIdentifiers(der, false, &id); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(id.Names, wantNames) || !slices.Equal(id.IPs, wantIPs) {
				t.Errorf("certificate: got %q %v, want %q %v", id.Names, id.IPs, wantNames, wantIPs)
			}
			// The TBSCertificate alone, as a precert_entry carries it.
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			id.Reset()
			if err := ExtractIdentifiers(cert.RawTBSCertificate, true, &id); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(id.Names, wantNames) || !slices.Equal(id.IPs, wantIPs) {
				t.Errorf("tbs: got %q %v, want %q %v", id.Names, id.IPs, wantNames, wantIPs)
			}
		}
	}
}

func TestExtractIdentifiersMalformed(t *testing.T) {
	ca := newCA(t)
	iss, err := ca.Issue(testpki.Leaf{CN: "x.example.com", DNSNames: []string{"x.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	// Every truncation is an error, never a panic or a silent partial read
	// of the structure (a cut inside the last SAN loses that SAN only if
	// the lengths still close, which DER's nested lengths prevent).
	var id Identifiers
	for i := 0; i < len(iss.Final); i++ {
		id.Reset()
		if err := ExtractIdentifiers(iss.Final[:i], false, &id); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", i, len(iss.Final))
		}
	}
	for _, garbage := range [][]byte{nil, {0x30}, {0x30, 0x00}, []byte("not DER at all")} {
		if err := ExtractIdentifiers(garbage, false, &id); err == nil {
			t.Errorf("%q: no error", garbage)
		}
	}
}

func TestExtractIdentifiersBMPString(t *testing.T) {
	// A CN as BMPString (UTF-16BE), which crypto/x509 does not write.
	if got := subjectCNs(bmpSubject("ä.example")); !slices.Equal(got, []string{"ä.example"}) {
		t.Fatalf("names = %q", got)
	}
	// An odd-length BMPString: its whole code units, not nothing.
	if got := subjectCNs([]byte{0x30, 0x0d, 0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x1e, 0x02, 0x00, 'x'}); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("odd-length BMPString: names = %q", got)
	}
}

func subjectCNs(name []byte) []string {
	var id Identifiers
	appendIdentifiers(&tbsFields{subject: name}, &id)
	return id.Names
}

func bmpSubject(s string) []byte {
	var v []byte
	for _, r := range s {
		v = append(v, byte(r>>8), byte(r))
	}
	atv := append([]byte{0x06, 0x03, 0x55, 0x04, 0x03, 0x1e, byte(len(v))}, v...)
	seq := append([]byte{0x30, byte(len(atv))}, atv...)
	set := append([]byte{0x31, byte(len(seq))}, seq...)
	return append([]byte{0x30, byte(len(set))}, set...)
}

var sinkID Identifiers

func BenchmarkExtractIdentifiers(b *testing.B) {
	iss, err := testpki.NewIssuer(b, "R11", "Let's Encrypt").Issue(testpki.Leaf{CN: "www.example.com", DNSNames: []string{"www.example.com", "example.com", "api.example.com"}, SCTs: 2})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("lean", func(b *testing.B) {
		for b.Loop() {
			sinkID.Reset()
			if err := ExtractIdentifiers(iss.Final, false, &sinkID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("full-parse", func(b *testing.B) {
		for b.Loop() {
			if _, err := ctx509.ParseCertificate(iss.Final); err != nil {
				b.Fatal(err)
			}
		}
	})
}
