package crtshfake

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/ct-exporter/ct_exporter/internal/rawcert"
)

// crt.sh reads every field of a certificate with its own SQL function
// (libx509pq, on OpenSSL), each on its own: a field it cannot read is NULL
// and the others are still there. The readers below do the same on the
// parts rawcert finds, with OpenSSL's and libx509pq's rules where they
// matter to a client. They are more lenient than OpenSSL in one way:
// OpenSSL refuses some certificates as a whole (a non-minimal INTEGER, an
// unknown string type in a name), which would leave every field NULL; here
// the other fields are still read, so that a test sees the odd certificate.

var (
	oidCommonName = rawcert.OID(2, 5, 4, 3)
	oidSAN        = rawcert.OID(2, 5, 29, 17)
	oidSKI        = rawcert.OID(2, 5, 29, 14)
)

// fields is what crt.sh's functions give for one certificate; a nil pointer
// is SQL NULL.
type fields struct {
	identities []string
	commonName *string
	issuerName string
	issuerOK   bool
	notBefore  *time.Time
	notAfter   *time.Time
	serial     *string
	ski        []byte // nil: none (x509_subjectKeyIdentifier is NULL)
}

func readFields(c *rawcert.Certificate) fields {
	var f fields
	t := &c.TBS
	f.serial = serialHex(t.Field(rawcert.Serial))
	if issuer, ok := rawcert.Name(t.Field(rawcert.Issuer)); ok {
		f.issuerName, f.issuerOK = renderDN(issuer), true
	}
	if validity := t.Field(rawcert.Validity); validity.Is(rawcert.ClassUniversal, rawcert.TagSequence) {
		times, _ := rawcert.Elements(validity.Content)
		if len(times) > 0 {
			f.notBefore = pqTime(times[0])
		}
		if len(times) > 1 {
			f.notAfter = pqTime(times[1])
		}
	}

	var ids []string
	subject, _ := rawcert.Name(t.Field(rawcert.Subject))
	firstCN := true
	for _, rdn := range subject {
		for _, atv := range rdn {
			v, ok := opensslUTF8(atv.Value)
			if string(atv.Type) == string(oidCommonName) && firstCN {
				// x509_commonName takes the first CN only, and returns
				// NULL when that one does not convert; the C string it
				// copies ends at the first NUL.
				firstCN = false
				if ok {
					cn, _, _ := strings.Cut(v, "\x00")
					f.commonName = &cn
				}
			}
			// certificate_and_identities holds every subject attribute
			// that converts to UTF-8, not only CN and emailAddress.
			if ok {
				ids = append(ids, v)
			}
		}
	}
	// OpenSSL's X509_get_ext_d2i finds nothing when an extension appears
	// twice, so crt.sh itself would show no SAN of a certificate with two
	// SAN extensions; the fake reads every one of them, so that tests can
	// feed such certificates through it and find them.
	nSKI := 0
	for _, ext := range t.Extensions {
		switch {
		case ext.Is(oidSAN) && ext.Value != nil:
			for _, gn := range rawcert.GeneralNames(ext.Value) {
				if v, ok := altName(gn); ok {
					ids = append(ids, v)
				}
			}
		case ext.Is(oidSKI):
			nSKI++
			if ext.Value == nil {
				continue
			}
			if octets, _, err := rawcert.Read(ext.Value); err == nil && octets.Universal(rawcert.TagOctetString) {
				f.ski = append([]byte{}, octets.Content...)
			}
		}
	}
	if nSKI != 1 {
		f.ski = nil // duplicated: OpenSSL gives none
	}
	for i := range ids {
		// NAME_VALUE is encode(raw, 'escape'); the lower-casing is the
		// fake's own, kept from before.
		ids[i] = strings.ToLower(byteaEscape(ids[i]))
	}
	f.identities = ids
	return f
}

// serialHex is encode(x509_serialNumber(c), 'hex'): the INTEGER's content
// octets, so a leading 00 stays; NULL when the serial is not an INTEGER or
// longer than the 127 octets libx509pq copies.
func serialHex(e rawcert.Element) *string {
	if !e.Universal(rawcert.TagInteger) || len(e.Content) == 0 || len(e.Content) > 127 {
		return nil
	}
	s := hex.EncodeToString(e.Content)
	return &s
}

// opensslUTF8 converts a string element as ASN1_STRING_to_UTF8 does: the
// one-byte types (PrintableString, IA5String, TeletexString, ...) are taken
// as Latin-1 whatever their alphabet, UTF8String must be valid, BMPString
// and UniversalString must have whole characters; any other type fails.
func opensslUTF8(e rawcert.Element) (string, bool) {
	if e.Class != rawcert.ClassUniversal || e.Constructed {
		return "", false
	}
	b := e.Content
	switch e.Tag {
	case rawcert.TagUTF8String:
		if !utf8.Valid(b) {
			return "", false
		}
		return string(b), true
	case rawcert.TagNumericString, rawcert.TagPrintableString, rawcert.TagT61String, rawcert.TagIA5String,
		rawcert.TagUTCTime, rawcert.TagGeneralizedTime, rawcert.TagVisibleString:
		return rawcert.Latin1(b), true
	case rawcert.TagBMPString:
		if len(b)%2 != 0 {
			return "", false
		}
		var sb strings.Builder
		for i := 0; i < len(b); i += 2 {
			r := rune(binary.BigEndian.Uint16(b[i:]))
			if utf16.IsSurrogate(r) {
				return "", false
			}
			sb.WriteRune(r)
		}
		return sb.String(), true
	case rawcert.TagUniversalString:
		if len(b)%4 != 0 {
			return "", false
		}
		var sb strings.Builder
		for i := 0; i < len(b); i += 4 {
			r := binary.BigEndian.Uint32(b[i:])
			if r > utf8.MaxRune || utf16.IsSurrogate(rune(r)) {
				return "", false
			}
			sb.WriteRune(rune(r))
		}
		return sb.String(), true
	}
	return "", false
}

// altName is one row of x509_altNames_raw: the IA5String types as Latin-1,
// an iPAddress in libx509pq's own format (IPv6 with a leading colon, upper
// case, nothing shortened), an otherName whose value is a string; the other
// types give no row.
func altName(gn rawcert.Element) (string, bool) {
	if gn.Class != rawcert.ClassContext {
		return "", false
	}
	switch gn.Tag {
	case 1, 2, 6: // rfc822Name, dNSName, uniformResourceIdentifier
		if gn.Constructed {
			return "", false
		}
		return rawcert.Latin1(gn.Content), true
	case 7:
		if gn.Constructed {
			return "", false
		}
		ip := gn.Content
		switch len(ip) {
		case 4:
			return fmt.Sprintf("%d.%d.%d.%d", ip[0], ip[1], ip[2], ip[3]), true
		case 16:
			var sb strings.Builder
			for i := 0; i < 16; i += 2 {
				fmt.Fprintf(&sb, ":%X", binary.BigEndian.Uint16(ip[i:]))
			}
			return sb.String(), true
		}
		return "Invalid iPAddress", true
	case 0: // otherName: type-id, [0] EXPLICIT value
		parts, _ := rawcert.Elements(gn.Content)
		if len(parts) < 2 || !parts[1].Is(rawcert.ClassContext, 0) {
			return "", false
		}
		v, _, err := rawcert.Read(parts[1].Content)
		if err != nil {
			return "", false
		}
		return opensslUTF8(v)
	}
	return "", false
}

// byteaEscape is PostgreSQL's encode(bytes, 'escape'): NUL and bytes with
// the high bit set become \ooo, a backslash is doubled.
func byteaEscape(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			sb.WriteString(`\\`)
		case c == 0 || c >= 0x80:
			fmt.Fprintf(&sb, `\%03o`, c)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// pqTime reads a validity time as libx509pq does, which is laxer than
// OpenSSL: UTCTime needs 10 digits (YYMMDDHHMM, years before 50 in the
// 2000s), GeneralizedTime 12 (YYYYMMDDHHMM); the seconds are read when two
// digits follow; the month must be 1 to 12, other fields overflow into the
// next (timegm); anything after, a zone offset or a fraction, is ignored.
// Any other type, or fewer digits, is NULL.
func pqTime(e rawcert.Element) *time.Time {
	if e.Class != rawcert.ClassUniversal || e.Constructed {
		return nil
	}
	d := e.Content
	num := func(i, n int) (int, bool) {
		if i+n > len(d) {
			return 0, false
		}
		v := 0
		for _, c := range d[i : i+n] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	var year, at int
	switch e.Tag {
	case rawcert.TagUTCTime:
		yy, ok := num(0, 2)
		if !ok {
			return nil
		}
		year, at = 1900+yy, 2
		if yy < 50 {
			year += 100
		}
	case rawcert.TagGeneralizedTime:
		y, ok := num(0, 4)
		if !ok {
			return nil
		}
		year, at = y, 4
	default:
		return nil
	}
	var v [4]int // month, day, hour, minute
	for i := range v {
		n, ok := num(at+2*i, 2)
		if !ok {
			return nil
		}
		v[i] = n
	}
	if v[0] < 1 || v[0] > 12 {
		return nil
	}
	sec, _ := num(at+8, 2)
	t := time.Date(year, time.Month(v[0]), v[1], v[2], v[3], sec, 0, time.UTC)
	return &t
}

// shortNames are OpenSSL's, which crt.sh's DN strings use.
var shortNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.4":                    "SN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "street",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.12":                   "title",
	"2.5.4.15":                   "businessCategory",
	"2.5.4.17":                   "postalCode",
	"2.5.4.42":                   "GN",
	"2.5.4.97":                   "organizationIdentifier",
	"0.9.2342.19200300.100.1.1":  "UID",
	"0.9.2342.19200300.100.1.25": "DC",
	"1.2.840.113549.1.9.1":       "emailAddress",
	"1.3.6.1.4.1.311.60.2.1.1":   "jurisdictionL",
	"1.3.6.1.4.1.311.60.2.1.2":   "jurisdictionST",
	"1.3.6.1.4.1.311.60.2.1.3":   "jurisdictionC",
}

// dnString renders a DER Name as crt.sh does; see renderDN.
func dnString(raw []byte) (string, error) {
	e, _, err := rawcert.Read(raw)
	if err != nil {
		return "", err
	}
	rdns, ok := rawcert.Name(e)
	if !ok {
		return "", fmt.Errorf("crtshfake: the name is not a SEQUENCE")
	}
	return renderDN(rdns), nil
}

// renderDN renders a DN as crt.sh does (OpenSSL's one-line form without
// spaces around '='): attributes in certificate order, which puts C first
// for most CAs, ", " between them, " + " inside a multi-valued RDN, and a
// value in double quotes when it holds a separator, with " and \ escaped
// and control characters as \XX. A value that is no string is dumped as #
// and the hex of its DER, as RFC 2253 says.
func renderDN(rdns [][]rawcert.Attribute) string {
	var b strings.Builder
	for i, rdn := range rdns {
		if i > 0 {
			b.WriteString(", ")
		}
		for j, atv := range rdn {
			if j > 0 {
				b.WriteString(" + ")
			}
			oid := rawcert.OIDString(atv.Type)
			name, ok := shortNames[oid]
			if !ok {
				name = oid
			}
			b.WriteString(name)
			b.WriteByte('=')
			if v, ok := opensslUTF8(atv.Value); ok {
				b.WriteString(quoteDNValue(v))
			} else {
				b.WriteString("#" + strings.ToUpper(hex.EncodeToString(atv.Value.Full)))
			}
		}
	}
	return b.String()
}

func quoteDNValue(v string) string {
	var escaped strings.Builder
	for _, r := range v {
		switch {
		case r == '\\' || r == '"':
			escaped.WriteByte('\\')
			escaped.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&escaped, `\%02X`, r)
		default:
			escaped.WriteRune(r)
		}
	}
	if strings.ContainsAny(v, ",+;<>") || strings.HasPrefix(v, "#") ||
		strings.HasPrefix(v, " ") || strings.HasSuffix(v, " ") {
		return `"` + escaped.String() + `"`
	}
	return escaped.String()
}
