package cert

// Fuzz targets for the certificate reader: any DER, from a log or crt.sh.
// Each is seeded with real-shaped inputs (fuzzpki). Run them with .ci/fuzz.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/ctsource/internal/fuzzpki"
)

// FuzzParseCertificate: Read, ReadPrecertEntry and StripTBS
// never panic; StripTBS is idempotent, and for a certificate the strict
// parser reads its result is what TBSSHA256 and Serial were taken from.
func FuzzParseCertificate(f *testing.F) {
	p := fuzzpki.New(f)
	for _, der := range p.Certificates() {
		f.Add(der)
	}
	for _, is := range p.Issuances {
		f.Add(is.PreTBS)
		f.Add(is.LogTBS)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		// The input as a TBSCertificate.
		if stripped, serial, err := StripTBS(der); err == nil {
			checkStripIdempotent(t, stripped, serial)
		}
		if c, err := ReadPrecertEntry(der, der); err == nil && c == nil {
			t.Fatal("readPrecertEntry: no certificate and no error")
		}
		// The input as a certificate.
		c, err := Read(der)
		if err != nil {
			if c != nil {
				t.Fatal("ReadCertificate returned a certificate with an error")
			}
			return
		}
		cert, err := ctx509.ParseCertificate(der)
		if cert == nil || ctx509.IsFatal(err) {
			if c.ParseError == "" {
				t.Fatalf("the strict parser refuses the certificate (%v), ParseError is empty", err)
			}
			return
		}
		if c.ParseError != "" {
			t.Fatalf("the strict parser reads the certificate, ParseError is %q", c.ParseError)
		}
		stripped, serial, err := StripTBS(cert.RawTBSCertificate)
		if err != nil {
			// A structure only Go's asn1 finds (it reads past an explicit
			// tag's end): the identity is the strict parser's (fromStrict).
			return
		}
		if sha256.Sum256(stripped) != c.TBSSHA256 || hex.EncodeToString(serial) != c.Serial {
			t.Fatalf("TBSSHA256/Serial are not those of the stripped TBSCertificate")
		}
		checkStripIdempotent(t, stripped, serial)
	})
}

func checkStripIdempotent(t *testing.T, stripped, serial []byte) {
	t.Helper()
	again, serial2, err := StripTBS(stripped)
	if err != nil {
		t.Fatalf("StripTBS of its own output fails: %v\nstripped %x", err, stripped)
	}
	if !bytes.Equal(again, stripped) || !bytes.Equal(serial2, serial) {
		t.Fatalf("StripTBS is not idempotent:\nonce  %x\ntwice %x", stripped, again)
	}
}
