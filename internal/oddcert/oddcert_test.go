package oddcert

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"maps"
	"math/big"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/certificate-transparency-go/ctutil"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/net/idna"

	"github.com/ct-exporter/ct_exporter/config"
)

func caseByName(t *testing.T, name string) Case {
	t.Helper()
	for _, c := range Cases() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no case %q", name)
	return Case{}
}

// ctParse is ct-go's verdict on a certificate: fatal when it returns no
// certificate or an error IsFatal says is fatal.
func ctParse(der []byte) (*ctx509.Certificate, error, bool) {
	c, err := ctx509.ParseCertificate(der)
	return c, err, c == nil || (err != nil && ctx509.IsFatal(err))
}

// normalize is an independent reading of the contract's normalization, for
// comparing ct-go's names with the corpus's: lower case, no trailing dot,
// each non-ASCII label as punycode.
func normalize(n string) string {
	labels := strings.Split(strings.TrimSuffix(strings.ToLower(n), "."), ".")
	for i, l := range labels {
		if a, err := idna.Punycode.ToASCII(l); err == nil {
			labels[i] = a
		}
	}
	return strings.Join(labels, ".")
}

func TestBuildIsDeterministic(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 30, 0, 0, time.UTC)
	a, b := build(at), build(at)
	if !reflect.DeepEqual(a.cases, b.cases) || !reflect.DeepEqual(a.psc, b.psc) {
		t.Fatal("two builds at the same time differ")
	}
	if !reflect.DeepEqual(Cases(), Cases()) || !reflect.DeepEqual(PSC(), PSC()) {
		t.Fatal("Cases or PSC changed between calls")
	}
	// Only the dates move with the build time: the keys stay.
	later := build(at.Add(time.Hour))
	for i := range a.cases {
		if a.cases[i].SPKISHA256 != later.cases[i].SPKISHA256 {
			t.Errorf("%s: the key changed with the build time", a.cases[i].Name)
		}
		if !a.cases[i].Malformed && !a.cases[i].NotBefore.Equal(oddNotBefore) &&
			a.cases[i].TBSSHA256 == later.cases[i].TBSSHA256 {
			t.Errorf("%s: dates relative to the build time did not move", a.cases[i].Name)
		}
	}
}

func TestEveryCaseIsPresentOnce(t *testing.T) {
	want := []string{
		"control-cert", "control-precert", "control-final", "rogue-cert",
		"bad-certificate-policies", "bad-uri-san", "uri-control-char-san", "secp256k1-key",
		"signature-algorithm-mismatch", "unknown-critical-extension", "duplicate-basic-constraints",
		"duplicate-san", "two-cns-first-watched", "multivalued-rdn-cn", "high-tag-attribute",
		"cn-bmpstring", "cn-universalstring", "cn-teletexstring", "cn-printablestring", "cn-ia5string",
		"cn-invalid-utf8", "utf8-dnsname", "idna-invalid-label", "wildcard-san", "wildcard-no-parent",
		"upper-case-trailing-dot", "ip-san", "negative-serial", "empty-serial", "v1-certificate",
		"utctime-no-seconds", "generalizedtime-fraction", "generalizedtime-before-2050",
		"trailing-bytes", "bad-name-constraints", "empty-san", "mistagged-san", "many-sans",
		"long-issuer-cn", "truncated", "garbage-sequence", "lookalikes", "rogue-wildcard", "rogue-ip",
	}
	var got []string
	for _, c := range Cases() {
		got = append(got, c.Name)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("cases\n got %q\nwant %q", got, want)
	}
}

// TestStrictParsers holds StrictFails, StdlibFails and StrictWrongNames to
// what ct-go's and crypto/x509's parsers actually do.
func TestStrictParsers(t *testing.T) {
	p := PSC()
	for _, c := range append(Cases(), p.Precert, p.Final) {
		t.Run(c.Name, func(t *testing.T) {
			ct, ctErr, fatal := ctParse(c.DER)
			if fatal != c.StrictFails {
				t.Errorf("ct-go fatal = %v (err %v), StrictFails = %v", fatal, ctErr, c.StrictFails)
			}
			if _, err := x509.ParseCertificate(c.DER); (err != nil) != c.StdlibFails {
				t.Errorf("crypto/x509 err = %v, StdlibFails = %v", err, c.StdlibFails)
			}
			if fatal {
				return
			}
			var names []string
			if cn := ct.Subject.CommonName; cn != "" {
				names = append(names, normalize(cn))
			}
			for _, n := range ct.DNSNames {
				names = append(names, normalize(n))
			}
			slices.Sort(names)
			names = slices.Compact(names)
			want := slices.Sorted(slices.Values(c.Names))
			if wrong := !slices.Equal(names, want); wrong != c.StrictWrongNames {
				t.Errorf("ct-go names %q, Names %q, StrictWrongNames = %v", names, want, c.StrictWrongNames)
			}
		})
	}
}

// TestCrossCheckWithCTGo compares what the builder says with what ct-go
// reads wherever ct-go can read the certificate, the TBS identity above all:
// the builder leaves the CT extensions out of its own elements, ct-go
// removes them from the parsed TBS and re-encodes it.
func TestCrossCheckWithCTGo(t *testing.T) {
	p := PSC()
	for _, c := range append(Cases(), p.Final) {
		ct, _, fatal := ctParse(c.DER)
		if fatal {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			var stripped []byte
			var err error
			switch {
			case c.Precert:
				stripped, err = ctx509.RemoveCTPoison(ct.RawTBSCertificate)
			case c.SCTs > 0:
				stripped, err = ctx509.RemoveSCTList(ct.RawTBSCertificate)
			default:
				stripped = ct.RawTBSCertificate
			}
			if err != nil {
				t.Fatalf("ct-go: %v", err)
			}
			if sha256.Sum256(stripped) != c.TBSSHA256 {
				t.Errorf("TBSSHA256 %x, ct-go %x", c.TBSSHA256, sha256.Sum256(stripped))
			}
			if sha256.Sum256(ct.RawSubjectPublicKeyInfo) != c.SPKISHA256 {
				t.Error("SPKISHA256 differs from ct-go's raw SPKI")
			}
			if ct.IsPrecertificate() != c.Precert {
				t.Errorf("Precert = %v, ct-go %v", c.Precert, ct.IsPrecertificate())
			}
			scts, err := x509util.ParseSCTsFromSCTList(&ct.SCTList)
			if err != nil {
				t.Fatalf("SCT list: %v", err)
			}
			if want := max(c.SCTs, 0); len(scts) != want {
				t.Errorf("ct-go reads %d SCTs, want %d", len(scts), want)
			}
			// The serial's content bytes as a two's complement INTEGER.
			serial := new(big.Int).SetBytes(mustHex(c.Serial))
			if len(c.Serial) > 0 && c.Serial[0] >= '8' {
				serial.Sub(serial, new(big.Int).Lsh(big.NewInt(1), uint(4*len(c.Serial))))
			}
			if ct.SerialNumber.Cmp(serial) != 0 {
				t.Errorf("Serial %s, ct-go %v", c.Serial, ct.SerialNumber)
			}
			if !ct.NotBefore.Equal(c.NotBefore) || !ct.NotAfter.Equal(c.NotAfter) {
				t.Errorf("validity %v–%v, ct-go %v–%v", c.NotBefore, c.NotAfter, ct.NotBefore, ct.NotAfter)
			}
			if got := ct.Issuer.String(); got != strings.ReplaceAll(c.IssuerDN, ", ", ",") {
				t.Errorf("IssuerDN %.80q, ct-go %.80q", c.IssuerDN, got)
			}
			if ct.Issuer.CommonName != c.IssuerLabel {
				t.Errorf("IssuerLabel %.80q, ct-go CN %.80q", c.IssuerLabel, ct.Issuer.CommonName)
			}
			var ips []netip.Addr
			for _, ip := range ct.IPAddresses {
				a, _ := netip.AddrFromSlice(ip)
				ips = append(ips, a.Unmap())
			}
			if !slices.Equal(ips, c.IPs) {
				t.Errorf("IPs %v, ct-go %v", c.IPs, ips)
			}
		})
	}
}

// TestIdentityWithoutCTExtensions covers the cases ct-go cannot read: for a
// certificate with neither poison nor SCT list, the identity is the hash of
// the TBSCertificate element exactly as the DER holds it.
func TestIdentityWithoutCTExtensions(t *testing.T) {
	for _, c := range Cases() {
		if c.Malformed || c.Precert || c.SCTs != 0 {
			continue
		}
		in := cryptobyte.String(c.DER)
		var body, tbs cryptobyte.String
		if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
			t.Fatalf("%s: no TBSCertificate", c.Name)
		}
		if sha256.Sum256(tbs) != c.TBSSHA256 {
			t.Errorf("%s: TBSSHA256 is not the hash of the TBS element", c.Name)
		}
	}
}

// TestSignaturesAreReal checks each certificate crypto/x509 can parse
// against its Issuer: the signatures are real, and Issuer is the CA that
// made them.
func TestSignaturesAreReal(t *testing.T) {
	for _, c := range Cases() {
		leaf, err := x509.ParseCertificate(c.DER)
		if err != nil {
			continue
		}
		iss, err := x509.ParseCertificate(c.Issuer)
		if err != nil {
			t.Fatalf("%s: issuer: %v", c.Name, err)
		}
		if err := leaf.CheckSignatureFrom(iss); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		if err := iss.CheckSignatureFrom(iss); err != nil {
			t.Errorf("%s: issuer is not a self-signed CA: %v", c.Name, err)
		}
	}
	// The control certificate is good enough for a log to accept.
	c := caseByName(t, "control-cert")
	leaf, _ := x509.ParseCertificate(c.DER)
	roots := x509.NewCertPool()
	iss, _ := x509.ParseCertificate(c.Issuer)
	roots.AddCert(iss)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "www.example.com"}); err != nil {
		t.Errorf("control-cert does not verify: %v", err)
	}
}

// TestEmbeddedSCTsVerify checks the SCT lists with ct-go's verifier: each
// SCT is a real signature over the precert_entry the final certificate
// stands for.
func TestEmbeddedSCTsVerify(t *testing.T) {
	p := PSC()
	for _, c := range []Case{caseByName(t, "control-final"), p.Final} {
		leaf, err := ctx509.ParseCertificate(c.DER)
		if err != nil {
			t.Fatal(err)
		}
		iss, err := ctx509.ParseCertificate(c.Issuer)
		if err != nil {
			t.Fatal(err)
		}
		scts, err := x509util.ParseSCTsFromSCTList(&leaf.SCTList)
		if err != nil || len(scts) != 2 {
			t.Fatalf("%s: %d SCTs, %v", c.Name, len(scts), err)
		}
		for i, sct := range scts {
			if err := ctutil.VerifySCT(newKey("log "+string(rune('A'+i))).priv.Public(), []*ctx509.Certificate{leaf, iss}, sct, true); err != nil {
				t.Errorf("%s: SCT %d: %v", c.Name, i, err)
			}
		}
	}
}

// TestExpectations pins the outcomes the brief spells out, so a slip in the
// reference matcher or a builder cannot pass unnoticed.
func TestExpectations(t *testing.T) {
	now := time.Now()
	noWatch := map[string]bool{"lookalikes": true, "wildcard-no-parent": true, "truncated": true, "garbage-sequence": true}
	for _, c := range Cases() {
		if len(c.Verdicts) == 0 != noWatch[c.Name] {
			t.Errorf("%s: verdicts %v", c.Name, c.Verdicts)
		}
		if c.Malformed {
			if c.TBSSHA256 != ([32]byte{}) || len(c.Names) > 0 || !c.StrictFails {
				t.Errorf("%s: a malformed case carries facts", c.Name)
			}
			continue
		}
		if !c.NotBefore.Before(now) || !c.NotAfter.After(now) {
			t.Errorf("%s: validity %v–%v does not cover now", c.Name, c.NotBefore, c.NotAfter)
		}
		for _, n := range c.Names {
			if n != normalize(n) || strings.ContainsFunc(n, func(r rune) bool { return r > 0x7e }) {
				t.Errorf("%s: name %q is not normalized", c.Name, n)
			}
		}
		if c.DER[0] != 0x30 || c.IssuerDN == "" || c.IssuerLabel == "" {
			t.Errorf("%s: incomplete", c.Name)
		}
	}

	allowedBoth := map[string]string{"example.com": IssuerAllowed, "watched.test": IssuerAllowed}
	verdicts := map[string]map[string]string{
		"control-cert":          allowedBoth,
		"control-final":         {"example.com": IssuerAllowed},
		"rogue-cert":            {"example.com": IssuerUnexpected, "api.example.com": Unreviewed, "watched.test": IssuerUnexpected},
		"secp256k1-key":         {"example.com": Authorized},
		"duplicate-san":         {"example.com": IssuerAllowed},
		"two-cns-first-watched": {"example.com": IssuerAllowed},
		"cn-bmpstring":          {"xn--bcher-kva.example": Unreviewed},
		"idna-invalid-label":    {"xn--bcher-kva.example": Unreviewed},
		"wildcard-san":          {"example.com": IssuerAllowed, "api.example.com": Unreviewed},
		"mistagged-san":         {"example.com": IssuerAllowed, "api.example.com": Unreviewed, "watched.test": IssuerAllowed},
		"ip-san":                {"192.0.2.0/24": Unreviewed},
		"many-sans":             allowedBoth,
		"long-issuer-cn":        {"example.com": IssuerUnexpected},
		"rogue-wildcard":        {"example.com": IssuerUnexpected, "api.example.com": Unreviewed},
		"rogue-ip":              {"192.0.2.0/24": Unreviewed},
		"lookalikes":            {},
		"wildcard-no-parent":    {},
	}
	for name, want := range verdicts {
		if got := caseByName(t, name).Verdicts; !maps.Equal(got, want) {
			t.Errorf("%s: verdicts %v, want %v", name, got, want)
		}
	}

	pre, final := caseByName(t, "control-precert"), caseByName(t, "control-final")
	if pre.TBSSHA256 != final.TBSSHA256 || bytes.Equal(pre.DER, final.DER) || !pre.Precert || final.Precert ||
		pre.SCTs != -1 || final.SCTs != 2 || pre.Serial != final.Serial {
		t.Error("control-precert and control-final are not one issuance")
	}
	if c := caseByName(t, "control-cert"); c.TBSSHA256 == pre.TBSSHA256 || c.IssuerDN != "CN=Odd CA, O=Odd Org, C=US" || c.IssuerLabel != "Odd CA" {
		t.Errorf("control-cert: %s / %s", c.IssuerDN, c.IssuerLabel)
	}
	if c := caseByName(t, "rogue-cert"); c.IssuerDN != "CN=Rogue CA, O=Rogue, C=ZZ" {
		t.Errorf("rogue-cert issuer %s", c.IssuerDN)
	}
	if s := caseByName(t, "negative-serial").Serial; s != "ff7a11c0de" {
		t.Errorf("negative serial %s", s)
	}
	if s := caseByName(t, "empty-serial").Serial; s != "" {
		t.Errorf("empty serial %s", s)
	}
	if c := caseByName(t, "many-sans"); len(c.Names) != 1000 || c.Names[999] != "watched.test" {
		t.Errorf("many-sans has %d names", len(c.Names))
	}
	if c := caseByName(t, "long-issuer-cn"); len(c.IssuerLabel) != 40000 || !strings.HasPrefix(c.IssuerDN, "CN=long-long-") {
		t.Errorf("long issuer CN has %d characters", len(c.IssuerLabel))
	}
	if c, ctl := caseByName(t, "truncated"), caseByName(t, "control-cert"); !bytes.HasPrefix(ctl.DER, c.DER) || len(c.DER) >= len(ctl.DER) {
		t.Error("truncated is not a cut-off control-cert")
	}
	if c := caseByName(t, "trailing-bytes"); !bytes.HasSuffix(c.DER, []byte("junk")) {
		t.Error("trailing-bytes has no trailing junk")
	}
	if c := caseByName(t, "generalizedtime-fraction"); c.NotAfter.Nanosecond() != 5e8 {
		t.Errorf("fractional NotAfter %v", c.NotAfter)
	}
	// The punycode in the expectations is what IDNA gives for the raw names.
	for raw, want := range map[string]string{
		"x_y.bücher.example": "x_y.xn--bcher-kva.example", "bmp.bücher.example": "bmp.xn--bcher-kva.example",
		"WWW.Example.COM.": "www.example.com",
	} {
		if got := normalize(raw); got != want {
			t.Errorf("normalize(%q) = %q, want %q", raw, got, want)
		}
	}
	if k := caseByName(t, "secp256k1-key").SPKISHA256; hex.EncodeToString(k[:]) != Watches[0].AuthorizedKeys[0] {
		t.Error("the secp256k1 key is not the authorized one")
	}
}

func TestPSC(t *testing.T) {
	p := PSC()
	parse := func(what string, der []byte) *x509.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return c
	}
	ca, psc := parse("CA", p.CA), parse("PSC", p.PSC)
	pre, final := parse("precert", p.Precert.DER), parse("final", p.Final.DER)
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA: %v", err)
	}
	if err := psc.CheckSignatureFrom(ca); err != nil {
		t.Errorf("PSC: %v", err)
	}
	if err := pre.CheckSignatureFrom(psc); err != nil {
		t.Errorf("precert: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := final.Verify(x509.VerifyOptions{Roots: roots, DNSName: "psc.example.com"}); err != nil {
		t.Errorf("final: %v", err)
	}
	if !psc.IsCA || bytes.Equal(psc.RawSubject, ca.RawSubject) || !bytes.Equal(pre.RawIssuer, psc.RawSubject) ||
		!bytes.Equal(final.RawIssuer, ca.RawSubject) || !bytes.Equal(pre.AuthorityKeyId, psc.SubjectKeyId) ||
		!bytes.Equal(final.AuthorityKeyId, ca.SubjectKeyId) || !bytes.Equal(p.Precert.Issuer, p.PSC) || !bytes.Equal(p.Final.Issuer, p.CA) {
		t.Error("the chain is not CA → PSC → precert, CA → final")
	}

	ctPSC, err := ctx509.ParseCertificate(p.PSC)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ctPSC.ExtKeyUsage, ctx509.ExtKeyUsageCertificateTransparency) {
		t.Error("the PSC lacks the CT precertificate signing EKU")
	}
	ctPre, err := ctx509.ParseCertificate(p.Precert.DER)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := ctx509.BuildPrecertTBS(ctPre.RawTBSCertificate, ctPSC)
	if err != nil {
		t.Fatal(err)
	}
	ctFinal, err := ctx509.ParseCertificate(p.Final.DER)
	if err != nil {
		t.Fatal(err)
	}
	stripped, err := ctx509.RemoveSCTList(ctFinal.RawTBSCertificate)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rebuilt, stripped) || sha256.Sum256(rebuilt) != p.Final.TBSSHA256 || p.Precert.TBSSHA256 != p.Final.TBSSHA256 {
		t.Error("the precertificate rebuilt per RFC 6962 §3.2 is not the final TBS without its SCT list")
	}
	want := map[string]string{"example.com": IssuerAllowed, "watched.test": IssuerAllowed}
	for _, c := range []Case{p.Precert, p.Final} {
		if c.IssuerDN != "CN=Odd CA, O=Odd Org, C=US" || c.IssuerLabel != "Odd CA" || !maps.Equal(c.Verdicts, want) {
			t.Errorf("%s: issuer %s, verdicts %v", c.Name, c.IssuerDN, c.Verdicts)
		}
	}
	if !p.Precert.Precert || p.Precert.SCTs != -1 || p.Final.Precert || p.Final.SCTs != 2 {
		t.Error("precert and final flags")
	}
}

// TestConfigYAML loads the rendered watches with the real configuration
// reader and checks it compiles them to the labels the verdicts use.
func TestConfigYAML(t *testing.T) {
	yml := ConfigYAML() + "sources:\n  - name: crtsh\n    type: crtsh\n"
	cfg, err := config.Parse([]byte(yml), "oddcert.yml")
	if err != nil {
		t.Fatalf("%v\n%s", err, yml)
	}
	got := cfg.Policy.Watches()
	if len(got) != len(Watches) {
		t.Fatalf("%d watches, want %d", len(got), len(Watches))
	}
	for i, w := range Watches {
		g := got[i]
		if g.Domain != w.Label || g.IncludeSubdomains != w.IncludeSubdomains ||
			len(g.ExpectedIssuers) != len(w.ExpectedIssuers) || len(g.AuthorizedKeys) != len(w.AuthorizedKeys) {
			t.Errorf("watch %d: %+v, want %+v", i, g, w)
		}
	}
}
