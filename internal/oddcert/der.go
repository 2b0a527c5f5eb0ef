package oddcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// DER is assembled from elements: every helper returns one complete
// element (identifier, length, contents), so a case can put any element
// anywhere, which is the point of the corpus.

// tlv is one element with a low tag number and the given contents.
func tlv(tag cbasn1.Tag, contents ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		for _, c := range contents {
			b.AddBytes(c)
		}
	})
	return b.BytesOrPanic()
}

// rawTLV is one element with an identifier written out byte by byte, for
// the high-tag-number form cryptobyte refuses to write.
func rawTLV(identifier []byte, contents []byte) []byte {
	out := append([]byte{}, identifier...)
	// The length is built by cryptobyte (minimal DER) and its tag byte dropped.
	return append(out, tlv(cbasn1.OCTET_STRING, contents)[1:]...)
}

func seq(elems ...[]byte) []byte { return tlv(cbasn1.SEQUENCE, elems...) }

// set is a SET in the order given: DER would sort a SET OF, and some cases
// deliberately do not.
func set(elems ...[]byte) []byte { return tlv(cbasn1.SET, elems...) }

func oid(ids ...int) []byte {
	var b cryptobyte.Builder
	b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier(ids))
	return b.BytesOrPanic()
}

// integer is an INTEGER whose contents are exactly the bytes given, even
// when they are not a minimal (or any) two's complement encoding.
func integer(contents []byte) []byte { return tlv(cbasn1.INTEGER, contents) }

func octets(b []byte) []byte { return tlv(cbasn1.OCTET_STRING, b) }

// bits is a BIT STRING with no unused bits.
func bits(b []byte) []byte { return tlv(cbasn1.BIT_STRING, []byte{0}, b) }

var (
	derNULL = []byte{0x05, 0x00}
	derTRUE = []byte{0x01, 0x01, 0xff}
)

// String types a Name attribute value can have.
const (
	tagUTF8      = cbasn1.UTF8String
	tagPrintable = cbasn1.PrintableString
	tagTeletex   = cbasn1.T61String
	tagIA5       = cbasn1.IA5String
	tagUniversal = cbasn1.Tag(28)
	tagBMP       = cbasn1.Tag(30)
)

func str(tag cbasn1.Tag, s string) []byte { return tlv(tag, []byte(s)) }

// bmp encodes s as a BMPString (UTF-16BE, which for the BMP is UCS-2).
func bmp(s string) []byte {
	var out []byte
	for _, u := range utf16.Encode([]rune(s)) {
		out = append(out, byte(u>>8), byte(u))
	}
	return tlv(tagBMP, out)
}

// universal encodes s as a UniversalString (UCS-4, UTF-32BE).
func universal(s string) []byte {
	var out []byte
	for _, r := range s {
		out = append(out, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
	}
	return tlv(tagUniversal, out)
}

// Attribute types, encoded.
var (
	oidCN = oid(2, 5, 4, 3)
	oidC  = oid(2, 5, 4, 6)
	oidO  = oid(2, 5, 4, 10)
	oidOU = oid(2, 5, 4, 11)
)

// atv is an AttributeTypeAndValue.
func atv(typ, value []byte) []byte { return seq(typ, value) }

// rdn is a RelativeDistinguishedName of one or more attributes.
func rdn(atvs ...[]byte) []byte { return set(atvs...) }

// name is an RDNSequence, least specific RDN first as encoded.
func name(rdns ...[]byte) []byte { return seq(rdns...) }

func cnRDN(value []byte) []byte { return rdn(atv(oidCN, value)) }

// caName is the Name "CN=cn, O=org, C=c": C first in the encoding, as CAs
// write it.
func caName(cn, org, c string) []byte {
	return name(
		rdn(atv(oidC, str(tagPrintable, c))),
		rdn(atv(oidO, str(tagUTF8, org))),
		rdn(atv(oidCN, str(tagUTF8, cn))),
	)
}

// Algorithm identifiers.
var (
	algECDSASHA256 = seq(oid(1, 2, 840, 10045, 4, 3, 2))
	algRSASHA256   = seq(oid(1, 2, 840, 113549, 1, 1, 11), derNULL)
	oidECPublicKey = oid(1, 2, 840, 10045, 2, 1)
	oidP256        = oid(1, 2, 840, 10045, 3, 1, 7)
	oidSecp256k1   = oid(1, 3, 132, 0, 10)
)

// Extension identifiers.
var (
	oidExtKeyUsage     = oid(2, 5, 29, 15)
	oidExtEKU          = oid(2, 5, 29, 37)
	oidExtBasic        = oid(2, 5, 29, 19)
	oidExtSKI          = oid(2, 5, 29, 14)
	oidExtAKI          = oid(2, 5, 29, 35)
	oidExtSAN          = oid(2, 5, 29, 17)
	oidExtPolicies     = oid(2, 5, 29, 32)
	oidExtNameConstr   = oid(2, 5, 29, 30)
	oidExtCTPoison     = oid(1, 3, 6, 1, 4, 1, 11129, 2, 4, 3)
	oidExtCTSCTList    = oid(1, 3, 6, 1, 4, 1, 11129, 2, 4, 2)
	oidServerAuth      = oid(1, 3, 6, 1, 5, 5, 7, 3, 1)
	oidCTPrecertSigner = oid(1, 3, 6, 1, 4, 1, 11129, 2, 4, 4)
	oidDVPolicy        = oid(2, 23, 140, 1, 2, 1)
)

// ext is an Extension; value is the DER that goes inside extnValue.
func ext(id []byte, critical bool, value []byte) []byte {
	if critical {
		return seq(id, derTRUE, octets(value))
	}
	return seq(id, octets(value))
}

func extOID(e []byte) []byte {
	s := cryptobyte.String(e)
	var body, id cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1Element(&id, cbasn1.OBJECT_IDENTIFIER) {
		panic("oddcert: extension without an OID")
	}
	return id
}

// isCTExt reports whether an extension is one the issuance identity leaves
// out: the CT poison or the SCT list.
func isCTExt(e []byte) bool {
	id := string(extOID(e))
	return id == string(oidExtCTPoison) || id == string(oidExtCTSCTList)
}

// GeneralName alternatives (context-specific, primitive).
func dnsGN(s string) []byte { return tlv(cbasn1.Tag(2).ContextSpecific(), []byte(s)) }
func uriGN(s string) []byte { return tlv(cbasn1.Tag(6).ContextSpecific(), []byte(s)) }
func ipGN(b []byte) []byte  { return tlv(cbasn1.Tag(7).ContextSpecific(), b) }

func sanExt(gns ...[]byte) []byte { return ext(oidExtSAN, false, seq(gns...)) }

func dnsSAN(names ...string) []byte {
	gns := make([][]byte, len(names))
	for i, n := range names {
		gns[i] = dnsGN(n)
	}
	return sanExt(gns...)
}

func keyUsageExt(bitsByte byte, critical bool) []byte {
	// One byte of flags; the unused-bits count is the trailing zero bits.
	unused := byte(0)
	for unused < 7 && bitsByte&(1<<unused) == 0 {
		unused++
	}
	return ext(oidExtKeyUsage, critical, tlv(cbasn1.BIT_STRING, []byte{unused, bitsByte}))
}

func basicConstraintsExt(isCA bool) []byte {
	if isCA {
		return ext(oidExtBasic, true, seq(derTRUE))
	}
	return ext(oidExtBasic, true, seq())
}

func ekuExt(ids ...[]byte) []byte { return ext(oidExtEKU, false, seq(ids...)) }
func skiExt(ski []byte) []byte    { return ext(oidExtSKI, false, octets(ski)) }
func akiExt(keyID []byte) []byte {
	return ext(oidExtAKI, false, seq(tlv(cbasn1.Tag(0).ContextSpecific(), keyID)))
}
func policiesExt(ids ...[]byte) []byte {
	infos := make([][]byte, len(ids))
	for i, id := range ids {
		infos[i] = seq(id)
	}
	return ext(oidExtPolicies, false, seq(infos...))
}

func poisonExt() []byte { return ext(oidExtCTPoison, true, derNULL) }

// timeElem encodes t as RFC 5280 says: UTCTime through 2049, GeneralizedTime
// after.
func timeElem(t time.Time) []byte {
	t = t.UTC()
	if t.Year() >= 1950 && t.Year() < 2050 {
		return str(cbasn1.UTCTime, t.Format("060102150405Z"))
	}
	return str(cbasn1.GeneralizedTime, t.Format("20060102150405Z"))
}

// key is a fixed ECDSA P-256 key: the same seed gives the same key in every
// run, so SPKI hashes and (RFC 6979) signatures are stable.
type key struct {
	priv *ecdsa.PrivateKey
	spki []byte // SubjectPublicKeyInfo DER
	ski  []byte // RFC 5280 §4.2.1.2 method 1: SHA-1 of the public key bits
}

func newKey(seed string) *key {
	d := sha256.Sum256([]byte("oddcert key " + seed))
	for {
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
		if err == nil {
			pub, err := priv.PublicKey.Bytes()
			if err != nil {
				panic(fmt.Sprintf("oddcert: key %q: %v", seed, err))
			}
			ski := sha1.Sum(pub)
			return &key{priv: priv, spki: seq(seq(oidECPublicKey, oidP256), bits(pub)), ski: ski[:]}
		}
		// A scalar at or above the group order (odds 2^-32): hash again.
		d = sha256.Sum256(d[:])
	}
}

// sign returns a deterministic (RFC 6979) ECDSA-SHA256 signature of msg.
func (k *key) sign(msg []byte) []byte {
	digest := sha256.Sum256(msg)
	sig, err := k.priv.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		panic(fmt.Sprintf("oddcert: sign: %v", err))
	}
	return sig
}

// secp256k1SPKI is a SubjectPublicKeyInfo on secp256k1 (the Bitcoin curve),
// which neither crypto/x509 nor ct-go supports. The point is the curve's
// generator, so it is a genuine point on the curve.
var secp256k1SPKI = seq(seq(oidECPublicKey, oidSecp256k1), bits(mustHex(
	"04"+
		"79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"+
		"483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8")))
