package main

// The CAs of the generated log: a handful of intermediates modelled on the
// ones that issue most of the Web PKI, under their roots. Their keys are
// derived from the seed, their certificates built like the leaves.

import (
	"crypto/sha256"
	"encoding/base64"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ca is a certificate authority: a root or an intermediate that issues leaves.
type ca struct {
	cn      string
	key     keyKind
	der     []byte // its certificate
	subject []byte // its Name, the issuer of what it signs
	spki    []byte
	ski     []byte
	keyHash [32]byte // SHA-256 of the SPKI: a precert_entry's issuer_key_hash

	// Intermediates only.
	weight    int
	validity  time.Duration
	serialLen int
	serialTop byte // the first serial byte is in [serialTop, serialTop+3]
	aki, aia  []byte
	policies  []byte
	crl       string // URL with {n} for a shard number, "" for none
	crlShards int
	chain     [][]byte   // intermediate, root
	chainFP   [][32]byte // SHA-256 of each, the static-ct-api fingerprints
	chainTLS  []byte     // the chain as an RFC 6962 certificate_chain
	// chainB64[r] is the base64 of chainTLS after r bytes of something
	// else: its encoding from its first full group of 3 bytes.
	chainB64 [3][]byte
}

type caSpec struct {
	cn, org, country string
	extra            []rdn
	key              keyKind
	root             int
	weight           int
	validity         time.Duration
	serialLen        int
	serialTop        byte
	ocsp, issuers    string
	crl              string
	crlShards        int
	cps              string
}

var rootSpecs = []caSpec{
	{cn: "ISRG Root X1", org: "Internet Security Research Group", country: "US", key: keyRSA4096},
	{cn: "ISRG Root X2", org: "Internet Security Research Group", country: "US", key: keyP384},
	{cn: "GTS Root R1", org: "Google Trust Services LLC", country: "US", key: keyRSA4096},
	{cn: "GTS Root R4", org: "Google Trust Services LLC", country: "US", key: keyP384},
	{cn: "USERTrust RSA Certification Authority", org: "The USERTRUST Network", country: "US", key: keyRSA4096,
		extra: []rdn{{oidState, "New Jersey"}, {oidLocal, "Jersey City"}}},
	{cn: "DigiCert Global Root G2", org: "DigiCert Inc", country: "US", key: keyRSA2048},
}

const day = 24 * time.Hour

var intermediateSpecs = []caSpec{
	{cn: "R10", org: "Let's Encrypt", country: "US", key: keyRSA2048, root: 0, weight: 14, validity: 90 * day,
		serialLen: 18, serialTop: 3, issuers: "http://r10.i.lencr.org/", crl: "http://r10.c.lencr.org/{n}.crl", crlShards: 128},
	{cn: "R11", org: "Let's Encrypt", country: "US", key: keyRSA2048, root: 0, weight: 14, validity: 90 * day,
		serialLen: 18, serialTop: 3, issuers: "http://r11.i.lencr.org/", crl: "http://r11.c.lencr.org/{n}.crl", crlShards: 128},
	{cn: "E5", org: "Let's Encrypt", country: "US", key: keyP384, root: 1, weight: 14, validity: 90 * day,
		serialLen: 18, serialTop: 3, issuers: "http://e5.i.lencr.org/", crl: "http://e5.c.lencr.org/{n}.crl", crlShards: 128},
	{cn: "E6", org: "Let's Encrypt", country: "US", key: keyP384, root: 1, weight: 14, validity: 90 * day,
		serialLen: 18, serialTop: 3, issuers: "http://e6.i.lencr.org/", crl: "http://e6.c.lencr.org/{n}.crl", crlShards: 128},
	{cn: "WR1", org: "Google Trust Services", country: "US", key: keyRSA2048, root: 2, weight: 10, validity: 90 * day,
		serialLen: 16, serialTop: 0x10, ocsp: "http://o.pki.goog/wr1", issuers: "http://i.pki.goog/wr1.crt",
		crl: "http://c.pki.goog/wr1/{n}.crl", crlShards: 1000},
	{cn: "WE1", org: "Google Trust Services", country: "US", key: keyP256, root: 3, weight: 12, validity: 90 * day,
		serialLen: 16, serialTop: 0x20, ocsp: "http://o.pki.goog/we1", issuers: "http://i.pki.goog/we1.crt",
		crl: "http://c.pki.goog/we1/{n}.crl", crlShards: 1000},
	{cn: "Sectigo RSA Domain Validation Secure Server CA", org: "Sectigo Limited", country: "GB", key: keyRSA2048, root: 4,
		weight: 11, validity: 365 * day, serialLen: 16, serialTop: 0x30,
		extra: []rdn{{oidState, "Greater Manchester"}, {oidLocal, "Salford"}},
		ocsp:  "http://ocsp.sectigo.com", issuers: "http://crt.sectigo.com/SectigoRSADomainValidationSecureServerCA.crt",
		cps: "https://sectigo.com/CPS"},
	{cn: "DigiCert Global G2 TLS RSA SHA256 2020 CA1", org: "DigiCert Inc", country: "US", key: keyRSA2048, root: 5,
		weight: 11, validity: 365 * day, serialLen: 16, serialTop: 0x08,
		ocsp: "http://ocsp.digicert.com", issuers: "http://cacerts.digicert.com/DigiCertGlobalG2TLSRSASHA2562020CA1-1.crt",
		crl: "http://crl3.digicert.com/DigiCertGlobalG2TLSRSASHA2562020CA1-{n}.crl", crlShards: 2, cps: "http://www.digicert.com/CPS"},
}

func (s *caSpec) name() []byte {
	attrs := []rdn{{oidCountry, s.country}}
	attrs = append(attrs, s.extra...)
	attrs = append(attrs, rdn{oidOrg, s.org}, rdn{oidCN, s.cn})
	return name(attrs...)
}

// buildCAs makes the roots and intermediates from the seed.
func buildCAs(seed uint64, epoch time.Time) (roots, cas []*ca) {
	r := rng(seed, streamPKI, 0)
	for _, s := range rootSpecs {
		c := &ca{cn: s.cn, key: s.key, subject: s.name(), spki: spkiFor(r, s.key), ski: randBytes(r, 20)}
		c.keyHash = sha256.Sum256(c.spki)
		c.der = caCertificate(r, c, c, epoch.AddDate(-10, 0, 0), epoch.AddDate(15, 0, 0))
		roots = append(roots, c)
	}
	for _, s := range intermediateSpecs {
		root := roots[s.root]
		c := &ca{
			cn: s.cn, key: s.key, subject: s.name(), spki: spkiFor(r, s.key), ski: randBytes(r, 20),
			weight: s.weight, validity: s.validity, serialLen: s.serialLen, serialTop: s.serialTop,
			crl: s.crl, crlShards: s.crlShards,
		}
		c.keyHash = sha256.Sum256(c.spki)
		c.aki = akiExtension(c.ski)
		c.aia = aiaExtension(s.ocsp, s.issuers)
		c.policies = policiesExtension(oidPolicyDV, s.cps)
		c.der = caCertificate(r, c, root, epoch.AddDate(-1, 0, 0), epoch.AddDate(2, 0, 0))
		c.chain = [][]byte{c.der, root.der}
		var b cryptobyte.Builder
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, der := range c.chain {
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(der) })
			}
		})
		c.chainTLS = b.BytesOrPanic()
		for r := range 3 {
			c.chainB64[r] = []byte(base64.StdEncoding.EncodeToString(c.chainTLS[(3-r)%3:]))
		}
		for _, der := range c.chain {
			c.chainFP = append(c.chainFP, sha256.Sum256(der))
		}
		cas = append(cas, c)
	}
	return roots, cas
}

// caCertificate is the certificate of c issued by parent (c itself for a root).
func caCertificate(r *rand.Rand, c, parent *ca, notBefore, notAfter time.Time) []byte {
	tbs := encode(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(derVersion3)
			addUnsigned(b, randBytes(r, 16))
			b.AddBytes(parent.key.sigAlg())
			b.AddBytes(parent.subject)
			addValidity(b, notBefore, notAfter)
			b.AddBytes(c.subject)
			b.AddBytes(c.spki)
			b.AddASN1(tagExplicit3, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(extKUCA)
					addExtension(b, oidExtBasic, true, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1Boolean(true)
							if c != parent {
								b.AddASN1Int64(0) // pathLenConstraint
							}
						})
					})
					addSKI(b, c.ski)
					if c != parent {
						b.AddBytes(extEKUServerClient)
						b.AddBytes(akiExtension(parent.ski))
						b.AddBytes(aiaExtension("", "http://x1.i.lencr.org/"))
						b.AddBytes(policiesExtension(oidPolicyAny, ""))
						addCRLDP(b, "http://x1.c.lencr.org/")
					}
				})
			})
		})
	})
	return certificate(tbs, parent.key, r)
}

// crlURL is the CRL URL of shard n, or "".
func (c *ca) crlURL(n int) string {
	if c.crl == "" {
		return ""
	}
	return strings.Replace(c.crl, "{n}", strconv.Itoa(n), 1)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	fill(r, b)
	return b
}
