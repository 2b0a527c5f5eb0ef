package cert

import (
	"bytes"
	"crypto/sha256"
	"sync"

	ctx509 "github.com/google/certificate-transparency-go/x509"
)

// A Precertificate Signing Certificate (PSC, RFC 6962 §3.1) is a CA
// certificate with the CT extended key usage that signs precertificates
// on behalf of the CA that issued it. Its precertificates carry the PSC as
// issuer, and their TBSCertificate differs from the final certificate's in
// the issuer and the authority key identifier. A log rewrites them (§3.2),
// so log entries already carry the final identity; a precertificate found
// anywhere else must be rewritten here, or the precertificate and its
// final certificate become two issuances, the first judged by the PSC's
// name (a false issuer_unexpected page for an expected CA).

// maxPSCs bounds the directory: issuing CAs are a few hundred, and
// precertificates (attacker-made ones included) must not grow it without
// end.
const maxPSCs = 4096

// PSCs remembers what the key identifiers that precertificates name their
// issuer by turned out to be: a PSC, or not. The zero value is empty and
// ready; it is safe for concurrent use.
type PSCs struct {
	mu    sync.Mutex
	known map[string]*PSC // by the issuer's subject and key identifier; nil: not a PSC
}

// PSC is a verified Precertificate Signing Certificate: what it changes
// in the TBSCertificates of its precertificates.
type PSC struct{ rewrite pscRewrite }

func pscKey(subject, keyID []byte) string { return string(subject) + "\x00" + string(keyID) }

// Lookup returns what is known about the issuer (subject, key id) of a
// precertificate: a PSC, nil and true for "not a PSC", or false.
func (d *PSCs) Lookup(subject, keyID []byte) (*PSC, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.known[pscKey(subject, keyID)]
	return p, ok
}

func (d *PSCs) Remember(subject, keyID []byte, p *PSC) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.known == nil {
		d.known = map[string]*PSC{}
	}
	if len(d.known) >= maxPSCs {
		clear(d.known) // the rare cost: looked up again
	}
	d.known[pscKey(subject, keyID)] = p
}

// NewPSC returns the PSC that issuerDER is, when it is the PSC that signed
// the precertificate pre: its subject is pre's issuer, it has the CT
// extended key usage, and its key verifies pre's signature (so that a
// certificate merely claiming the name cannot move a precertificate to
// another issuer).
func NewPSC(issuerDER []byte, pre *ctx509.Certificate) *PSC {
	_, f, err := readTBS(issuerDER, false)
	if err != nil || !bytes.Equal(f.subject, pre.RawIssuer) || !hasCTEKU(f.extensions) {
		return nil
	}
	key, err := ctx509.ParseCertificate(issuerDER)
	if key == nil || ctx509.IsFatal(err) {
		return nil
	}
	if key.CheckSignature(pre.SignatureAlgorithm, pre.RawTBSCertificate, pre.Signature) != nil {
		return nil
	}
	return &PSC{rewrite: pscRewrite{issuer: f.issuer, aki: findExtension(f.extensions, oidAKI)}}
}

func hasCTEKU(exts []byte) bool {
	v := findExtension(exts, oidEKU)
	seq, ok := readUniversal(&v, tagSequence)
	if !ok {
		return false
	}
	for in := seq.content; len(in) > 0; {
		oid, ok := readElement(&in)
		if !ok {
			return false
		}
		if oid.universal(tagOID) && bytes.Equal(oid.content, oidCTEKU) {
			return true
		}
	}
	return false
}

// PrecertIssuer returns the issuer name and the key identifier of the
// authority key identifier of a precertificate, which is how a PSC is
// found; ok is false when der is not a precertificate that names one.
func PrecertIssuer(der []byte) (issuer, keyID []byte, ok bool) {
	_, f, err := readTBS(der, false)
	if err != nil || findExtension(f.extensions, oidCTPoison) == nil {
		return nil, nil, false
	}
	aki := findExtension(f.extensions, oidAKI)
	seq, ok := readUniversal(&aki, tagSequence)
	if !ok {
		return nil, nil, false
	}
	in := seq.content
	id, ok := readElement(&in)
	if !ok || !id.is(classContext, 0) || len(id.content) == 0 {
		return nil, nil, false
	}
	return f.issuer, id.content, true
}

// RewriteForPSC gives c, read from the precertificate der that p signed,
// the identity and the issuer of its final certificate.
func (c *Certificate) RewriteForPSC(der []byte, p *PSC) bool {
	body, _, err := readTBS(der, false)
	if err != nil {
		return false
	}
	tbs, _, err := spliceTBS(body, &p.rewrite)
	if err != nil {
		return false
	}
	c.TBSSHA256 = sha256.Sum256(tbs)
	c.Issuer = issuerOf(p.rewrite.issuer)
	return true
}
