package ctsource

import (
	"errors"
	"net/netip"
	"unicode/utf16"
	"unsafe"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Identifiers are the names in a certificate that watches match: DNS SANs
// and the subject CN (not normalized), and IP address SANs. The names share
// memory with the DER they were read from (no copy per entry, on the hot
// path): they are valid while it is, and must be copied to be kept.
type Identifiers struct {
	Names []string
	IPs   []netip.Addr
}

// Reset empties the identifiers, keeping their storage for reuse.
func (id *Identifiers) Reset() {
	id.Names, id.IPs = id.Names[:0], id.IPs[:0]
}

var (
	oidCommonName = []byte{0x55, 0x04, 0x03} // 2.5.4.3
	oidSAN        = []byte{0x55, 0x1d, 0x11} // 2.5.29.17
	errMalformed  = errors.New("malformed certificate")
)

// ExtractIdentifiers reads the identifiers of a DER certificate (tbs false)
// or TBSCertificate (tbs true) by walking only the subject and the SAN
// extension, without a full X.509 parse: most log entries concern no watch,
// and a full parse of each would cost several times the whole match. It
// appends to id, and fails on DER it cannot walk.
func ExtractIdentifiers(der []byte, tbs bool, id *Identifiers) error {
	in := cryptobyte.String(der)
	var body cryptobyte.String
	if !tbs {
		var cert cryptobyte.String
		if !in.ReadASN1(&cert, cbasn1.SEQUENCE) {
			return errMalformed
		}
		in = cert
	}
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) {
		return errMalformed
	}
	var subject cryptobyte.String
	if !body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!body.SkipASN1(cbasn1.INTEGER) || // serial
		!body.SkipASN1(cbasn1.SEQUENCE) || // signature algorithm
		!body.SkipASN1(cbasn1.SEQUENCE) || // issuer
		!body.SkipASN1(cbasn1.SEQUENCE) || // validity
		!body.ReadASN1(&subject, cbasn1.SEQUENCE) ||
		!body.SkipASN1(cbasn1.SEQUENCE) || // subject public key
		!body.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific()) ||
		!body.SkipOptionalASN1(cbasn1.Tag(2).ContextSpecific()) {
		return errMalformed
	}
	if err := commonNames(subject, id); err != nil {
		return err
	}
	var exts cryptobyte.String
	var present bool
	if !body.ReadOptionalASN1(&exts, &present, cbasn1.Tag(3).Constructed().ContextSpecific()) {
		return errMalformed
	}
	if !present {
		return nil
	}
	if !exts.ReadASN1(&exts, cbasn1.SEQUENCE) {
		return errMalformed
	}
	for !exts.Empty() {
		var ext, oid, value cryptobyte.String
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
			return errMalformed
		}
		if string(oid) != string(oidSAN) {
			continue
		}
		if !ext.SkipOptionalASN1(cbasn1.BOOLEAN) || !ext.ReadASN1(&value, cbasn1.OCTET_STRING) {
			return errMalformed
		}
		// Every SAN extension, not the first: a parser that keeps the last
		// of duplicates would otherwise see names this walk never matched.
		if err := subjectAltNames(value, id); err != nil {
			return err
		}
	}
	return nil
}

func commonNames(subject cryptobyte.String, id *Identifiers) error {
	for !subject.Empty() {
		var rdn cryptobyte.String
		if !subject.ReadASN1(&rdn, cbasn1.SET) {
			return errMalformed
		}
		for !rdn.Empty() {
			var atv, oid, value cryptobyte.String
			var tag cbasn1.Tag
			if !rdn.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
				!atv.ReadAnyASN1(&value, &tag) {
				return errMalformed
			}
			if string(oid) != string(oidCommonName) {
				continue
			}
			if tag == cbasn1.Tag(30) { // BMPString: UTF-16BE
				if len(value)%2 != 0 {
					return errMalformed
				}
				u := make([]uint16, len(value)/2)
				for i := range u {
					u[i] = uint16(value[2*i])<<8 | uint16(value[2*i+1])
				}
				id.Names = append(id.Names, string(utf16.Decode(u)))
				continue
			}
			id.Names = append(id.Names, alias(value))
		}
	}
	return nil
}

func subjectAltNames(value cryptobyte.String, id *Identifiers) error {
	var names cryptobyte.String
	if !value.ReadASN1(&names, cbasn1.SEQUENCE) || !value.Empty() {
		return errMalformed
	}
	for !names.Empty() {
		var name cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&name, &tag) {
			return errMalformed
		}
		// By tag number only, whatever the class: Go's x509 parsers (and so
		// the full parse, and other monitors) read a GeneralName that way, so
		// a certificate with a mis-tagged SAN must not slip past the match.
		switch tag & 0x1f {
		case 2: // dNSName
			id.Names = append(id.Names, alias(name))
		case 7: // iPAddress
			if a, ok := netip.AddrFromSlice(name); ok {
				id.IPs = append(id.IPs, a.Unmap())
			}
		}
	}
	return nil
}

// alias views bytes as a string without copying them.
func alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
