package ctlog

import (
	"net/netip"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
)

// rawEntry is a log entry as fetched, before any X.509 parsing.
type rawEntry struct {
	index    int64
	leafHash [32]byte // RFC 6962 logs: SHA-256(0x00 || leaf_input)
	precert  bool
	// der is the certificate, or for a precertificate the TBSCertificate
	// the log holds (poison removed, final issuer).
	der []byte
	// The full precertificate of a precert entry, for cert_sha256: pre
	// when the log gives it as is (static-ct-api), else extra, the RFC 6962
	// extra_data still in base64, decoded only for an entry that matches.
	pre, extra []byte
	err        error // the entry could not be decoded
}

func (e *rawEntry) hasPrecertificate() bool { return e.pre != nil || e.extra != nil }

// precertificate returns the full precertificate, nil when the log gives none.
func (e *rawEntry) precertificate() ([]byte, error) {
	if e.pre != nil || e.extra == nil {
		return e.pre, nil
	}
	return precertificateOf(e.extra)
}

// strictIdentifiers reads the identifiers with the strict parser, for an
// entry the walk cannot read: the walk must never be stricter than it.
func strictIdentifiers(der []byte, tbs bool, id *cert.Identifiers) bool {
	var p *ctx509.Certificate
	var err error
	if tbs {
		p, err = ctx509.ParseTBSCertificate(der)
	} else {
		p, err = ctx509.ParseCertificate(der)
	}
	if p == nil || ctx509.IsFatal(err) {
		return false
	}
	for _, atv := range p.Subject.Names {
		if cn, ok := atv.Value.(string); ok && atv.Type.String() == "2.5.4.3" {
			id.Names = append(id.Names, cn)
		}
	}
	id.Names = append(id.Names, p.DNSNames...)
	for _, ip := range p.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			id.IPs = append(id.IPs, a.Unmap())
		}
	}
	return true
}

// readEntry reads the certificate of an entry. A precert entry is read
// from the TBSCertificate the tree proves, whatever its precertificate (in
// extra_data, which nothing proves) holds.
func readEntry(e *rawEntry) (*cert.Certificate, error) {
	if !e.precert {
		return cert.Read(e.der)
	}
	pre, err := e.precertificate()
	if err != nil {
		pre = nil
	}
	return cert.ReadPrecertEntry(e.der, pre)
}
