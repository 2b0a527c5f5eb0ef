// Package oddcert is an adversarial corpus of certificates for the parts of
// ct_exporter that read certificates and match them against watches. Each
// certificate is assembled element by element (crypto/x509 refuses to make
// most of them) and carries its expected outcome, worked out from the
// builder's own inputs rather than by any parser: the names it carries, its
// issuance identity, issuer, serial, validity, and the verdict of every
// watch of a fixed configuration (Watches).
//
// The contract it checks: a certificate that names a watched domain is
// recorded, however odd, with the right watches and verdicts, exactly once;
// no strict X.509 parser is the gate. StrictFails and StdlibFails document
// which cases ct-go's and crypto/x509's parsers refuse (the package test
// holds them to it), so a reader that leans on either is caught.
//
// Everything is deterministic: keys come from fixed seeds and signatures are
// RFC 6979 ECDSA, so only the validity dates (relative to the time the
// corpus is built) change between runs.
package oddcert

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Watch is one watch of the corpus's fixed configuration.
type Watch struct {
	Domain            string // as written in the configuration
	Label             string // normalized: the watch label and the key of Case.Verdicts
	IncludeSubdomains bool
	ExpectedIssuers   []string
	AuthorizedKeys    []string // SPKI SHA-256, hex
}

// Watches is the configuration every case is judged against.
var Watches = []Watch{
	// The secp256k1 key is authorized: its SPKI hash must come from the raw
	// bytes even though no parser here understands the key.
	{Domain: "example.com", Label: "example.com", IncludeSubdomains: true,
		ExpectedIssuers: []string{"Odd CA"}, AuthorizedKeys: []string{hexSHA256(secp256k1SPKI)}},
	{Domain: "bücher.example", Label: "xn--bcher-kva.example", IncludeSubdomains: true},
	{Domain: "watched.test", Label: "watched.test", IncludeSubdomains: false,
		ExpectedIssuers: []string{"/^CN=Odd CA, O=Odd Org, C=US$/"}},
	// Only its exact name or the wildcard *.example.com concerns it.
	{Domain: "api.example.com", Label: "api.example.com", IncludeSubdomains: false},
	{Domain: "192.0.2.0/24", Label: "192.0.2.0/24", IncludeSubdomains: true},
}

// ConfigYAML renders Watches as the watches: section of a ct_exporter
// configuration (append a sources: section to make a whole file).
func ConfigYAML() string {
	var b strings.Builder
	b.WriteString("watches:\n")
	list := func(key string, vs []string) {
		if len(vs) == 0 {
			return
		}
		q := make([]string, len(vs))
		for i, v := range vs {
			q[i] = strconv.Quote(v)
		}
		fmt.Fprintf(&b, "    %s: [%s]\n", key, strings.Join(q, ", "))
	}
	for _, w := range Watches {
		fmt.Fprintf(&b, "  - domain: %s\n", strconv.Quote(w.Domain))
		fmt.Fprintf(&b, "    include_subdomains: %t\n", w.IncludeSubdomains)
		list("expected_issuers", w.ExpectedIssuers)
		list("authorized_keys", w.AuthorizedKeys)
	}
	return b.String()
}

// Verdict names (the pinned values of the verdict label).
const (
	Authorized       = "authorized"
	IssuerAllowed    = "issuer_allowed"
	IssuerUnexpected = "issuer_unexpected"
	Unreviewed       = "unreviewed"
)

// Case is one certificate of the corpus and what a tolerant reader must
// make of it.
type Case struct {
	Name    string
	DER     []byte // the certificate or precertificate, exactly as a log or crt.sh would serve it
	Precert bool   // carries the critical CT poison extension
	Issuer  []byte // DER of the issuing CA's (well-formed) certificate, for sources that need a chain

	// Verdicts maps each watch the certificate concerns (Watch.Label) to its
	// verdict; empty when it concerns none.
	Verdicts map[string]string
	// Malformed: no name can be read at all. Counted as malformed and
	// recorded nowhere; every field below is then zero.
	Malformed bool
	// StrictFails: ct-go's x509.ParseCertificate returns a fatal error
	// (x509.IsFatal) or no certificate. StdlibFails: crypto/x509's
	// ParseCertificate returns an error.
	StrictFails, StdlibFails bool
	// StrictWrongNames: ct-go parses the certificate, but its
	// Subject.CommonName and DNSNames (normalized) are not Names: a reader
	// that takes its names from ct-go misses a watch or concerns a wrong one.
	StrictWrongNames bool

	// TBSSHA256 is the issuance identity: SHA-256 of the TBSCertificate with
	// the CT poison and SCT-list extensions spliced out (not re-encoded).
	TBSSHA256  [32]byte
	SPKISHA256 [32]byte // SHA-256 of the raw SubjectPublicKeyInfo element
	// Serial is the lower-case hex of the serial INTEGER's content bytes,
	// as crt.sh shows it (even when they are not a valid INTEGER).
	Serial      string
	IssuerDN    string // RFC 4514 order, ", " separated: "CN=Odd CA, O=Odd Org, C=US"
	IssuerLabel string // the issuer's CN, or O when it has no CN
	// NotBefore and NotAfter as a tolerant reader should read them (UTC;
	// fractional seconds kept).
	NotBefore, NotAfter time.Time
	// Names is every DNS name (from every SAN extension) and every subject
	// CN (from every RDN, whatever its string type), normalized (lower
	// case, each non-ASCII label as punycode, no trailing dot), each once,
	// in certificate order: subject CNs first, then SANs. A GeneralName
	// that is not a context-specific [2] is not a DNS name, and a CN whose
	// bytes are not valid in its string type is not a name.
	Names []string
	IPs   []netip.Addr // IP address SANs, in certificate order
	SCTs  int          // SCTs embedded in a final certificate; -1 for a precertificate
}

// PSCCase is an issuance through a Precertificate Signing Certificate
// (RFC 6962 §3.1): CA issued PSC (CA:true, EKU 1.3.6.1.4.1.11129.2.4.4,
// a subject different from CA's), PSC signed Precert, and CA signed Final,
// whose TBS is Precert's rebuilt as RFC 6962 §3.2 says (issuer := PSC's
// issuer, AKI := PSC's AKI, poison removed) plus an SCT list. Precert and
// Final share TBSSHA256, and both report CA as their issuer (IssuerDN,
// IssuerLabel): an issuance is never attributed to a PSC. Precert.Issuer is
// PSC, Final.Issuer is CA. All signatures are real; CA is self-signed, so a
// log that has CA as a root accepts [Precert, PSC, CA] and [Final, CA].
type PSCCase struct {
	CA, PSC        []byte
	Precert, Final Case
}

var (
	once   sync.Once
	corpus *built
)

func get() *built {
	once.Do(func() { corpus = build(time.Now()) })
	return corpus
}

// Cases returns the corpus, built on first use and the same afterwards.
// The byte slices are shared: do not modify them.
func Cases() []Case {
	return append([]Case(nil), get().cases...)
}

// PSC returns the issuance through a precertificate signing certificate.
func PSC() PSCCase { return get().psc }

// verdicts is the reference matcher: what the contract says each watch
// makes of a certificate with these names and IP addresses, from this
// issuer, for this key.
func verdicts(names []string, ips []netip.Addr, iss *ca, spki [32]byte) map[string]string {
	out := map[string]string{}
	for _, w := range Watches {
		if !concerns(w, names, ips) {
			continue
		}
		out[w.Label] = verdict(w, iss, spki)
	}
	return out
}

func concerns(w Watch, names []string, ips []netip.Addr) bool {
	if p, err := netip.ParsePrefix(w.Label); err == nil {
		for _, a := range ips {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	for _, n := range names {
		if n == w.Label || (w.IncludeSubdomains && strings.HasSuffix(n, "."+w.Label)) {
			return true
		}
		// *.example.com stands for a name one label below example.com.
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if _, parent, found := strings.Cut(w.Label, "."); found && parent == rest {
				return true
			}
		}
	}
	return false
}

func verdict(w Watch, iss *ca, spki [32]byte) string {
	for _, k := range w.AuthorizedKeys {
		if k == hex.EncodeToString(spki[:]) {
			return Authorized
		}
	}
	if len(w.ExpectedIssuers) == 0 {
		return Unreviewed
	}
	for _, e := range w.ExpectedIssuers {
		if len(e) >= 2 && strings.HasPrefix(e, "/") && strings.HasSuffix(e, "/") {
			if regexp.MustCompile(e[1 : len(e)-1]).MatchString(iss.dn) {
				return IssuerAllowed
			}
		} else if strings.EqualFold(e, iss.cn) || strings.EqualFold(e, iss.o) {
			return IssuerAllowed
		}
	}
	return IssuerUnexpected
}

func hexSHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
