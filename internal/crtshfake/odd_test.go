package crtshfake

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// The builders below make certificates byte by byte, so that they can be as
// wrong as the tests need; nothing here signs anything.

func tlv(tag cbasn1.Tag, content ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		for _, c := range content {
			b.AddBytes(c)
		}
	})
	return b.BytesOrPanic()
}

func seq(parts ...[]byte) []byte { return tlv(cbasn1.SEQUENCE, parts...) }

func oid(arcs ...int) []byte {
	var b cryptobyte.Builder
	b.AddASN1ObjectIdentifier(arcs)
	return b.BytesOrPanic()
}

// str is a string attribute value or GeneralName of any tag.
func str(tag cbasn1.Tag, s string) []byte { return tlv(tag, []byte(s)) }

// bmp encodes s as a BMPString (UTF-16BE, no surrogates here).
func bmp(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r>>8), byte(r))
	}
	return tlv(cbasn1.Tag(30), b)
}

func universal(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
	}
	return tlv(cbasn1.Tag(28), b)
}

// rdn is one RDN holding attributes given as type, value pairs.
func rdn(typeValue ...[]byte) []byte {
	var atvs [][]byte
	for i := 0; i+1 < len(typeValue); i += 2 {
		atvs = append(atvs, seq(typeValue[i], typeValue[i+1]))
	}
	return tlv(cbasn1.SET, atvs...)
}

func ext(id []byte, critical bool, value []byte) []byte {
	parts := [][]byte{id}
	if critical {
		parts = append(parts, tlv(cbasn1.BOOLEAN, []byte{0xff}))
	}
	return seq(append(parts, tlv(cbasn1.OCTET_STRING, value))...)
}

var (
	cnOID     = oid(2, 5, 4, 3)
	orgOID    = oid(2, 5, 4, 10)
	sanOID    = oid(2, 5, 29, 17)
	skiOID    = oid(2, 5, 29, 14)
	bcOID     = oid(2, 5, 29, 19)
	ecdsa256  = seq(oid(1, 2, 840, 10045, 4, 3, 2))
	rsaSHA256 = seq(oid(1, 2, 840, 113549, 1, 1, 11), tlv(cbasn1.NULL))
	// spki is an EC key whose point is not on any curve.
	spki = seq(seq(oid(1, 2, 840, 10045, 2, 1), oid(1, 2, 840, 10045, 3, 1, 7)), tlv(cbasn1.BIT_STRING, []byte{0, 4, 1, 2, 3}))
)

type tbs struct {
	v1                  bool
	serial              []byte // content octets
	sigAlg, outerSigAlg []byte
	issuer, subject     []byte
	notBefore, notAfter []byte // whole time elements
	exts                [][]byte
}

func (t tbs) der() []byte {
	var parts [][]byte
	if !t.v1 {
		parts = append(parts, tlv(cbasn1.Tag(0).Constructed().ContextSpecific(), tlv(cbasn1.INTEGER, []byte{2})))
	}
	if t.sigAlg == nil {
		t.sigAlg = ecdsa256
	}
	if t.outerSigAlg == nil {
		t.outerSigAlg = t.sigAlg
	}
	parts = append(parts, tlv(cbasn1.INTEGER, t.serial), t.sigAlg, t.issuer, seq(t.notBefore, t.notAfter), t.subject, spki)
	if t.exts != nil {
		parts = append(parts, tlv(cbasn1.Tag(3).Constructed().ContextSpecific(), seq(t.exts...)))
	}
	return seq(seq(parts...), t.outerSigAlg, tlv(cbasn1.BIT_STRING, []byte{0, 0x30, 0}))
}

func utc(s string) []byte         { return str(cbasn1.UTCTime, s) }
func generalized(s string) []byte { return str(cbasn1.GeneralizedTime, s) }

var (
	oddIssuer = seq(rdn(oid(2, 5, 4, 6), str(cbasn1.PrintableString, "US")),
		rdn(orgOID, str(cbasn1.T61String, "Odd, Inc.")), rdn(cnOID, bmp("Odd CA")))
	future = time.Now().AddDate(1, 0, 0).UTC()
)

// Several CNs in three string types, a v1 certificate, a negative serial,
// times with a zone offset and a fraction, all of which crt.sh reads.
func oddV1() []byte {
	return tbs{
		v1:        true,
		serial:    []byte{0xff, 0x38}, // -200
		issuer:    oddIssuer,
		notBefore: utc("2501020304+0100"), // libx509pq ignores the offset
		notAfter:  generalized(future.Format("20060102150405") + ".5Z"),
		subject: seq(rdn(cnOID, bmp("www.example.com")),
			rdn(cnOID, universal("ünï.example.com"), orgOID, str(cbasn1.UTF8String, "Example")),
			rdn(cnOID, str(cbasn1.T61String, "caf\xe9.example.com"))),
	}.der()
}

// Two SAN extensions, a URI url.Parse refuses, IPv6 and a bad iPAddress, a
// garbage basicConstraints, a mismatched signature algorithm and a
// not_after that cannot be read.
func oddV3() []byte {
	return tbs{
		serial:      []byte{0x00, 0x80, 0x01},
		issuer:      oddIssuer,
		outerSigAlg: rsaSHA256,
		notBefore:   utc("250102030405Z"),
		notAfter:    utc("2x0102030405Z"),
		subject:     seq(rdn(cnOID, str(cbasn1.PrintableString, "b.example.com"))),
		exts: [][]byte{
			ext(sanOID, false, seq(
				str(cbasn1.Tag(2).ContextSpecific(), "a.example.com"),
				str(cbasn1.Tag(6).ContextSpecific(), "https://c.example.com/%zz"),
				tlv(cbasn1.Tag(7).ContextSpecific(), []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}),
				tlv(cbasn1.Tag(7).ContextSpecific(), []byte{192, 0, 2, 1, 9}),
				str(cbasn1.Tag(1).ContextSpecific(), "admin@example.com"))),
			ext(bcOID, true, []byte{0xde, 0xad}),
			ext(sanOID, false, seq(str(cbasn1.Tag(2).ContextSpecific(), "d.example.com"))),
			ext(skiOID, false, tlv(cbasn1.OCTET_STRING, []byte{0xab, 0xcd, 0xef})),
		},
	}.der()
}

// sameTime compares a crt.sh time (optional fraction) with a whole second.
func sameTime(got, want string) bool {
	g, err := time.Parse("2006-01-02T15:04:05", got)
	w, err2 := time.Parse("2006-01-02T15:04:05", want)
	return err == nil && err2 == nil && g.Equal(w)
}

func TestOddCertificatesAreKept(t *testing.T) {
	s := newServer(t)
	v1, v3 := oddV1(), oddV3()
	for i, der := range [][]byte{v1, v3} {
		if _, err := x509.ParseCertificate(der); err == nil {
			t.Fatalf("certificate %d parses with crypto/x509: the test proves nothing", i)
		}
	}
	v1ID, v3ID := s.Add(v1), s.Add(v3)

	rows, body := search(t, s, "Identity=example.com&output=json")
	if got, want := sortedIDs(rows), []int64{v1ID, v3ID}; !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	r1 := byID(t, rows, v1ID)
	if r1.CommonName == nil || *r1.CommonName != "www.example.com" {
		t.Errorf("v1 common_name %v, want the first CN, decoded from a BMPString", r1.CommonName)
	}
	// Every CN is an identity; non-ASCII comes out as bytea escapes of its
	// UTF-8, T61 read as Latin-1.
	if want := `\303\274n\303\257.example.com` + "\n" + `caf\303\251.example.com` + "\n" + `www.example.com`; r1.NameValue != want {
		t.Errorf("v1 name_value %q, want %q", r1.NameValue, want)
	}
	if r1.SerialNumber != "ff38" || !sameTime(r1.NotBefore, "2025-01-02T03:04:00") ||
		!sameTime(r1.NotAfter, future.Format("2006-01-02T15:04:05")) {
		t.Errorf("v1 serial %q, not_before %q, not_after %q", r1.SerialNumber, r1.NotBefore, r1.NotAfter)
	}
	if r1.IssuerName != `C=US, O="Odd, Inc.", CN=Odd CA` || r1.IssuerCAID <= 0 {
		t.Errorf("v1 issuer %d %q", r1.IssuerCAID, r1.IssuerName)
	}

	r3 := byID(t, rows, v3ID)
	if want := "a.example.com\nadmin@example.com\nb.example.com\nd.example.com\nhttps://c.example.com/%zz"; r3.NameValue != want {
		t.Errorf("v3 name_value %q, want every name of both SAN extensions and the CN: %q", r3.NameValue, want)
	}
	if r3.SerialNumber != "008001" || !sameTime(r3.NotBefore, "2025-01-02T03:04:05") {
		t.Errorf("v3 serial %q, not_before %q", r3.SerialNumber, r3.NotBefore)
	}
	if r3.NotAfter != "" || !bytes.Contains(body, []byte(`"not_after":null`)) {
		t.Errorf("v3 not_after %q, want null in %s", r3.NotAfter, body)
	}
	for q, want := range map[string]string{"2001:db8": ":2001:db8:0:0:0:0:0:1", "invalid": "invalid ipaddress"} {
		rows, _ := search(t, s, "q="+url.QueryEscape(q)+"&output=json")
		if len(rows) != 1 || rows[0].ID != v3ID || rows[0].NameValue != want {
			t.Errorf("%s: %+v, want v3 with name_value %q", q, rows, want)
		}
	}

	// A not_after crt.sh cannot read is NULL, and NULL >= now() is not
	// true: exclude=expired leaves the certificate out.
	rows, _ = search(t, s, "Identity=example.com&output=json&exclude=expired")
	if got := ids(rows); !slices.Equal(got, []int64{v1ID}) {
		t.Errorf("exclude=expired: ids %v, want only %d", got, v1ID)
	}

	for id, der := range map[int64][]byte{v1ID: v1, v3ID: v3} {
		res, body := do(t, s, "d="+strconv.FormatInt(id, 10), nil)
		if block, _ := pem.Decode(body); res.StatusCode != http.StatusOK || block == nil || !bytes.Equal(block.Bytes, der) {
			t.Errorf("?d=%d does not give the certificate back", id)
		}
	}
}

func TestUnreadableFields(t *testing.T) {
	s := newServer(t)
	der := tbs{
		serial: nil, // an empty INTEGER: no serial_number
		// An issuer that is no Name: no issuer to look up.
		issuer:    tlv(cbasn1.OCTET_STRING, []byte("nonsense")),
		notBefore: tlv(cbasn1.OCTET_STRING, []byte("250102030405Z")),
		notAfter:  utc("991301000000Z"), // month 13
		subject: seq(
			rdn(cnOID, str(cbasn1.UTF8String, "\xff\xfe.example.com")), // invalid UTF-8: the first CN gives no common_name
			rdn(cnOID, str(cbasn1.IA5String, "x.example.com\x00.evil.net")),
			rdn(cnOID, tlv(cbasn1.INTEGER, []byte{1})),
			rdn(orgOID, tlv(cbasn1.Tag(30), []byte{0, 'o', 0}))), // a BMPString cut mid-character
		exts: [][]byte{
			ext(skiOID, false, tlv(cbasn1.OCTET_STRING, []byte{1})),
			ext(skiOID, false, tlv(cbasn1.OCTET_STRING, []byte{1})),
		},
	}.der()
	id := s.Add(der)
	rows, body := search(t, s, "Identity=example.com&output=json")
	if len(rows) != 1 || rows[0].ID != id {
		t.Fatalf("rows %+v", rows)
	}
	r := rows[0]
	if r.CommonName != nil || r.IssuerCAID != -1 || r.IssuerName != "" {
		t.Errorf("common_name %v, issuer %d %q; want none, -1, empty", r.CommonName, r.IssuerCAID, r.IssuerName)
	}
	if r.NameValue != `x.example.com\000.evil.net` {
		t.Errorf("name_value %q, want the IA5 CN with its NUL escaped", r.NameValue)
	}
	for _, field := range []string{"not_before", "not_after", "serial_number"} {
		if !bytes.Contains(body, []byte(`"`+field+`":null`)) {
			t.Errorf("%s is not null in %s", field, body)
		}
	}
	// Two SKI extensions: OpenSSL finds none.
	if rows, _ := search(t, s, "ski=01&output=json"); len(rows) != 0 {
		t.Errorf("SKI search found a certificate with a duplicated SKI: %+v", rows)
	}

	for _, bad := range [][]byte{nil, []byte("garbage"), seq(tlv(cbasn1.INTEGER, []byte{1}))} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%x) did not panic", bad)
				}
			}()
			s.Add(bad)
		}()
	}
}

func TestRenderDNOddValues(t *testing.T) {
	for _, tc := range []struct {
		name []byte
		want string
	}{
		{seq(rdn(cnOID, tlv(cbasn1.INTEGER, []byte{5}))), "CN=#020105"},
		{seq(rdn(cnOID, str(cbasn1.UTF8String, "a\x01b"))), `CN=a\01b`},
		{seq(rdn(oid(1, 2, 3, 4), str(cbasn1.PrintableString, "x"), cnOID, str(cbasn1.PrintableString, "y"))), "1.2.3.4=x + CN=y"},
	} {
		got, err := dnString(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("dnString(%x) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestSKISearch(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	rootID, caID := s.Add(p.root.DER), s.Add(p.ca.DER)
	leaf := p.issue(t, testpki.Leaf{CN: "www.example.com", DNSNames: []string{"www.example.com"}})
	s.Add(leaf.Precert)
	s.Add(leaf.Final)
	oddID := s.Add(oddV3())
	expired := s.Add(tbs{
		serial: []byte{1}, issuer: oddIssuer, subject: seq(),
		notBefore: utc("200101000000Z"), notAfter: utc("200201000000Z"),
		exts: [][]byte{ext(skiOID, false, tlv(cbasn1.OCTET_STRING, []byte{0xab, 0xcd, 0xef}))},
	}.der())
	ski := hex.EncodeToString(p.ca.Cert.SubjectKeyId)
	if len(p.ca.Cert.SubjectKeyId) == 0 || bytes.Equal(p.ca.Cert.SubjectKeyId, p.root.Cert.SubjectKeyId) {
		t.Fatal("the test CAs have no distinct SKIs")
	}

	colons := strings.ToUpper(ski[:2]) + ":" + ski[2:4] + ":" + ski[4:]
	for _, q := range []string{"ski=" + ski, "SKI=" + strings.ToUpper(ski), "Ski=" + url.QueryEscape(colons), "ski=" + url.QueryEscape(" "+ski[:6]+" "+ski[6:]+" ")} {
		rows, body := search(t, s, q+"&output=json")
		if got := ids(rows); !slices.Equal(got, []int64{caID}) {
			t.Errorf("?%s: ids %v, want the issuing CA %d (root %d)", q, got, caID, rootID)
			continue
		}
		if r := rows[0]; r.NameValue != ski || r.ResultCount != 0 || r.IssuerName != `C=US, O="Foo, Inc.", CN=Test Root` {
			t.Errorf("?%s: row %+v", q, r)
		}
		noCN := slices.DeleteFunc(slices.Clone(rowFields), func(f string) bool { return f == "common_name" })
		if keys := rowKeys(t, body); !slices.Equal(keys[0], noCN) {
			t.Errorf("?%s: keys %v, want %v", q, keys[0], noCN)
		}
	}

	// A leaf's SKI is found too, newest first, and exclude=expired applies.
	rows, _ := search(t, s, "ski=ABCDEF&output=json")
	if got := ids(rows); !slices.Equal(got, []int64{expired, oddID}) || rows[0].NameValue != "abcdef" {
		t.Errorf("ski=ABCDEF: %+v, want %d then %d", rows, expired, oddID)
	}
	rows, _ = search(t, s, "ski=abcdef&output=json&exclude=expired")
	if len(rows) != 0 {
		t.Errorf("exclude=expired: %+v, want none (one expired, one with an unreadable not_after)", rows)
	}
	// An odd number of digits is read with a 0 in front.
	if rows, _ := search(t, s, "ski=bcdef&output=json"); len(rows) != 0 {
		t.Errorf("ski=bcdef matched %+v", rows)
	}
	if rows, _ := search(t, s, "ski=0102&output=json"); len(rows) != 0 {
		t.Errorf("unknown SKI: %+v", rows)
	}

	for _, q := range []string{"ski=xyz&output=json", "ski=&output=json"} {
		if res, _ := do(t, s, q, nil); res.StatusCode != http.StatusBadRequest || mediaType(t, res) != "text/html" {
			t.Errorf("?%s: %s %s, want 400 HTML", q, res.Status, res.Header.Get("Content-Type"))
		}
	}
	if res, _ := do(t, s, "ski="+ski, nil); res.StatusCode != http.StatusOK || mediaType(t, res) != "text/html" {
		t.Errorf("without output=json: %s %s", res.Status, res.Header.Get("Content-Type"))
	}
	if res, _ := do(t, s, "ski="+ski, http.Header{"Accept": {"application/json"}}); res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("Accept: application/json: %s", res.Header.Get("Content-Type"))
	}
	// d= comes first in crt.sh's order.
	if res, body := do(t, s, "ski="+ski+"&d="+strconv.FormatInt(rootID, 10), nil); res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("ski and d: %s %.60q, want the download", res.Status, body)
	}

	// Faults aim at SKI searches apart from identity searches.
	s.ResetRequests()
	s.Fault(KindSearch, 1, Fault502)
	if res, _ := do(t, s, "ski="+ski+"&output=json", nil); res.StatusCode != http.StatusOK {
		t.Errorf("an identity-search fault hit a SKI search: %s", res.Status)
	}
	s.Fault(KindAny, 0, FaultNone)
	s.Fault(KindSKI, 1, Fault503)
	if res, _ := do(t, s, "Identity=example.com&output=json", nil); res.StatusCode != http.StatusOK {
		t.Errorf("a SKI fault hit an identity search: %s", res.Status)
	}
	if res, _ := do(t, s, "ski="+ski+"&output=json", nil); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("SKI fault: %s", res.Status)
	}
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[0].Kind != KindSKI || reqs[0].Query != ski || reqs[2].Fault != Fault503 || KindSKI.String() != "ski" {
		t.Errorf("requests %+v", reqs)
	}
}
