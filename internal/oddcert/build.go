package oddcert

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// tbs is a TBSCertificate held as its elements, so a case can replace any
// one of them with something odd.
type tbs struct {
	version             []byte // the whole [0] element; nil for a v1 certificate
	serial              []byte // contents of the serial number INTEGER
	sigAlg              []byte
	issuer              []byte // Name
	notBefore, notAfter []byte // Time elements
	subject             []byte // Name
	spki                []byte
	exts                [][]byte // Extension elements; none: no [3] field at all
}

var versionV3 = tlv(cbasn1.Tag(0).Constructed().ContextSpecific(), []byte{0x02, 0x01, 0x02})

// der encodes the TBSCertificate; without CT it leaves out the poison and
// SCT-list extensions and nothing else, which is what the issuance identity
// hashes (and, as in RFC 6962 §3.2 and ct-go, drops the [3] field if no
// extension remains).
func (t *tbs) der(withCT bool) []byte {
	var elems [][]byte
	if t.version != nil {
		elems = append(elems, t.version)
	}
	elems = append(elems, integer(t.serial), t.sigAlg, t.issuer, seq(t.notBefore, t.notAfter), t.subject, t.spki)
	var exts [][]byte
	for _, e := range t.exts {
		if withCT || !isCTExt(e) {
			exts = append(exts, e)
		}
	}
	if len(exts) > 0 {
		elems = append(elems, tlv(cbasn1.Tag(3).Constructed().ContextSpecific(), seq(exts...)))
	}
	return seq(elems...)
}

// replaceExt puts e in place of the first extension with the OID id.
func (t *tbs) replaceExt(id, e []byte) {
	for i, old := range t.exts {
		if string(extOID(old)) == string(id) {
			t.exts[i] = e
			return
		}
	}
	panic("oddcert: no extension to replace")
}

// cert is a Certificate: the TBS, the outer algorithm and who signs it.
type cert struct {
	tbs      tbs
	outerAlg []byte
	signer   *key
	trailing []byte // bytes after the Certificate SEQUENCE
}

func (c *cert) der() []byte {
	t := c.tbs.der(true)
	return append(seq(t, c.outerAlg, bits(c.signer.sign(t))), c.trailing...)
}

// ca is an issuing CA, with what a monitor must report for its issuances.
type ca struct {
	key    *key
	name   []byte // its subject Name DER
	cn, o  string
	dn     string // RFC 4514, most specific first
	der    []byte // its certificate
	serial []byte
}

func (a *ca) label() string {
	if a.cn != "" {
		return a.cn
	}
	return a.o
}

// newCA makes a self-signed CA certificate (CN cn, O o, C c), valid from
// notBefore for ten years past now.
func newCA(seed, cn, o, c string, notBefore, now time.Time) *ca {
	a := &ca{key: newKey(seed), name: caName(cn, o, c), cn: cn, o: o, dn: "CN=" + cn + ", O=" + o + ", C=" + c}
	a.serial = serialFor(seed)
	crt := &cert{
		tbs: tbs{
			version:   versionV3,
			serial:    a.serial,
			sigAlg:    algECDSASHA256,
			issuer:    a.name,
			notBefore: timeElem(notBefore),
			notAfter:  timeElem(now.AddDate(10, 0, 0)),
			subject:   a.name,
			spki:      a.key.spki,
			exts: [][]byte{
				basicConstraintsExt(true),
				keyUsageExt(0x06, true), // keyCertSign, cRLSign
				skiExt(a.key.ski),
			},
		},
		outerAlg: algECDSASHA256,
		signer:   a.key,
	}
	a.der = crt.der()
	return a
}

// serialFor is a positive 16-byte serial derived from a seed, with its top
// byte non-zero so the INTEGER is minimal.
func serialFor(seed string) []byte {
	h := sha256.Sum256([]byte("oddcert serial " + seed))
	s := h[:16]
	s[0] = s[0]&0x7f | 0x10
	return s
}

// sctList is the value of an SCT-list extension holding n SCTs for the
// issuance whose identity TBS is given, from n made-up logs. The SCT
// signatures are real ECDSA signatures over the RFC 6962 §3.2 precert_entry
// (by keys nobody publishes), so they have exactly the shape a log's have.
func sctList(identityTBS []byte, issuer *ca, n int, at time.Time) []byte {
	issuerKeyHash := sha256.Sum256(issuer.key.spki)
	var list cryptobyte.Builder
	list.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for i := range n {
			logKey := newKey("log " + string(rune('A'+i)))
			logID := sha256.Sum256(logKey.spki)
			ts := uint64(at.UnixMilli()) + uint64(i)
			var signed cryptobyte.Builder
			signed.AddUint8(0) // v1
			signed.AddUint8(0) // certificate_timestamp
			signed.AddUint64(ts)
			signed.AddUint16(1) // precert_entry
			signed.AddBytes(issuerKeyHash[:])
			signed.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(identityTBS) })
			signed.AddUint16(0) // no extensions
			sig := logKey.sign(signed.BytesOrPanic())
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint8(0)
				b.AddBytes(logID[:])
				b.AddUint64(ts)
				b.AddUint16(0)
				b.AddUint8(4) // sha256
				b.AddUint8(3) // ecdsa
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sig) })
			})
		}
	})
	return ext(oidExtCTSCTList, false, octets(list.BytesOrPanic()))
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
