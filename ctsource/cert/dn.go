package cert

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/ct-exporter/ct_exporter/watch"
)

var attributeNames = map[string]string{
	"\x55\x04\x03": "CN",
	"\x55\x04\x05": "SERIALNUMBER",
	"\x55\x04\x06": "C",
	"\x55\x04\x07": "L",
	"\x55\x04\x08": "ST",
	"\x55\x04\x09": "STREET",
	"\x55\x04\x0a": "O",
	"\x55\x04\x0b": "OU",
	"\x55\x04\x11": "POSTALCODE",
	"\x55\x04\x61": "organizationIdentifier",
	"\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x01": "UID",
	"\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x19": "DC",
	"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x01":     "emailAddress",
}

var oidOrganization = []byte{0x55, 0x04, 0x0a}

// 2.5.4.10

// issuerOf reads the issuer's CN (the last, as parsers show it), O (the
// first) and DN from a Name element.
func issuerOf(name []byte) watch.Issuer {
	var i watch.Issuer
	var vals []string
	eachAttribute(name, func(oid []byte, id byte, v []byte) {
		switch {
		case bytes.Equal(oid, oidCommonName):
			vals = appendString(vals[:0], id, v)
			i.CN = strings.Clone(vals[len(vals)-1])
		case bytes.Equal(oid, oidOrganization) && i.O == "":
			vals = appendString(vals[:0], id, v)
			i.O = strings.Clone(vals[len(vals)-1])
		}
	})
	i.DN = FormatDN(name)
	return i
}

// FormatDN renders a DER Name as RFC 4514 does (most specific RDN first), with
// ", " between RDNs: "CN=R11, O=Let's Encrypt, C=US". This is the string that
// /…/ entries of expected_issuers are matched against. Values of string
// types are shown as text (TeletexString as Latin-1), others as # and
// their hex DER; a Name that cannot be read at all is # and its hex.
func FormatDN(der []byte) string {
	in := der
	seq, ok := readUniversal(&in, tagSequence)
	if !ok || len(in) != 0 {
		return "#" + hex.EncodeToString(der)
	}
	var rdns []string
	rest := seq.content
	for len(rest) > 0 {
		rdn, ok := readElement(&rest)
		if !ok {
			return "#" + hex.EncodeToString(der)
		}
		var attrs []string
		atvs := rdn.content
		for len(atvs) > 0 {
			atv, ok := readElement(&atvs)
			if !ok {
				return "#" + hex.EncodeToString(der)
			}
			c := atv.content
			oid, ok1 := readUniversal(&c, tagOID)
			v, ok2 := readElement(&c)
			if !ok1 || !ok2 {
				return "#" + hex.EncodeToString(der)
			}
			name, ok := attributeNames[string(oid.content)]
			if !ok {
				name = oidString(oid.content)
			}
			attrs = append(attrs, name+"="+dnValue(v))
		}
		rdns = append(rdns, strings.Join(attrs, "+"))
	}
	for i, j := 0, len(rdns)-1; i < j; i, j = i+1, j-1 {
		rdns[i], rdns[j] = rdns[j], rdns[i]
	}
	return strings.Join(rdns, ", ")
}

func dnValue(v element) string {
	switch v.tag {
	case tagUTF8String, tagPrintableString, tagIA5String, tagBMPString, tagUniversalString, tagTeletexString,
		18, 25, 26, 27: // Numeric, Graphic, Visible and General strings
		if v.class == classUniversal {
			// The Latin-1 reading of a string with non-ASCII bytes, where
			// there are two: what the CA meant.
			s := appendString(nil, v.full[0], v.content)
			return escapeDNValue(s[len(s)-1])
		}
	}
	return "#" + hex.EncodeToString(v.full)
}

// oidString renders an OBJECT IDENTIFIER's content in dotted form.
func oidString(b []byte) string {
	var parts []string
	var v uint64
	for i, c := range b {
		v = v<<7 | uint64(c&0x7f)
		if c&0x80 != 0 {
			if v > 1<<56 {
				return "#" + hex.EncodeToString(b)
			}
			continue
		}
		if len(parts) == 0 {
			first := min(v/40, 2)
			parts = append(parts, strconv.FormatUint(first, 10), strconv.FormatUint(v-40*first, 10))
		} else {
			parts = append(parts, strconv.FormatUint(v, 10))
		}
		v = 0
		if i == len(b)-1 {
			return strings.Join(parts, ".")
		}
	}
	return "#" + hex.EncodeToString(b)
}

func escapeDNValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case strings.IndexByte(`,+"\<>;`, c) >= 0,
			c == '#' && i == 0,
			c == ' ' && (i == 0 || i == len(v)-1):
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
