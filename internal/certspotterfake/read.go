package certspotterfake

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/ct-exporter/ct_exporter/internal/rawcert"
)

// SSLMate parses certificates with its own tolerant code (the open-source
// Cert Spotter shows how): raw fields are kept as bytes, only what is
// needed is decoded, and a DNS name is taken whatever its encoding. The
// readers below follow that behaviour, written for this fake.

var (
	oidCTPoison   = rawcert.OID(1, 3, 6, 1, 4, 1, 11129, 2, 4, 3)
	oidSCTList    = rawcert.OID(1, 3, 6, 1, 4, 1, 11129, 2, 4, 2)
	oidCTEKU      = rawcert.OID(1, 3, 6, 1, 4, 1, 11129, 2, 4, 4)
	oidAKI        = rawcert.OID(2, 5, 29, 35)
	oidEKU        = rawcert.OID(2, 5, 29, 37)
	oidSAN        = rawcert.OID(2, 5, 29, 17)
	oidCommonName = rawcert.OID(2, 5, 4, 3)
)

// precertTBS returns the TBSCertificate of RFC 6962 §3.2 for c: without the
// poison and SCT list extensions, every other byte kept. With a
// precertificate signing certificate psc, the issuer becomes psc's issuer
// and the authority key identifier psc's (dropped when psc has none, added
// at the end when c had none), as x509.BuildPrecertTBS does. precert says
// whether c had the poison.
func precertTBS(c, psc *rawcert.Certificate) (tbs []byte, precert bool) {
	t := &c.TBS
	var pscAKI []byte
	if psc != nil {
		for _, x := range psc.TBS.Extensions {
			if x.Is(oidAKI) && x.Value != nil {
				pscAKI = x.Value
				break
			}
		}
	}
	var kept [][]byte
	changed, akiSeen := false, false
	for _, x := range t.Extensions {
		switch {
		case x.Is(oidCTPoison):
			precert, changed = true, true
		case x.Is(oidSCTList):
			changed = true
		case psc != nil && x.Is(oidAKI) && !akiSeen:
			akiSeen, changed = true, true
			if pscAKI != nil {
				kept = append(kept, rawcert.EncodeExtension(x.OID, x.Critical, pscAKI))
			}
		default:
			kept = append(kept, x.Raw.Full)
		}
	}
	if psc != nil && !akiSeen && pscAKI != nil {
		kept = append(kept, rawcert.EncodeExtension(oidAKI, rawcert.Element{}, pscAKI))
		changed = true
	}
	replace := map[rawcert.Field][]byte{}
	if changed {
		replace[rawcert.Extensions] = t.ExtensionsField(kept)
	}
	if psc != nil {
		replace[rawcert.Issuer] = psc.TBS.Field(rawcert.Issuer).Full
	}
	if len(replace) == 0 {
		return t.Raw.Full, precert
	}
	return t.Rebuild(replace), precert
}

// isPSC says whether an extended key usage extension of c lists the CT
// precertificate signing purpose.
func isPSC(c *rawcert.Certificate) bool {
	for _, x := range c.TBS.Extensions {
		if !x.Is(oidEKU) || x.Value == nil {
			continue
		}
		seq, _, err := rawcert.Read(x.Value)
		if err != nil {
			continue
		}
		purposes, _ := rawcert.Elements(seq.Content)
		for _, p := range purposes {
			if p.Universal(rawcert.TagOID) && bytes.Equal(p.Content, oidCTEKU) {
				return true
			}
		}
	}
	return false
}

// decodeString decodes a string value the tolerant way: the one-byte types
// as Latin-1 whatever their alphabet, UTF8String only when valid,
// BMPString and UniversalString by whole characters.
func decodeString(e rawcert.Element) (string, bool) {
	if e.Class != rawcert.ClassUniversal || e.Constructed {
		return "", false
	}
	b := e.Content
	switch e.Tag {
	case rawcert.TagUTF8String:
		return string(b), utf8.Valid(b)
	case rawcert.TagPrintableString, rawcert.TagIA5String, rawcert.TagT61String, rawcert.TagVisibleString:
		return rawcert.Latin1(b), true
	case rawcert.TagBMPString:
		units := make([]uint16, len(b)/2)
		for i := range units {
			units[i] = binary.BigEndian.Uint16(b[2*i:])
		}
		return string(utf16.Decode(units)), true
	case rawcert.TagUniversalString:
		var sb strings.Builder
		for i := 0; i+4 <= len(b); i += 4 {
			sb.WriteRune(rune(binary.BigEndian.Uint32(b[i:]))) // invalid ones become U+FFFD
		}
		return sb.String(), true
	}
	return "", false
}

// dnsNames lists the DNS names of c as the API does: the dNSNames of every
// SAN extension and every subject CN that is not an IP address and has no
// space, lower-cased, without trailing dots, IDN labels in Punycode, a
// label no one could type replaced by "<unparsable>". As monitors should,
// it reads names meant to fool a client both ways: an http:// or https://
// prefix is dropped, and what comes before a NUL or a slash is a name too.
func dnsNames(c *rawcert.Certificate) []string {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	each := func(v string, final func(string)) {
		v = strings.TrimPrefix(strings.TrimPrefix(v, "http://"), "https://")
		var vs []string
		if before, _, ok := strings.Cut(v, "\x00"); ok {
			vs = append(vs, before)
		}
		for _, v := range append(vs, v) {
			if before, _, ok := strings.Cut(v, "/"); ok {
				final(before)
			}
			final(v)
		}
	}
	for _, x := range c.TBS.Extensions {
		if !x.Is(oidSAN) || x.Value == nil {
			continue
		}
		for _, gn := range rawcert.GeneralNames(x.Value) {
			if !gn.Is(rawcert.ClassContext, 2) || gn.Constructed {
				continue
			}
			each(string(gn.Content), func(v string) {
				switch {
				case net.ParseIP(v) != nil:
					// An IP address in a DNS SAN is an IP address.
				case isASCII(v):
					add(sanitize(v, false))
				default:
					// The encoding of a non-ASCII dNSName is anyone's
					// guess: take it both ways.
					if utf8.ValidString(v) {
						add(sanitize(v, true))
					}
					add(sanitize(rawcert.Latin1([]byte(v)), true))
				}
			})
		}
	}
	subject, _ := rawcert.Name(c.TBS.Field(rawcert.Subject))
	for _, rdn := range subject {
		for _, atv := range rdn {
			if !bytes.Equal(atv.Type, oidCommonName) {
				continue
			}
			cn, ok := decodeString(atv.Value)
			if !ok {
				continue
			}
			each(cn, func(v string) {
				if net.ParseIP(v) == nil && !strings.Contains(v, " ") {
					add(sanitize(v, true))
				}
			})
		}
	}
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

const unparsableLabel = "<unparsable>"

func sanitize(name string, unicodeLabels bool) string {
	name = strings.ToLower(strings.TrimRight(strings.TrimSpace(name), "."))
	labels := strings.Split(name, ".")
	for i, l := range labels {
		if unicodeLabels {
			a, err := idna.ToASCII(l)
			if err != nil {
				labels[i] = unparsableLabel
				continue
			}
			l = a
		}
		for _, r := range l {
			if r != '\t' && (r < ' ' || r > '~') {
				l = unparsableLabel
				break
			}
		}
		labels[i] = l
	}
	return strings.Join(labels, ".")
}

// issuerName renders a Name as SSLMate does: attributes in certificate
// order, ", " between RDNs, "+" inside one, '\' and ',' escaped, other
// unprintable characters as \x, \u or \U escapes, a value that is no string
// as # and its DER in hex.
func issuerName(e rawcert.Element) string {
	rdns, _ := rawcert.Name(e)
	var b strings.Builder
	for _, rdn := range rdns {
		for j, atv := range rdn {
			if b.Len() > 0 {
				if j == 0 {
					b.WriteString(", ")
				} else {
					b.WriteByte('+')
				}
			}
			oid := rawcert.OIDString(atv.Type)
			if label, ok := labels[oid]; ok {
				oid = label
			}
			b.WriteString(oid + "=")
			v, ok := decodeString(atv.Value)
			if !ok {
				b.WriteString("#" + hex.EncodeToString(atv.Value.Full))
				continue
			}
			for _, r := range v {
				switch {
				case r == '\\' || r == ',':
					b.WriteByte('\\')
					b.WriteRune(r)
				case unicode.IsPrint(r):
					b.WriteRune(r)
				case r <= 0xff:
					fmt.Fprintf(&b, `\x%02x`, r)
				case r <= 0xffff:
					fmt.Fprintf(&b, `\u%04x`, r)
				default:
					fmt.Fprintf(&b, `\U%08x`, r)
				}
			}
		}
	}
	return b.String()
}

var labels = map[string]string{
	"2.5.4.3":  "CN",
	"2.5.4.5":  "serialNumber",
	"2.5.4.6":  "C",
	"2.5.4.7":  "L",
	"2.5.4.8":  "ST",
	"2.5.4.9":  "street",
	"2.5.4.10": "O",
	"2.5.4.11": "OU",
	"2.5.4.17": "postalCode",
}

// parseTime reads a validity time tolerantly: UTCTime YYMMDDhhmm or
// GeneralizedTime YYYYMMDDhh, then optional minutes (GeneralizedTime),
// seconds and fraction, then Z, ±hhmm or nothing (UTC, a common mistake).
// Anything else, or bytes left over, does not read.
func parseTime(e rawcert.Element) *time.Time {
	if e.Class != rawcert.ClassUniversal || e.Constructed {
		return nil
	}
	d := string(e.Content)
	take := func(n int) (int, bool) {
		if len(d) < n {
			return 0, false
		}
		for i := range n {
			if d[i] < '0' || d[i] > '9' {
				return 0, false
			}
		}
		v, _ := strconv.Atoi(d[:n])
		d = d[n:]
		return v, true
	}
	optional := func() int {
		if len(d) >= 2 && d[0] >= '0' && d[0] <= '9' {
			if v, ok := take(2); ok {
				return v
			}
		}
		return 0
	}
	var year, month, day, hour, minute, sec, nsec int
	var ok bool
	switch e.Tag {
	case rawcert.TagUTCTime:
		if year, ok = take(2); !ok {
			return nil
		}
		year += 1900
		if year < 1950 {
			year += 100
		}
	case rawcert.TagGeneralizedTime:
		if year, ok = take(4); !ok {
			return nil
		}
	default:
		return nil
	}
	for _, p := range []*int{&month, &day, &hour} {
		if *p, ok = take(2); !ok {
			return nil
		}
	}
	if e.Tag == rawcert.TagUTCTime {
		if minute, ok = take(2); !ok {
			return nil
		}
	} else {
		minute = optional()
	}
	sec = optional()
	if strings.HasPrefix(d, ".") || strings.HasPrefix(d, ",") {
		d = d[1:]
		frac := 0
		for frac < len(d) && d[frac] >= '0' && d[frac] <= '9' {
			frac++
		}
		if frac == 0 {
			return nil
		}
		f, _ := strconv.ParseFloat("0."+d[:frac], 64)
		nsec, d = int(f*1e9), d[frac:]
	}
	loc := time.UTC
	switch {
	case d == "" || d == "Z":
		d = ""
	case d[0] == '+' || d[0] == '-':
		sign := d[0]
		d = d[1:]
		h, ok1 := take(2)
		m, ok2 := take(2)
		if !ok1 || !ok2 {
			return nil
		}
		off := h*3600 + m*60
		if sign == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	if d != "" {
		return nil
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc).UTC()
	return &t
}
