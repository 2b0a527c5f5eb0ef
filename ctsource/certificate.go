// Package ctsource holds the places certificates come from (crt.sh, and later
// CT logs and the Cert Spotter API) and the normalized Certificate they all
// produce.
package ctsource

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	ctx509 "github.com/google/certificate-transparency-go/x509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/ct-exporter/ct_exporter/watch"
)

// Certificate is one certificate or precertificate, reduced to what matching,
// verdicts and metrics need. Sources produce it; nothing downstream parses DER.
type Certificate struct {
	// TBSSHA256 identifies the issuance: the SHA-256 of the TBSCertificate
	// without the CT poison and SCT-list extensions, shared by a
	// precertificate and its final certificate (Cert Spotter's tbs_sha256).
	TBSSHA256   [32]byte
	CertSHA256  [32]byte
	SPKISHA256  [32]byte
	Serial      string // lower-case hex of the DER INTEGER's content, as crt.sh shows it
	Issuer      watch.Issuer
	SubjectCN   string
	DNSNames    []string
	IPAddresses []netip.Addr
	NotBefore   time.Time
	NotAfter    time.Time
	Precert     bool
	// EmbeddedSCTs is the number of SCTs in a final certificate; -1 for a
	// precertificate, which cannot embed any.
	EmbeddedSCTs int
}

// appendNormalized appends the names watches are matched against: each
// DNS name and the subject CN (when there is one), normalized.
func appendNormalized(dst, dnsNames []string, cn string) []string {
	for _, n := range dnsNames {
		dst = append(dst, watch.NormalizeName(n))
	}
	if cn != "" {
		dst = append(dst, watch.NormalizeName(cn))
	}
	return dst
}

// Candidate returns what a watch's verdict is based on.
func (c *Certificate) Candidate() watch.Candidate {
	return watch.Candidate{TBSSHA256: c.TBSSHA256, SPKISHA256: c.SPKISHA256, Issuer: c.Issuer}
}

var (
	oidCTPoison  = []byte{0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03} // 1.3.6.1.4.1.11129.2.4.3
	oidCTSCTList = []byte{0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02} // 1.3.6.1.4.1.11129.2.4.2
)

// ParseCertificate parses a DER certificate or precertificate. Errors the
// x509 parser reports as non-fatal (common in real CT data) are tolerated.
func ParseCertificate(der []byte) (*Certificate, error) {
	cert, err := ctx509.ParseCertificate(der)
	if cert == nil || (err != nil && ctx509.IsFatal(err)) {
		if err == nil {
			err = errors.New("no certificate")
		}
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	c, err := newCertificate(cert, cert.RawTBSCertificate, der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	c.Precert = cert.IsPrecertificate()
	c.EmbeddedSCTs = len(cert.SCTList.SCTList)
	if c.Precert {
		c.EmbeddedSCTs = -1
	}
	return c, nil
}

// certificateFromTBS reads a precertificate entry: the TBSCertificate a log
// holds (poison removed, and the final issuer even when a precertificate
// signing certificate signed the precertificate), and the precertificate
// itself for cert_sha256 (nil when the log does not give it).
func certificateFromTBS(tbs, precert []byte) (*Certificate, error) {
	cert, err := ctx509.ParseTBSCertificate(tbs)
	if cert == nil || (err != nil && ctx509.IsFatal(err)) {
		if err == nil {
			err = errors.New("no TBSCertificate")
		}
		return nil, fmt.Errorf("parse precertificate entry: %w", err)
	}
	if precert == nil {
		precert = tbs
	}
	c, err := newCertificate(cert, tbs, precert)
	if err != nil {
		return nil, fmt.Errorf("parse precertificate entry: %w", err)
	}
	c.Precert, c.EmbeddedSCTs = true, -1
	return c, nil
}

// newCertificate fills in what a parsed certificate or TBSCertificate says;
// der is what cert_sha256 hashes.
func newCertificate(cert *ctx509.Certificate, tbs, der []byte) (*Certificate, error) {
	stripped, serial, err := StripTBS(tbs)
	if err != nil {
		return nil, err
	}
	c := &Certificate{
		TBSSHA256:  sha256.Sum256(stripped),
		CertSHA256: sha256.Sum256(der),
		SPKISHA256: sha256.Sum256(cert.RawSubjectPublicKeyInfo),
		Serial:     hex.EncodeToString(serial),
		Issuer:     issuerOf(cert),
		SubjectCN:  cert.Subject.CommonName,
		DNSNames:   cert.DNSNames,
		NotBefore:  cert.NotBefore.UTC(),
		NotAfter:   cert.NotAfter.UTC(),
	}
	for _, ip := range cert.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			c.IPAddresses = append(c.IPAddresses, a.Unmap())
		}
	}
	return c, nil
}

func issuerOf(cert *ctx509.Certificate) watch.Issuer {
	i := watch.Issuer{CN: cert.Issuer.CommonName, DN: FormatDN(cert.RawIssuer)}
	if len(cert.Issuer.Organization) > 0 {
		i.O = cert.Issuer.Organization[0]
	}
	return i
}

// StripTBS returns the TBSCertificate without the CT poison and SCT-list
// extensions, and the serial number's content bytes. It splices the original
// bytes rather than re-encoding a parsed structure, so the result is exactly
// what the issuing CA signed minus those extensions, whatever its encoding
// quirks.
func StripTBS(tbs []byte) (stripped, serial []byte, err error) {
	in := cryptobyte.String(tbs)
	var body cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, nil, errors.New("tbs: not a single SEQUENCE")
	}
	var b cryptobyte.Builder
	var bodyErr error
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for i := 0; !body.Empty(); i++ {
			var elem cryptobyte.String
			var tag cbasn1.Tag
			if !body.ReadAnyASN1Element(&elem, &tag) {
				bodyErr = errors.New("tbs: malformed element")
				return
			}
			switch {
			case tag == cbasn1.INTEGER && serial == nil:
				content := elem
				if !content.ReadASN1(&content, cbasn1.INTEGER) {
					bodyErr = errors.New("tbs: malformed serial number")
					return
				}
				serial = content
				b.AddBytes(elem)
			case tag == cbasn1.Tag(3).Constructed().ContextSpecific():
				exts, err := stripExtensions(elem)
				if err != nil {
					bodyErr = err
					return
				}
				if exts != nil {
					b.AddASN1(tag, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(exts) })
					})
				}
			default:
				b.AddBytes(elem)
			}
		}
	})
	if bodyErr != nil {
		return nil, nil, bodyErr
	}
	if serial == nil {
		return nil, nil, errors.New("tbs: no serial number")
	}
	out, err := b.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("tbs: %w", err)
	}
	return out, serial, nil
}

// stripExtensions returns the concatenated Extension elements of an [3]
// extensions field minus the CT ones, or nil when none remain.
func stripExtensions(field cryptobyte.String) ([]byte, error) {
	var wrapper, seq cryptobyte.String
	if !field.ReadASN1(&wrapper, cbasn1.Tag(3).Constructed().ContextSpecific()) ||
		!wrapper.ReadASN1(&seq, cbasn1.SEQUENCE) || !wrapper.Empty() {
		return nil, errors.New("tbs: malformed extensions")
	}
	var kept []byte
	for !seq.Empty() {
		var ext, oid cryptobyte.String
		if !seq.ReadASN1Element(&ext, cbasn1.SEQUENCE) {
			return nil, errors.New("tbs: malformed extension")
		}
		inner := ext
		if !inner.ReadASN1(&inner, cbasn1.SEQUENCE) || !inner.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
			return nil, errors.New("tbs: malformed extension")
		}
		if string(oid) == string(oidCTPoison) || string(oid) == string(oidCTSCTList) {
			continue
		}
		kept = append(kept, ext...)
	}
	return kept, nil
}
