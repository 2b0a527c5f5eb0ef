package cert

import (
	"bytes"
	"errors"
	"net/netip"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Identifiers are the names in a certificate that watches match: subject
// CNs (every one, multi-valued RDNs included) and the dNSNames of every SAN
// extension (not normalized), and the iPAddresses. Names read as they are
// encoded share memory with the DER they were read from (no copy per
// entry, on the hot path): they are valid while it is, and must be copied
// to be kept.
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
	errMalformed  = errors.New("malformed certificate")
)

// ExtractIdentifiers reads the identifiers of a DER certificate (tbs false)
// or TBSCertificate (tbs true) by walking only the subject and the
// extensions, without a full X.509 parse: most log entries concern no
// watch, and a full parse of each would cost several times the whole
// match. It appends to id. It is tolerant where parsers are strict (one
// malformed extension, RDN or name hides nothing else) and fails only when
// it cannot find the TBSCertificate's structure.
func ExtractIdentifiers(der []byte, tbs bool, id *Identifiers) error {
	_, f, err := readTBS(der, tbs)
	if err != nil {
		return errMalformed
	}
	appendIdentifiers(&f, id)
	if f.goReading != nil {
		var g tbsFields
		if readFields(f.goReading, &g) {
			appendIdentifiers(&g, id)
		}
	}
	return nil
}

func appendIdentifiers(f *tbsFields, id *Identifiers) {
	eachAttribute(f.subject, func(oid []byte, tag byte, v []byte) {
		if bytes.Equal(oid, oidCommonName) {
			id.Names = appendString(id.Names, tag, v)
		}
	})
	exts := f.extensions
	for {
		oid, rest, _, ok := nextExtensionOID(&exts)
		if !ok {
			return
		}
		// Every SAN extension, not the first: a parser that keeps the last
		// of duplicates would otherwise see names this walk never matched.
		if bytes.Equal(oid, oidSAN) {
			if _, value, ok := extensionValue(rest); ok {
				subjectAltNames(value, id)
			}
		}
	}
}

// eachAttribute calls f with each attribute of a Name element (RDNs in
// order, multi-valued ones attribute by attribute), as far as the Name can
// be read: its OID, and its value's identifier octet and content.
func eachAttribute(name []byte, f func(oid []byte, id byte, value []byte)) {
	in := name
	sid, rdns, ok := next(&in)
	if !ok || !idIs(sid, idSequence) {
		return
	}
	for len(rdns) > 0 {
		_, atvs, ok := next(&rdns)
		if !ok {
			return
		}
		for len(atvs) > 0 {
			_, atv, ok := next(&atvs)
			if !ok {
				break
			}
			oid, o, ok := next(&atv)
			if !ok || !idIs(oid, idOID) {
				continue
			}
			if id, v, ok := next(&atv); ok {
				f(o, id, v)
			}
		}
	}
}

// appendString appends the text of a directory string attribute value (id
// its identifier octet): UTF8String as its bytes, BMPString and
// UniversalString decoded, and the other types (ASCII-like ones,
// TeletexString, unknown ones) as their bytes and, when they hold non-ASCII
// bytes, also as Latin-1: that is what CAs meant by TeletexString, and how
// lenient parsers read a PrintableString that breaks its rules.
func appendString(dst []string, id byte, v []byte) []string {
	switch {
	case idIs(id, tagUTF8String):
		return append(dst, alias(v))
	case idIs(id, tagBMPString):
		u := make([]uint16, len(v)/2)
		for i := range u {
			u[i] = uint16(v[2*i])<<8 | uint16(v[2*i+1])
		}
		return append(dst, string(utf16.Decode(u)))
	case idIs(id, tagUniversalString):
		r := make([]rune, len(v)/4)
		for i := range r {
			c := v[4*i:]
			r[i] = rune(uint32(c[0])<<24 | uint32(c[1])<<16 | uint32(c[2])<<8 | uint32(c[3]))
			if !utf8.ValidRune(r[i]) {
				r[i] = utf8.RuneError
			}
		}
		return append(dst, string(r))
	}
	dst = append(dst, alias(v))
	if !isASCII(v) {
		r := make([]rune, len(v))
		for i, c := range v {
			r[i] = rune(c)
		}
		dst = append(dst, string(r))
	}
	return dst
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func subjectAltNames(value []byte, id *Identifiers) {
	in := value
	_, names, ok := next(&in)
	if !ok {
		return
	}
	for len(names) > 0 {
		tag, name, ok := next(&names)
		if !ok {
			return
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
}

// alias views bytes as a string without copying them.
func alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
