package oddcert

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"

	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// built is one build of the corpus.
type built struct {
	now                 time.Time
	notBefore, notAfter time.Time // of ordinary leaves
	odd, rogue, long    *ca
	cases               []Case
	psc                 PSCCase
}

// Fixed dates of the odd-time cases: NotBefore in the past, NotAfter in the
// future, both written in encodings a strict reader may refuse.
var (
	oddNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	oddNotAfter  = time.Date(2049, 12, 31, 23, 59, 0, 0, time.UTC)
)

// build makes the whole corpus; the same now gives the same bytes.
func build(now time.Time) *built {
	now = now.UTC().Truncate(time.Second)
	c := &built{
		now:       now,
		notBefore: now.Add(-24 * time.Hour),
		notAfter:  now.Add(90 * 24 * time.Hour),
	}
	caSince := now.AddDate(-1, 0, 0)
	c.odd = newCA("odd ca", "Odd CA", "Odd Org", "US", caSince, now)
	c.rogue = newCA("rogue ca", "Rogue CA", "Rogue", "ZZ", caSince, now)
	c.long = newCA("long ca", strings.Repeat("long-", 8000), "Odd Org", "US", caSince, now)
	c.addCases()
	c.psc = c.buildPSC()
	return c
}

// leaf is an ordinary end-entity certificate from iss, shaped like a
// public CA's: subject CN cn (UTF8String; O=Odd Subscriber when cn is
// empty), the DNS names as SANs, serverAuth, a DV policy.
func (c *built) leaf(id string, iss *ca, cn string, sans ...string) *cert {
	k := newKey(id)
	subject := name(rdn(atv(oidO, str(tagUTF8, "Odd Subscriber"))))
	if cn != "" {
		subject = name(cnRDN(str(tagUTF8, cn)))
	}
	exts := [][]byte{
		keyUsageExt(0x80, true), // digitalSignature
		ekuExt(oidServerAuth),
		basicConstraintsExt(false),
		skiExt(k.ski),
		akiExt(iss.key.ski),
	}
	if len(sans) > 0 {
		exts = append(exts, dnsSAN(sans...))
	}
	exts = append(exts, policiesExt(oidDVPolicy))
	return &cert{
		tbs: tbs{
			version:   versionV3,
			serial:    serialFor(id),
			sigAlg:    algECDSASHA256,
			issuer:    iss.name,
			notBefore: timeElem(c.notBefore),
			notAfter:  timeElem(c.notAfter),
			subject:   subject,
			spki:      k.spki,
			exts:      exts,
		},
		outerAlg: algECDSASHA256,
		signer:   iss.key,
	}
}

// finish fills in the case from the certificate it was built from: the
// bytes, identity and issuer facts, default validity (when the case did
// not set its own), and the verdicts of the reference matcher.
func (c *built) finish(e Case, crt *cert, iss *ca) Case {
	e.DER = crt.der()
	e.Issuer = iss.der
	e.TBSSHA256 = sha256.Sum256(crt.tbs.der(false))
	e.SPKISHA256 = sha256.Sum256(crt.tbs.spki)
	e.Serial = hex.EncodeToString(crt.tbs.serial)
	e.IssuerDN, e.IssuerLabel = iss.dn, iss.label()
	if e.NotBefore.IsZero() {
		e.NotBefore, e.NotAfter = c.notBefore, c.notAfter
	}
	for _, x := range crt.tbs.exts {
		if string(extOID(x)) == string(oidExtCTPoison) {
			e.Precert = true
		}
	}
	e.Verdicts = verdicts(e.Names, e.IPs, iss, e.SPKISHA256)
	return e
}

func (c *built) add(e Case, crt *cert, iss *ca) {
	c.cases = append(c.cases, c.finish(e, crt, iss))
}

// The cases. Each comment says what is odd and what the two strict
// parsers make of it (the package test checks both).
func (c *built) addCases() {
	odd, rogue := c.odd, c.rogue

	// control-cert: an ordinary, well-formed certificate for three names of
	// two watches. Both parsers accept it.
	control := c.leaf("control-cert", odd, "www.example.com", "www.example.com", "example.com", "watched.test")
	c.add(Case{Name: "control-cert", Names: []string{"www.example.com", "example.com", "watched.test"}}, control, odd)

	// control-precert / control-final: an ordinary precertificate (critical
	// poison) and its final certificate (the poison's place taken by an SCT
	// list of two SCTs): one issuance, the same TBSSHA256. Both parsers
	// accept both.
	pre := c.leaf("control-precert", odd, "shop.example.com", "shop.example.com")
	pre.tbs.exts = append(pre.tbs.exts, poisonExt())
	c.add(Case{Name: "control-precert", Names: []string{"shop.example.com"}, SCTs: -1}, pre, odd)
	final := *pre
	final.tbs.exts = append([][]byte(nil), pre.tbs.exts...)
	final.tbs.replaceExt(oidExtCTPoison, sctList(pre.tbs.der(false), odd, 2, c.now))
	c.add(Case{Name: "control-final", Names: []string{"shop.example.com"}, SCTs: 2}, &final, odd)

	// rogue-cert: an ordinary certificate from an issuer no watch expects.
	// Both parsers accept it.
	rc := c.leaf("rogue-cert", rogue, "www.example.com", "www.example.com", "api.example.com", "watched.test")
	c.add(Case{Name: "rogue-cert", Names: []string{"www.example.com", "api.example.com", "watched.test"}}, rc, rogue)

	// bad-certificate-policies: a policyInformation whose policyIdentifier
	// is an INTEGER, next to a watched SAN. Both parsers fail.
	x := c.leaf("bad-certificate-policies", odd, "", "policies.example.com")
	x.tbs.replaceExt(oidExtPolicies, ext(oidExtPolicies, false, seq(seq(tlv(cbasn1.INTEGER, []byte{5})))))
	c.add(Case{Name: "bad-certificate-policies", StrictFails: true, StdlibFails: true, Names: []string{"policies.example.com"}}, x, odd)

	// bad-uri-san: a URI SAN Go's url.Parse refuses (unclosed IPv6
	// literal), next to a watched dNSName in the same extension. Both
	// parsers fail (url.Parse).
	x = c.leaf("bad-uri-san", odd, "")
	x.tbs.exts = append(x.tbs.exts, sanExt(dnsGN("uri.example.com"), uriGN("http://[::1")))
	c.add(Case{Name: "bad-uri-san", StrictFails: true, StdlibFails: true, Names: []string{"uri.example.com"}}, x, odd)

	// uri-control-char-san: a URI SAN with a control character, which
	// url.Parse refuses too, before the watched dNSName. Both parsers fail.
	x = c.leaf("uri-control-char-san", odd, "")
	x.tbs.exts = append(x.tbs.exts, sanExt(uriGN("https://ctl.example.com/\x01"), dnsGN("ctl.example.com")))
	c.add(Case{Name: "uri-control-char-san", StrictFails: true, StdlibFails: true, Names: []string{"ctl.example.com"}}, x, odd)

	// secp256k1-key: an EC key on secp256k1, a curve neither parser knows.
	// The key is authorized for example.com, so a reader must hash the raw
	// SPKI it cannot parse. Both parsers fail (unsupported curve).
	x = c.leaf("secp256k1-key", odd, "k1.example.com", "k1.example.com")
	x.tbs.spki = secp256k1SPKI
	c.add(Case{Name: "secp256k1-key", StrictFails: true, StdlibFails: true, Names: []string{"k1.example.com"}}, x, odd)

	// signature-algorithm-mismatch: the outer signatureAlgorithm
	// (sha256WithRSAEncryption) differs from the TBS's signature field
	// (ecdsa-with-SHA256), which RFC 5280 §4.1.1.2 forbids. Both parsers
	// fail.
	x = c.leaf("signature-algorithm-mismatch", odd, "sigalg.example.com", "sigalg.example.com")
	x.outerAlg = algRSASHA256
	c.add(Case{Name: "signature-algorithm-mismatch", StrictFails: true, StdlibFails: true, Names: []string{"sigalg.example.com"}}, x, odd)

	// unknown-critical-extension: a critical extension nobody knows. Both
	// parsers accept it (only verification refuses it).
	x = c.leaf("unknown-critical-extension", odd, "critical.example.com", "critical.example.com")
	x.tbs.exts = append(x.tbs.exts, ext(oid(1, 3, 6, 1, 4, 1, 55555, 1, 1), true, str(tagUTF8, "odd")))
	c.add(Case{Name: "unknown-critical-extension", Names: []string{"critical.example.com"}}, x, odd)

	// duplicate-basic-constraints: two identical basicConstraints
	// extensions (RFC 5280 §4.2: at most one instance of an extension).
	// ct-go accepts it; crypto/x509 fails (duplicate extension).
	x = c.leaf("duplicate-basic-constraints", odd, "dupbc.example.com", "dupbc.example.com")
	x.tbs.exts = append(x.tbs.exts, basicConstraintsExt(false))
	c.add(Case{Name: "duplicate-basic-constraints", StdlibFails: true, Names: []string{"dupbc.example.com"}}, x, odd)

	// duplicate-san: two SAN extensions; the watched name is only in the
	// first, a decoy in the second, and the subject has no CN. A reader
	// that keeps the last SAN extension misses the watch: ct-go accepts it
	// and reports only the decoy; crypto/x509 fails (duplicate extension).
	x = c.leaf("duplicate-san", odd, "")
	x.tbs.exts = append(x.tbs.exts, dnsSAN("dupsan.example.com"), dnsSAN("decoy.invalid"))
	c.add(Case{Name: "duplicate-san", StdlibFails: true, StrictWrongNames: true, Names: []string{"dupsan.example.com", "decoy.invalid"}}, x, odd)

	// two-cns-first-watched: two CN attributes in separate RDNs, the
	// watched one first; no SAN. Both parsers accept it, and pkix.Name
	// keeps the last CN only: ct-go reports the decoy.
	x = c.leaf("two-cns-first-watched", odd, "")
	x.tbs.subject = name(cnRDN(str(tagUTF8, "twocn.example.com")), cnRDN(str(tagUTF8, "decoy.invalid")))
	c.add(Case{Name: "two-cns-first-watched", StrictWrongNames: true, Names: []string{"twocn.example.com", "decoy.invalid"}}, x, odd)

	// multivalued-rdn-cn: the watched CN inside a multi-valued RDN
	// (O + CN in one SET), and another CN in the RDN after it; no SAN.
	// Both parsers accept it; ct-go's CommonName is the decoy.
	x = c.leaf("multivalued-rdn-cn", odd, "")
	x.tbs.subject = name(
		rdn(atv(oidO, str(tagUTF8, "Odd Subscriber")), atv(oidCN, str(tagUTF8, "multi.example.com"))),
		cnRDN(str(tagUTF8, "decoy.invalid")),
	)
	c.add(Case{Name: "multivalued-rdn-cn", StrictWrongNames: true, Names: []string{"multi.example.com", "decoy.invalid"}}, x, odd)

	// high-tag-attribute: an OU whose value has tag number 128 (the
	// multi-byte high-tag-number form, 1f 81 00), before the watched CN.
	// ct-go accepts it; crypto/x509 fails (cryptobyte reads no high tags).
	x = c.leaf("high-tag-attribute", odd, "", "hightag.example.com")
	x.tbs.subject = name(
		rdn(atv(oidC, str(tagPrintable, "US"))),
		rdn(atv(oidOU, rawTLV([]byte{0x1f, 0x81, 0x00}, []byte("odd")))),
		cnRDN(str(tagUTF8, "hightag.example.com")),
	)
	c.add(Case{Name: "high-tag-attribute", StdlibFails: true, Names: []string{"hightag.example.com"}}, x, odd)

	// cn-*: the only name is a CN in each string type a CN can have. Both
	// parsers accept all of them except UniversalString, which
	// crypto/x509 refuses and ct-go parses to an empty CommonName.
	// BMPString (UTF-16BE) with a non-ASCII label:
	x = c.leaf("cn-bmpstring", odd, "")
	x.tbs.subject = name(cnRDN(bmp("bmp.bücher.example")))
	c.add(Case{Name: "cn-bmpstring", Names: []string{"bmp.xn--bcher-kva.example"}}, x, odd)
	// UniversalString (UTF-32BE):
	x = c.leaf("cn-universalstring", odd, "")
	x.tbs.subject = name(cnRDN(universal("universal.example.com")))
	c.add(Case{Name: "cn-universalstring", StdlibFails: true, StrictWrongNames: true, Names: []string{"universal.example.com"}}, x, odd)
	// TeletexString (T.61), ASCII content:
	x = c.leaf("cn-teletexstring", odd, "")
	x.tbs.subject = name(cnRDN(str(tagTeletex, "teletex.example.com")))
	c.add(Case{Name: "cn-teletexstring", Names: []string{"teletex.example.com"}}, x, odd)
	// PrintableString:
	x = c.leaf("cn-printablestring", odd, "")
	x.tbs.subject = name(cnRDN(str(tagPrintable, "printable.example.com")))
	c.add(Case{Name: "cn-printablestring", Names: []string{"printable.example.com"}}, x, odd)
	// IA5String:
	x = c.leaf("cn-ia5string", odd, "")
	x.tbs.subject = name(cnRDN(str(tagIA5, "ia5.example.com")))
	c.add(Case{Name: "cn-ia5string", Names: []string{"ia5.example.com"}}, x, odd)

	// cn-invalid-utf8: a UTF8String CN holding Latin-1 bytes (not UTF-8),
	// next to a watched SAN. The CN is not a name; the certificate still is
	// recorded. Both parsers fail (invalid UTF-8).
	x = c.leaf("cn-invalid-utf8", odd, "", "utf8.example.com")
	x.tbs.subject = name(cnRDN(str(tagUTF8, "caf\xe9.\xff\xfe.invalid")))
	c.add(Case{Name: "cn-invalid-utf8", StrictFails: true, StdlibFails: true, Names: []string{"utf8.example.com"}}, x, odd)

	// utf8-dnsname: a dNSName holding raw UTF-8 (an IA5String may not),
	// which IDNA maps to the watched punycode name. ct-go accepts it (and
	// reports the raw UTF-8); crypto/x509 fails (malformed dNSName).
	x = c.leaf("utf8-dnsname", odd, "", "shop.bücher.example")
	c.add(Case{Name: "utf8-dnsname", StdlibFails: true, Names: []string{"shop.xn--bcher-kva.example"}}, x, odd)

	// idna-invalid-label: a raw UTF-8 dNSName IDNA refuses as a whole (the
	// underscore breaks STD3 rules). Converted label by label it is
	// x_y.xn--bcher-kva.example, under the bücher.example watch. ct-go
	// accepts it; crypto/x509 fails (malformed dNSName).
	x = c.leaf("idna-invalid-label", odd, "", "x_y.bücher.example")
	c.add(Case{Name: "idna-invalid-label", StdlibFails: true, Names: []string{"x_y.xn--bcher-kva.example"}}, x, odd)

	// wildcard-san: *.example.com concerns example.com (a subdomain of it)
	// and api.example.com (one label below example.com). Both parsers
	// accept it, as they do the next two.
	x = c.leaf("wildcard-san", odd, "*.example.com", "*.example.com")
	c.add(Case{Name: "wildcard-san", Names: []string{"*.example.com"}}, x, odd)

	// wildcard-no-parent: *.watched.test stands for names below
	// watched.test, which does not include its subdomains: no watch.
	x = c.leaf("wildcard-no-parent", odd, "*.watched.test", "*.watched.test")
	c.add(Case{Name: "wildcard-no-parent", Names: []string{"*.watched.test"}}, x, odd)

	// upper-case-trailing-dot: names in mixed case with a trailing dot.
	x = c.leaf("upper-case-trailing-dot", odd, "Shop.EXAMPLE.com.", "WWW.Example.COM.")
	c.add(Case{Name: "upper-case-trailing-dot", Names: []string{"shop.example.com", "www.example.com"}}, x, odd)

	// ip-san: IP address SANs only, one in the watched 192.0.2.0/24.
	x = c.leaf("ip-san", odd, "")
	x.tbs.exts = append(x.tbs.exts, sanExt(ipGN([]byte{192, 0, 2, 7}), ipGN(netip.MustParseAddr("2001:db8::1").AsSlice())))
	c.add(Case{Name: "ip-san", IPs: []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::1")}}, x, odd)

	// negative-serial: the serial INTEGER is negative (RFC 5280 §4.1.2.2:
	// positive). ct-go accepts it; crypto/x509 fails (since Go 1.23).
	x = c.leaf("negative-serial", odd, "negserial.example.com", "negserial.example.com")
	x.tbs.serial = mustHex("ff7a11c0de")
	c.add(Case{Name: "negative-serial", StdlibFails: true, Names: []string{"negserial.example.com"}}, x, odd)

	// empty-serial: the serial INTEGER has no content bytes at all (02 00),
	// which is not a valid INTEGER. Serial is "". Both parsers fail.
	x = c.leaf("empty-serial", odd, "emptyserial.example.com", "emptyserial.example.com")
	x.tbs.serial = []byte{}
	c.add(Case{Name: "empty-serial", StrictFails: true, StdlibFails: true, Names: []string{"emptyserial.example.com"}}, x, odd)

	// v1-certificate: no version field and no extensions; the watched name
	// is only in the CN. Both parsers accept it.
	x = c.leaf("v1-certificate", odd, "v1.example.com")
	x.tbs.version, x.tbs.exts = nil, nil
	c.add(Case{Name: "v1-certificate", Names: []string{"v1.example.com"}}, x, odd)

	// utctime-no-seconds: both times as UTCTime without seconds
	// (YYMMDDhhmmZ), which X.509 DER forbids and BER allowed. Both parsers
	// accept it.
	x = c.leaf("utctime-no-seconds", odd, "utcmin.example.com", "utcmin.example.com")
	x.tbs.notBefore = str(cbasn1.UTCTime, "2501010000Z")
	x.tbs.notAfter = str(cbasn1.UTCTime, "4912312359Z")
	c.add(Case{Name: "utctime-no-seconds", Names: []string{"utcmin.example.com"},
		NotBefore: oddNotBefore, NotAfter: oddNotAfter}, x, odd)

	// generalizedtime-fraction: NotAfter as GeneralizedTime with fractional
	// seconds (DER forbids the fraction here; a tolerant reader keeps it).
	// Both parsers fail.
	x = c.leaf("generalizedtime-fraction", odd, "fraction.example.com", "fraction.example.com")
	x.tbs.notBefore = str(cbasn1.UTCTime, "250101000000Z")
	x.tbs.notAfter = str(cbasn1.GeneralizedTime, "20491231235959.5Z")
	c.add(Case{Name: "generalizedtime-fraction", StrictFails: true, StdlibFails: true, Names: []string{"fraction.example.com"},
		NotBefore: oddNotBefore, NotAfter: time.Date(2049, 12, 31, 23, 59, 59, 5e8, time.UTC)}, x, odd)

	// generalizedtime-before-2050: both times as GeneralizedTime for years
	// before 2050, where RFC 5280 §4.1.2.5 requires UTCTime. Both parsers
	// accept it.
	x = c.leaf("generalizedtime-before-2050", odd, "gentime.example.com", "gentime.example.com")
	x.tbs.notBefore = str(cbasn1.GeneralizedTime, "20250101000000Z")
	x.tbs.notAfter = str(cbasn1.GeneralizedTime, "20480101000000Z")
	c.add(Case{Name: "generalizedtime-before-2050", Names: []string{"gentime.example.com"},
		NotBefore: oddNotBefore, NotAfter: time.Date(2048, 1, 1, 0, 0, 0, 0, time.UTC)}, x, odd)

	// trailing-bytes: junk after the Certificate SEQUENCE. Both parsers
	// fail (trailing data). DER keeps the junk: it is what a log serves.
	x = c.leaf("trailing-bytes", odd, "trailing.example.com", "trailing.example.com")
	x.trailing = []byte{0x00, 0x00, 'j', 'u', 'n', 'k'}
	c.add(Case{Name: "trailing-bytes", StrictFails: true, StdlibFails: true, Names: []string{"trailing.example.com"}}, x, odd)

	// bad-name-constraints: a critical nameConstraints extension whose
	// GeneralSubtree claims more bytes than it has. Both parsers fail.
	x = c.leaf("bad-name-constraints", odd, "nc.example.com", "nc.example.com")
	x.tbs.exts = append(x.tbs.exts, ext(oidExtNameConstr, true, []byte{0x30, 0x04, 0xa0, 0x02, 0x30, 0x05}))
	c.add(Case{Name: "bad-name-constraints", StrictFails: true, StdlibFails: true, Names: []string{"nc.example.com"}}, x, odd)

	// empty-san: a SAN extension with no GeneralName at all (RFC 5280
	// requires at least one); the watched name is in the CN. Both parsers
	// accept it.
	x = c.leaf("empty-san", odd, "emptysan.example.com")
	x.tbs.exts = append(x.tbs.exts, sanExt())
	c.add(Case{Name: "empty-san", Names: []string{"emptysan.example.com"}}, x, odd)

	// mistagged-san: GeneralNames with tag number 2 in the universal (02)
	// and application (42) classes, naming watched.test and
	// api.example.com, besides a real dNSName for example.com. DER-wise they
	// are not dNSNames ([2] is context-specific), but Go's parsers (ct-go,
	// and the TLS clients built on them) read a GeneralName by its tag
	// number whatever the class, so a client may accept the certificate
	// for those names: a monitor must count them, and both watches are
	// concerned. crypto/x509 reports only the real one.
	x = c.leaf("mistagged-san", odd, "")
	x.tbs.exts = append(x.tbs.exts, sanExt(
		tlv(cbasn1.Tag(2), []byte("watched.test")),
		tlv(cbasn1.Tag(2)|0x40, []byte("api.example.com")),
		dnsGN("mistag.example.com"),
	))
	c.add(Case{Name: "mistagged-san", Names: []string{"watched.test", "api.example.com", "mistag.example.com"}}, x, odd)

	// many-sans: 1,000 dNSNames; the only one for watched.test is the last.
	// Both parsers accept it.
	many := make([]string, 0, 1000)
	for i := range 999 {
		many = append(many, fmt.Sprintf("n%03d.example.com", i))
	}
	many = append(many, "watched.test")
	x = c.leaf("many-sans", odd, "n000.example.com", many...)
	c.add(Case{Name: "many-sans", Names: many}, x, odd)

	// long-issuer-cn: the issuer's CN is 40,000 characters (the upper bound
	// is 64). The issuer is neither CN nor O "Odd CA", so issuer_unexpected.
	// Both parsers accept it.
	x = c.leaf("long-issuer-cn", c.long, "longissuer.example.com", "longissuer.example.com")
	c.add(Case{Name: "long-issuer-cn", Names: []string{"longissuer.example.com"}}, x, c.long)

	// truncated: an ordinary certificate cut off in its issuer Name, before
	// any name: Malformed. Both parsers fail.
	c.cases = append(c.cases, Case{Name: "truncated", StrictFails: true, StdlibFails: true, DER: control.der()[:60], Issuer: odd.der, Malformed: true, Verdicts: map[string]string{}})

	// garbage-sequence: a well-formed SEQUENCE that holds no certificate:
	// Malformed. Both parsers fail.
	c.cases = append(c.cases, Case{Name: "garbage-sequence", StrictFails: true, StdlibFails: true, Issuer: odd.der, Malformed: true, Verdicts: map[string]string{},
		DER: seq(octets([]byte("not a certificate")), integer([]byte{7}), str(tagUTF8, "www.example.com"))})

	// lookalikes: names crt.sh's substring search returns for the watches
	// but that none of them concerns, and an IP address outside the prefix.
	// Both parsers accept it.
	look := []string{"notexample.com", "example.com.evil.net", "wwwexample.com", "www.example.co",
		"xn--bcher-kva.example.evil", "sub.watched.test", "watched.test.evil", "api.example.com.evil", "192.0.2.1.nip.io"}
	x = c.leaf("lookalikes", odd, "notexample.com")
	gns := [][]byte{}
	for _, n := range look {
		gns = append(gns, dnsGN(n))
	}
	x.tbs.exts = append(x.tbs.exts, sanExt(append(gns, ipGN([]byte{198, 51, 100, 1}))...))
	c.add(Case{Name: "lookalikes", Names: look, IPs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}, x, odd)

	// rogue-wildcard and rogue-ip: a wildcard and an IP address from the
	// unexpected issuer. Both parsers accept them.
	x = c.leaf("rogue-wildcard", rogue, "", "*.example.com")
	c.add(Case{Name: "rogue-wildcard", Names: []string{"*.example.com"}}, x, rogue)
	x = c.leaf("rogue-ip", rogue, "")
	x.tbs.exts = append(x.tbs.exts, sanExt(ipGN([]byte{192, 0, 2, 200})))
	c.add(Case{Name: "rogue-ip", IPs: []netip.Addr{netip.MustParseAddr("192.0.2.200")}}, x, rogue)
}

// buildPSC makes the issuance through a precertificate signing certificate.
func (c *built) buildPSC() PSCCase {
	odd := c.odd
	pscKey := newKey("psc")
	pscName := caName("Odd CA Precertificate Signing", "Odd Org", "US")
	psc := &cert{
		tbs: tbs{
			version:   versionV3,
			serial:    serialFor("psc"),
			sigAlg:    algECDSASHA256,
			issuer:    odd.name,
			notBefore: timeElem(c.notBefore),
			notAfter:  timeElem(c.now.AddDate(1, 0, 0)),
			subject:   pscName,
			spki:      pscKey.spki,
			exts: [][]byte{
				basicConstraintsExt(true),
				keyUsageExt(0x04, true), // keyCertSign
				ekuExt(oidCTPrecertSigner),
				skiExt(pscKey.ski),
				akiExt(odd.key.ski),
			},
		},
		outerAlg: algECDSASHA256,
		signer:   odd.key,
	}
	pscCA := &ca{key: pscKey, name: pscName, der: psc.der()}

	names := []string{"psc.example.com", "watched.test"}
	final := c.leaf("psc", odd, "psc.example.com", names...)
	pre := *final
	pre.tbs.issuer = pscName
	pre.tbs.exts = append([][]byte(nil), final.tbs.exts...)
	pre.tbs.replaceExt(oidExtAKI, akiExt(pscKey.ski))
	pre.tbs.exts = append(pre.tbs.exts, poisonExt())
	pre.signer = pscKey
	final.tbs.exts = append(final.tbs.exts, sctList(final.tbs.der(false), odd, 2, c.now))

	p := PSCCase{CA: odd.der, PSC: pscCA.der}
	p.Final = c.finish(Case{Name: "psc-final", Names: names, SCTs: 2}, final, odd)
	p.Precert = c.finish(Case{Name: "psc-precert", Names: names, SCTs: -1}, &pre, odd)
	// The precertificate's identity is its TBS rebuilt, which is the final
	// TBS without the SCT list, and its chain goes through the PSC.
	p.Precert.TBSSHA256 = p.Final.TBSSHA256
	p.Precert.Issuer = pscCA.der
	return p
}
