package main

// DER building: certificates are assembled from pre-encoded pieces with
// cryptobyte, so that a million of them take seconds. Signatures are random
// bytes of the right shape: the monitor never verifies them, only the
// structure has to be right (and parse with certificate-transparency-go's
// x509 fork and crypto/x509).

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	tagExplicit0 = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagExplicit3 = cbasn1.Tag(3).Constructed().ContextSpecific()
	tagURI       = cbasn1.Tag(6).ContextSpecific()
	tagKeyID     = cbasn1.Tag(0).ContextSpecific()
)

// encode runs f on a fresh builder and returns the bytes.
func encode(f func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	f(&b)
	return b.BytesOrPanic()
}

func oidBytes(ids ...int) []byte {
	return encode(func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier(ids)) })
}

var (
	oidExtKeyUsage    = oidBytes(2, 5, 29, 15)
	oidExtExtKeyUsage = oidBytes(2, 5, 29, 37)
	oidExtBasic       = oidBytes(2, 5, 29, 19)
	oidExtSKI         = oidBytes(2, 5, 29, 14)
	oidExtAKI         = oidBytes(2, 5, 29, 35)
	oidExtAIA         = oidBytes(1, 3, 6, 1, 5, 5, 7, 1, 1)
	oidExtSAN         = oidBytes(2, 5, 29, 17)
	oidExtPolicies    = oidBytes(2, 5, 29, 32)
	oidExtCRLDP       = oidBytes(2, 5, 29, 31)
	oidExtCTPoison    = oidBytes(1, 3, 6, 1, 4, 1, 11129, 2, 4, 3)
	oidExtSCTList     = oidBytes(1, 3, 6, 1, 4, 1, 11129, 2, 4, 2)

	oidOCSP       = oidBytes(1, 3, 6, 1, 5, 5, 7, 48, 1)
	oidCAIssuers  = oidBytes(1, 3, 6, 1, 5, 5, 7, 48, 2)
	oidServerAuth = oidBytes(1, 3, 6, 1, 5, 5, 7, 3, 1)
	oidClientAuth = oidBytes(1, 3, 6, 1, 5, 5, 7, 3, 2)
	oidPolicyDV   = oidBytes(2, 23, 140, 1, 2, 1)
	oidPolicyAny  = oidBytes(2, 5, 29, 32, 0)
	oidQualCPS    = oidBytes(1, 3, 6, 1, 5, 5, 7, 2, 1)

	oidCountry = oidBytes(2, 5, 4, 6)
	oidOrg     = oidBytes(2, 5, 4, 10)
	oidCN      = oidBytes(2, 5, 4, 3)
	oidState   = oidBytes(2, 5, 4, 8)
	oidLocal   = oidBytes(2, 5, 4, 7)

	oidRSA       = oidBytes(1, 2, 840, 113549, 1, 1, 1)
	oidECKey     = oidBytes(1, 2, 840, 10045, 2, 1)
	oidP256      = oidBytes(1, 2, 840, 10045, 3, 1, 7)
	oidP384      = oidBytes(1, 3, 132, 0, 34)
	oidSHA256RSA = oidBytes(1, 2, 840, 113549, 1, 1, 11)
	oidECDSA256  = oidBytes(1, 2, 840, 10045, 4, 3, 2)
	oidECDSA384  = oidBytes(1, 2, 840, 10045, 4, 3, 3)

	derVersion3 = encode(func(b *cryptobyte.Builder) {
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { b.AddASN1Int64(2) })
	})
	derNull = []byte{0x05, 0x00}
	// CA:FALSE
	extBasicLeaf = extension(oidExtBasic, true, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {})
	})
	extEKUServer = extension(oidExtExtKeyUsage, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(oidServerAuth) })
	})
	extEKUServerClient = extension(oidExtExtKeyUsage, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(oidServerAuth); b.AddBytes(oidClientAuth) })
	})
	extKUEC   = keyUsage(0x80, 7) // digitalSignature
	extKURSA  = keyUsage(0xa0, 5) // digitalSignature, keyEncipherment
	extKUCA   = keyUsage(0x86, 1) // digitalSignature, keyCertSign, cRLSign
	extPoison = extension(oidExtCTPoison, true, func(b *cryptobyte.Builder) { b.AddBytes(derNull) })
)

// keyUsage encodes a one-byte KeyUsage BIT STRING extension (critical).
func keyUsage(bits byte, unused byte) []byte {
	return extension(oidExtKeyUsage, true, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) { b.AddUint8(unused); b.AddUint8(bits) })
	})
}

// extension encodes an Extension whose extnValue holds what value adds.
func extension(oid []byte, critical bool, value func(b *cryptobyte.Builder)) []byte {
	return encode(func(b *cryptobyte.Builder) { addExtension(b, oid, critical, value) })
}

func addExtension(b *cryptobyte.Builder, oid []byte, critical bool, value func(b *cryptobyte.Builder)) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// algID encodes an AlgorithmIdentifier.
func algID(oid []byte, params []byte) []byte {
	return encode(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(oid); b.AddBytes(params) })
	})
}

// rdn is one attribute of a distinguished name.
type rdn struct {
	oid   []byte
	value string
}

// name encodes a Name: C as PrintableString, the rest as UTF8String.
func name(attrs ...rdn) []byte {
	return encode(func(b *cryptobyte.Builder) { addName(b, attrs...) })
}

func addName(b *cryptobyte.Builder, attrs ...rdn) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(a.oid)
					tag := cbasn1.UTF8String
					if string(a.oid) == string(oidCountry) {
						tag = cbasn1.PrintableString
					}
					b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(a.value)) })
				})
			})
		}
	})
}

// keyKind is the type of a public key, which decides the signature shape
// of what it signs.
type keyKind uint8

const (
	keyRSA2048 keyKind = iota
	keyRSA4096
	keyP256
	keyP384
)

// sigAlgs are the AlgorithmIdentifiers keys of each kind sign with.
var sigAlgs = [...][]byte{
	keyRSA2048: algID(oidSHA256RSA, derNull),
	keyRSA4096: algID(oidSHA256RSA, derNull),
	keyP256:    algID(oidECDSA256, nil),
	keyP384:    algID(oidECDSA384, nil),
}

// sigAlg is the AlgorithmIdentifier a key of this kind signs with.
func (k keyKind) sigAlg() []byte { return sigAlgs[k] }

// addUnsigned adds a positive INTEGER whose magnitude is v (big-endian).
func addUnsigned(b *cryptobyte.Builder, v []byte) {
	for len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) {
		if v[0]&0x80 != 0 {
			b.AddUint8(0)
		}
		b.AddBytes(v)
	})
}

// ecSPKI is the SubjectPublicKeyInfo of a real point (parsers check that it
// is on the curve), derived from the seeded generator.
func ecSPKI(r *rand.Rand, k keyKind) []byte {
	curve, oid, n := ecdh.P256(), oidP256, 32
	if k == keyP384 {
		curve, oid, n = ecdh.P384(), oidP384, 48
	}
	scalar := make([]byte, n)
	for {
		fill(r, scalar)
		priv, err := curve.NewPrivateKey(scalar)
		if err != nil {
			continue // not below the order: draw again
		}
		pub := priv.PublicKey().Bytes()
		return encode(func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(algID(oidECKey, oid))
				b.AddASN1BitString(pub)
			})
		})
	}
}

func spkiFor(r *rand.Rand, k keyKind) []byte {
	switch k {
	case keyRSA2048:
		return rsaSPKI(r, 2048)
	case keyRSA4096:
		return rsaSPKI(r, 4096)
	}
	return ecSPKI(r, k)
}

// addValidity adds a Validity of UTCTimes (years before 2050).
func addValidity(b *cryptobyte.Builder, notBefore, notAfter time.Time) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, t := range []time.Time{notBefore, notAfter} {
			b.AddASN1(cbasn1.UTCTime, func(b *cryptobyte.Builder) { b.AddBytes(utcTime(t)) })
		}
	})
}

// utcTime formats YYMMDDHHMMSSZ without time.Format's cost.
func utcTime(t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	out := make([]byte, 0, 13)
	for _, v := range []int{y % 100, int(mo), d, h, mi, s} {
		out = append(out, byte('0'+v/10), byte('0'+v%10))
	}
	return append(out, 'Z')
}

// addSKI adds a SubjectKeyIdentifier extension.
func addSKI(b *cryptobyte.Builder, ski []byte) {
	addExtension(b, oidExtSKI, false, func(b *cryptobyte.Builder) { b.AddASN1OctetString(ski) })
}

// akiExtension is an AuthorityKeyIdentifier with a key identifier.
func akiExtension(ski []byte) []byte {
	return extension(oidExtAKI, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(tagKeyID, func(b *cryptobyte.Builder) { b.AddBytes(ski) })
		})
	})
}

// aiaExtension has an OCSP responder (when ocsp is set) and a caIssuers URL.
func aiaExtension(ocsp, caIssuers string) []byte {
	return extension(oidExtAIA, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, d := range []struct {
				oid []byte
				url string
			}{{oidOCSP, ocsp}, {oidCAIssuers, caIssuers}} {
				if d.url == "" {
					continue
				}
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(d.oid)
					b.AddASN1(tagURI, func(b *cryptobyte.Builder) { b.AddBytes([]byte(d.url)) })
				})
			}
		})
	})
}

// addCRLDP adds a CRLDistributionPoints extension with one full-name URL.
func addCRLDP(b *cryptobyte.Builder, url string) {
	addExtension(b, oidExtCRLDP, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { // distributionPoint
					b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { // fullName
						b.AddASN1(tagURI, func(b *cryptobyte.Builder) { b.AddBytes([]byte(url)) })
					})
				})
			})
		})
	})
}

// policiesExtension lists policy (and a CPS qualifier when cps is set).
func policiesExtension(policy []byte, cps string) []byte {
	return extension(oidExtPolicies, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(policy)
				if cps == "" {
					return
				}
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddBytes(oidQualCPS)
						b.AddASN1(cbasn1.IA5String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(cps)) })
					})
				})
			})
		})
	})
}

// tbsOf returns the TBSCertificate of a certificate's DER.
func tbsOf(der []byte) ([]byte, bool) {
	s := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !s.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		return nil, false
	}
	return tbs, true
}

// fill fills b from r.
func fill(r *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

// derBuf writes DER by appending: open reserves a three-byte length, close
// fills it in and moves the content back when fewer bytes are needed. It
// does no allocation beyond growing its buffer (cryptobyte allocates a
// builder per element, which costs more than the rest of generation).
type derBuf struct {
	b     []byte
	stack []int
}

func (d *derBuf) open(tag byte) {
	d.b = append(d.b, tag, 0, 0, 0)
	d.stack = append(d.stack, len(d.b))
}

func (d *derBuf) close() {
	start := d.stack[len(d.stack)-1]
	d.stack = d.stack[:len(d.stack)-1]
	n := len(d.b) - start
	h := start - 3
	switch {
	case n < 0x80:
		d.b[h] = byte(n)
		d.b = append(d.b[:h+1], d.b[start:]...)
	case n < 0x100:
		d.b[h], d.b[h+1] = 0x81, byte(n)
		d.b = append(d.b[:h+2], d.b[start:]...)
	case n < 0x10000:
		d.b[h], d.b[h+1], d.b[h+2] = 0x82, byte(n>>8), byte(n)
	default:
		panic("derBuf: element longer than 64 KiB")
	}
}

func (d *derBuf) raw(p []byte) { d.b = append(d.b, p...) }

// prim adds a primitive element.
func (d *derBuf) prim(tag byte, p []byte) {
	d.open(tag)
	d.raw(p)
	d.close()
}

func (d *derBuf) str(tag byte, s string) {
	d.open(tag)
	d.b = append(d.b, s...)
	d.close()
}

// unsigned adds a positive INTEGER whose magnitude is v (big-endian).
func (d *derBuf) unsigned(v []byte) {
	for len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	d.open(0x02)
	if v[0]&0x80 != 0 {
		d.b = append(d.b, 0)
	}
	d.raw(v)
	d.close()
}

// random appends n bytes from r.
func (d *derBuf) random(r *rand.Rand, n int) {
	l := len(d.b)
	d.b = slices.Grow(d.b, n)[:l+n]
	fill(r, d.b[l:])
}

// openExt starts an Extension up to the inside of its extnValue.
func (d *derBuf) openExt(oid []byte, critical bool) {
	d.open(0x30)
	d.raw(oid)
	if critical {
		d.raw([]byte{0x01, 0x01, 0xff})
	}
	d.open(0x04)
}

func (d *derBuf) closeExt() { d.close(); d.close() }

// ecdsaSig adds a random ECDSA-Sig-Value for the curve of kind k.
func (d *derBuf) ecdsaSig(r *rand.Rand, k keyKind) {
	n := 32
	if k == keyP384 {
		n = 48
	}
	var buf [48]byte
	d.open(0x30)
	for range 2 {
		fill(r, buf[:n])
		d.unsigned(buf[:n])
	}
	d.close()
}

// signature adds a random signature of the shape a key of kind k makes,
// as the BIT STRING of a certificate.
func (d *derBuf) signature(r *rand.Rand, k keyKind) {
	d.open(0x03)
	d.b = append(d.b, 0)
	switch k {
	case keyRSA2048:
		d.random(r, 256)
	case keyRSA4096:
		d.random(r, 512)
	default:
		d.ecdsaSig(r, k)
	}
	d.close()
}

// rsaSPKI is a SubjectPublicKeyInfo with a random modulus of bits bits:
// nobody factors it, and parsers only check its shape.
func rsaSPKI(r *rand.Rand, bits int) []byte {
	var mod [512]byte
	m := mod[:bits/8]
	fill(r, m)
	m[0] |= 0x80
	m[len(m)-1] |= 1
	d := derBuf{b: make([]byte, 0, bits/8+40)}
	d.open(0x30)
	d.raw(rsaAlg)
	d.open(0x03)
	d.b = append(d.b, 0)
	d.open(0x30)
	d.unsigned(m)
	d.raw([]byte{0x02, 0x03, 0x01, 0x00, 0x01})
	d.close()
	d.close()
	d.close()
	return d.b
}

var rsaAlg = algID(oidRSA, derNull)

// addSAN adds a SubjectAltName of DNS names (critical when the subject is empty).
func (d *derBuf) san(names []string, critical bool) {
	d.openExt(oidExtSAN, critical)
	d.open(0x30)
	for _, n := range names {
		d.str(0x82, n)
	}
	d.close()
	d.closeExt()
}

func (d *derBuf) crlDP(url string) {
	d.openExt(oidExtCRLDP, false)
	d.open(0x30)
	d.open(0x30)
	d.open(0xa0)
	d.open(0xa0)
	d.str(0x86, url)
	d.close()
	d.close()
	d.close()
	d.close()
	d.closeExt()
}

// sctListExt adds the embedded SCT list extension: an OCTET STRING holding
// a TLS SignedCertificateTimestampList of count v1 SCTs.
func (d *derBuf) sctListExt(r *rand.Rand, logIDs [][32]byte, count int, ts int64) {
	d.openExt(oidExtSCTList, false)
	d.open(0x04)
	list := len(d.b)
	d.b = append(d.b, 0, 0)
	for i := range count {
		sct := len(d.b)
		d.b = append(d.b, 0, 0, 0) // length, v1
		d.raw(logIDs[(i+int(ts))%len(logIDs)][:])
		d.b = binary.BigEndian.AppendUint64(d.b, uint64(ts+int64(i)*37))
		d.b = append(d.b, 0, 0, 4, 3) // no extensions, sha256, ecdsa
		sig := len(d.b)
		d.b = append(d.b, 0, 0)
		d.ecdsaSig(r, keyP256)
		binary.BigEndian.PutUint16(d.b[sig:], uint16(len(d.b)-sig-2))
		binary.BigEndian.PutUint16(d.b[sct:], uint16(len(d.b)-sct-2))
	}
	binary.BigEndian.PutUint16(d.b[list:], uint16(len(d.b)-list-2))
	d.close()
	d.closeExt()
}

// certificate wraps a TBSCertificate with the issuer's algorithm and a
// random signature.
func certificate(tbs []byte, signer keyKind, r *rand.Rand) []byte {
	d := derBuf{b: make([]byte, 0, len(tbs)+600)}
	d.open(0x30)
	d.raw(tbs)
	d.raw(signer.sigAlg())
	d.signature(r, signer)
	d.close()
	return d.b
}
