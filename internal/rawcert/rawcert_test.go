package rawcert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

func TestReadLenient(t *testing.T) {
	for _, tc := range []struct {
		in          []byte
		class, tag  int
		constructed bool
		content     []byte
		rest        []byte
	}{
		{[]byte{0x04, 0x02, 'a', 'b', 0xff}, ClassUniversal, TagOctetString, false, []byte("ab"), []byte{0xff}},
		// Long form where short would do, and a leading zero octet: OpenSSL
		// reads both, DER forbids them.
		{[]byte{0x30, 0x81, 0x01, 0x05}, ClassUniversal, TagSequence, true, []byte{0x05}, nil},
		{[]byte{0x30, 0x82, 0x00, 0x01, 0x05}, ClassUniversal, TagSequence, true, []byte{0x05}, nil},
		// High tag number form: [APPLICATION 200].
		{[]byte{0x5f, 0x81, 0x48, 0x00}, ClassApplication, 200, false, []byte{}, nil},
		{[]byte{0xa3, 0x00}, ClassContext, 3, true, []byte{}, nil},
	} {
		e, rest, err := Read(tc.in)
		if err != nil || e.Class != tc.class || e.Tag != tc.tag || e.Constructed != tc.constructed ||
			!bytes.Equal(e.Content, tc.content) || !bytes.Equal(rest, tc.rest) || !bytes.Equal(e.Full, tc.in[:len(tc.in)-len(tc.rest)]) {
			t.Errorf("Read(%x) = %+v, rest %x, %v", tc.in, e, rest, err)
		}
	}
	for _, in := range [][]byte{nil, {0x04}, {0x04, 0x03, 'a'}, {0x30, 0x80, 0, 0}, {0x04, 0x82, 0x01}, {0x1f, 0x81}} {
		if e, _, err := Read(in); err == nil {
			t.Errorf("Read(%x) = %+v, want an error", in, e)
		}
	}
	els, rest := Elements([]byte{0x05, 0x00, 0x01, 0x01, 0xff, 0x04, 0x05, 'x'})
	if len(els) != 2 || !bytes.Equal(rest, []byte{0x04, 0x05, 'x'}) {
		t.Errorf("Elements: %d elements, rest %x", len(els), rest)
	}
}

func TestOID(t *testing.T) {
	for _, arcs := range [][]int{{2, 5, 29, 17}, {1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}, {0, 9, 2342, 19200300, 100, 1, 25}, {2, 999, 3}} {
		want, err := asn1.Marshal(asn1.ObjectIdentifier(arcs))
		if err != nil {
			t.Fatal(err)
		}
		if got := OID(arcs...); !bytes.Equal(got, want[2:]) {
			t.Errorf("OID(%v) = %x, want %x", arcs, got, want[2:])
		}
		if got := OIDString(want[2:]); got != asn1.ObjectIdentifier(arcs).String() {
			t.Errorf("OIDString(%x) = %q", want[2:], got)
		}
	}
	for _, bad := range [][]byte{nil, {0x81}, {0x80, 0x01}} {
		if got := OIDString(bad); got[0] != '#' {
			t.Errorf("OIDString(%x) = %q, want a hex dump", bad, got)
		}
	}
}

// A certificate crypto/x509 makes splits into the fields crypto/x509 reads,
// and rebuilding it unchanged gives its bytes back.
func TestParseMatchesCryptoX509(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x8001),
		Subject:      pkix.Name{CommonName: "www.example.com", Organization: []string{"Example"}},
		DNSNames:     []string{"www.example.com", "example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	want, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	tbs := &c.TBS
	for _, tc := range []struct {
		f    Field
		want []byte
	}{
		{Serial, []byte{0x02, 0x03, 0x00, 0x80, 0x01}},
		{Issuer, want.RawIssuer},
		{Subject, want.RawSubject},
		{PublicKey, want.RawSubjectPublicKeyInfo},
	} {
		if got := tbs.Field(tc.f).Full; !bytes.Equal(got, tc.want) {
			t.Errorf("field %d = %x, want %x", tc.f, got, tc.want)
		}
	}
	if !bytes.Equal(tbs.Raw.Full, want.RawTBSCertificate) || !c.SignatureAlgorithm.Is(ClassUniversal, TagSequence) {
		t.Errorf("TBS or signature algorithm misplaced")
	}
	if len(tbs.Extensions) != len(want.Extensions) {
		t.Fatalf("%d extensions, want %d", len(tbs.Extensions), len(want.Extensions))
	}
	for i, x := range tbs.Extensions {
		w := want.Extensions[i]
		if OIDString(x.OID) != w.Id.String() || x.IsCritical() != w.Critical || !bytes.Equal(x.Value, w.Value) {
			t.Errorf("extension %d = %s %v %x, want %v %v %x", i, OIDString(x.OID), x.IsCritical(), x.Value, w.Id, w.Critical, w.Value)
		}
	}
	if got := tbs.Rebuild(nil); !bytes.Equal(got, want.RawTBSCertificate) {
		t.Errorf("Rebuild(nil) changed the TBS")
	}
	var exts [][]byte
	for _, x := range tbs.Extensions {
		exts = append(exts, EncodeExtension(x.OID, x.Critical, x.Value))
	}
	if got := tbs.Rebuild(map[Field][]byte{Extensions: tbs.ExtensionsField(exts)}); !bytes.Equal(got, want.RawTBSCertificate) {
		t.Errorf("re-encoding every extension changed the TBS")
	}

	rdns, ok := Name(tbs.Field(Subject))
	if !ok || len(rdns) != 2 || OIDString(rdns[1][0].Type) != "2.5.4.3" || string(rdns[1][0].Value.Content) != "www.example.com" {
		t.Errorf("Name(subject) = %+v, %v", rdns, ok)
	}
	for _, x := range tbs.Extensions {
		if x.Is(OID(2, 5, 29, 17)) {
			names := GeneralNames(x.Value)
			if len(names) != 2 || !names[1].Is(ClassContext, 2) || string(names[1].Content) != "example.com" {
				t.Errorf("GeneralNames = %+v", names)
			}
		}
	}
}

func TestParseOddShapes(t *testing.T) {
	// A v1 TBS (no version) with a garbage tail, and extensions given
	// before any unique id.
	serial := []byte{0x02, 0x01, 0x07}
	alg := []byte{0x30, 0x00}
	name := []byte{0x30, 0x00}
	tbsContent := bytes.Join([][]byte{serial, alg, name, {0x30, 0x00}, name, {0x30, 0x00}, {0xa3, 0x02, 0x30, 0x00}, {0x81, 0x01, 0x00}, {0x04, 0x09}}, nil)
	tbsEl := Encode(ClassUniversal, true, TagSequence, tbsContent)
	der := Encode(ClassUniversal, true, TagSequence, tbsEl)
	c, err := Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	tbs := &c.TBS
	if tbs.Field(Version).Present() || !bytes.Equal(tbs.Field(Serial).Full, serial) ||
		!tbs.Field(Extensions).Present() || !tbs.Field(IssuerUniqueID).Present() || tbs.Field(SubjectUniqueID).Present() {
		t.Errorf("fields misread: %+v", tbs)
	}
	if !bytes.Equal(tbs.Rest, []byte{0x04, 0x09}) || c.SignatureAlgorithm.Present() {
		t.Errorf("rest %x, signature algorithm %+v", tbs.Rest, c.SignatureAlgorithm)
	}
	// Rebuilding keeps the unread tail, replaces a field and appends one
	// that was absent.
	got := tbs.Rebuild(map[Field][]byte{Serial: {0x02, 0x01, 0x08}, SubjectUniqueID: {0x82, 0x00}})
	want := Encode(ClassUniversal, true, TagSequence, bytes.Join([][]byte{{0x02, 0x01, 0x08}, alg, name, {0x30, 0x00}, name, {0x30, 0x00}, {0xa3, 0x02, 0x30, 0x00}, {0x81, 0x01, 0x00}, {0x82, 0x00}, {0x04, 0x09}}, nil))
	if !bytes.Equal(got, want) {
		t.Errorf("Rebuild = %x, want %x", got, want)
	}
	if _, err := Parse(Encode(ClassUniversal, true, TagSequence, serial)); err == nil {
		t.Error("a SEQUENCE without a TBS SEQUENCE parsed")
	}
	if _, ok := Name(Element{}); ok {
		t.Error("an absent name read as a Name")
	}
	if len(Encode(ClassUniversal, false, TagOctetString, make([]byte, 300))) != 304 {
		t.Error("a 300-octet content does not get a 2-octet long-form length")
	}
}
