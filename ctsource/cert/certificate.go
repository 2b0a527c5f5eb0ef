// Package cert reads certificates and precertificates from their DER,
// tolerantly, into what matching, verdicts and metrics need: the issuance's
// identity (tbs_sha256), names, issuer, key and validity. It also finds a
// certificate's names without a full parse (the hot path of following a log),
// and gives a precertificate that a Precertificate Signing Certificate signed
// the identity of its final certificate.
package cert

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/watch"
)

// Certificate is one certificate or precertificate, reduced to what matching,
// verdicts and metrics need. Sources produce it; nothing downstream parses DER.
//
// It is read from the DER itself, tolerantly: a certificate that a strict
// X.509 parser refuses (a malformed extension, an unusual key, odd
// encodings) is exactly the kind a misissuing or malicious CA produces, so
// it is recorded with what can be read, and ParseError says why the
// parser refuses it.
type Certificate struct {
	// TBSSHA256 identifies the issuance: the SHA-256 of the TBSCertificate
	// without the CT poison and SCT-list extensions, shared by a
	// precertificate and its final certificate (Cert Spotter's tbs_sha256).
	TBSSHA256 [32]byte
	// CertSHA256 is the hash of the certificate or precertificate seen;
	// zero when a log gives no precertificate that matches the entry's
	// proven TBSCertificate.
	CertSHA256 [32]byte
	SPKISHA256 [32]byte // of the raw SubjectPublicKeyInfo, whatever key it holds
	Serial     string   // lower-case hex of the DER INTEGER's content, as crt.sh shows it
	Issuer     watch.Issuer
	SubjectCN  string   // the last CN, as X.509 parsers show it
	OtherCNs   []string // the CNs before it: watches match them too
	DNSNames   []string // of every SAN extension
	// IPAddresses are the iPAddress SANs.
	IPAddresses []netip.Addr
	NotBefore   time.Time // zero when unreadable
	NotAfter    time.Time // zero when unreadable
	Precert     bool
	// EmbeddedSCTs is the number of SCTs in a final certificate; -1 for a
	// precertificate, which cannot embed any.
	EmbeddedSCTs int
	// ParseError is why certificate-transparency-go's X.509 parser refuses
	// the certificate; empty when it parses.
	ParseError string
}

// AppendNormalized appends the names watches are matched against, normalized.
func AppendNormalized(dst, dnsNames []string, cns ...string) []string {
	for _, n := range dnsNames {
		dst = append(dst, watch.NormalizeName(n))
	}
	for _, cn := range cns {
		if cn != "" {
			dst = append(dst, watch.NormalizeName(cn))
		}
	}
	return dst
}

// Names returns every name watches are matched against, normalized: the
// DNS SANs and every subject CN.
func (c *Certificate) Names() []string {
	return AppendNormalized(AppendNormalized(nil, c.DNSNames, c.OtherCNs...), nil, c.SubjectCN)
}

// Candidate returns what a watch's verdict is based on.
func (c *Certificate) Candidate() watch.Candidate {
	return watch.Candidate{TBSSHA256: c.TBSSHA256, SPKISHA256: c.SPKISHA256, Issuer: c.Issuer}
}

// Read reads a DER certificate or precertificate. It fails only
// when neither the tolerant reader nor the strict parser can find a
// certificate's structure in it.
func Read(der []byte) (*Certificate, error) {
	strict, perr := strictParse(ctx509.ParseCertificate(der))
	c, err := readCertificate(der, false, strict, der)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	if strict != nil {
		c.addNames(strict)
	}
	c.setParseError(perr)
	return c, nil
}

// strictParse is what the strict parser says: a certificate, or why it
// refuses one (the errors it calls non-fatal, common in real CT data, are
// no refusal).
func strictParse(c *ctx509.Certificate, err error) (*ctx509.Certificate, error) {
	if c != nil && (err == nil || !ctx509.IsFatal(err)) {
		return c, nil
	}
	if err == nil {
		err = errors.New("no certificate")
	}
	return nil, err
}

// Parse is Read for a certificate that must also
// pass the strict parser (a key file, a test fixture).
func Parse(der []byte) (*Certificate, error) {
	c, err := Read(der)
	if err == nil && c.ParseError != "" {
		err = fmt.Errorf("parse certificate: %s", c.ParseError)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ReadPrecertEntry reads a precert entry of a log: tbs is the
// TBSCertificate the log proves (poison removed, and the final issuer even
// when a precertificate signing certificate signed the precertificate),
// precert the precertificate the log gives alongside (nil when none). The
// TBSCertificate is the entry: precert only gives cert_sha256, once it is
// shown to be the precertificate of that TBSCertificate.
func ReadPrecertEntry(tbs, precert []byte) (*Certificate, error) {
	strict, perr := strictParse(ctx509.ParseTBSCertificate(tbs))
	c, err := readCertificate(tbs, true, strict, nil)
	if err != nil {
		return nil, fmt.Errorf("read precertificate entry: %w", err)
	}
	if strict != nil {
		c.addNames(strict)
	}
	c.setParseError(perr)
	c.Precert, c.EmbeddedSCTs = true, -1
	if precert != nil && precertificateOfTBS(precert, tbs) {
		c.CertSHA256 = sha256.Sum256(precert)
	}
	return c, nil
}

// precertificateOfTBS reports whether precert is the precertificate of the
// TBSCertificate a log proves: equal once the poison is removed, or once
// also rewritten as RFC 6962 §3.2 tells a log to when a precertificate
// signing certificate signed it (issuer and authority key identifier: the
// proven TBSCertificate holds the values the log put there).
func precertificateOfTBS(precert, tbs []byte) bool {
	pre, pf, err := readTBS(precert, false)
	if err != nil {
		return false
	}
	want, _, err := StripTBS(tbs)
	if err != nil {
		return false
	}
	if got, _, err := StripTBS(pre); err == nil && bytes.Equal(got, want) {
		return true
	}
	_, tf, err := readTBS(tbs, true)
	if err != nil || bytes.Equal(pf.issuer, tf.issuer) && bytes.Equal(findExtension(pf.extensions, oidAKI), findExtension(tf.extensions, oidAKI)) {
		return false
	}
	got, _, err := spliceTBS(pre, &pscRewrite{issuer: tf.issuer, aki: findExtension(tf.extensions, oidAKI)})
	return err == nil && bytes.Equal(got, want)
}

// readCertificate builds a Certificate from what the DER says. strict is
// the strict parser's reading, used when the tolerant reader cannot find
// the structure (nil: it found none either); certDER is what cert_sha256
// hashes (nil: none).
func readCertificate(der []byte, tbs bool, strict *ctx509.Certificate, certDER []byte) (*Certificate, error) {
	body, f, err := readTBS(der, tbs)
	var stripped, serial []byte
	if err == nil {
		stripped, serial, err = StripTBS(body)
	}
	if err != nil {
		if strict == nil {
			return nil, err
		}
		return fromStrict(strict, certDER), nil
	}
	c := &Certificate{
		TBSSHA256:    sha256.Sum256(stripped),
		SPKISHA256:   sha256.Sum256(f.spki),
		Serial:       hex.EncodeToString(serial),
		Issuer:       issuerOf(f.issuer),
		EmbeddedSCTs: 0,
	}
	if certDER != nil {
		c.CertSHA256 = sha256.Sum256(certDER)
	}
	c.NotBefore, c.NotAfter = validity(f.validity)
	var id Identifiers
	eachAttribute(f.subject, func(oid []byte, tag byte, v []byte) {
		if bytes.Equal(oid, oidCommonName) {
			id.Names = appendString(id.Names, tag, v)
		}
	})
	cns := cloneStrings(id.Names)
	if n := len(cns); n > 0 {
		c.SubjectCN, c.OtherCNs = cns[n-1], cns[:n-1:n-1]
		if len(c.OtherCNs) == 0 {
			c.OtherCNs = nil
		}
	}
	exts := f.extensions
	for {
		x, ok := nextExtension(&exts)
		if !ok {
			break
		}
		switch {
		case bytes.Equal(x.oid, oidSAN):
			id.Reset()
			subjectAltNames(x.value, &id)
			c.DNSNames = append(c.DNSNames, cloneStrings(id.Names)...)
			c.IPAddresses = append(c.IPAddresses, id.IPs...)
		case bytes.Equal(x.oid, oidCTPoison):
			c.Precert = true
		case bytes.Equal(x.oid, oidCTSCTList):
			c.EmbeddedSCTs += countSCTs(x.value)
		}
	}
	if c.Precert {
		c.EmbeddedSCTs = -1
	}
	if f.goReading != nil {
		// The names of the certificate Go's asn1 reads there too.
		var g tbsFields
		if readFields(f.goReading, &g) {
			id.Reset()
			appendIdentifiers(&g, &id)
			for _, n := range cloneStrings(id.Names) {
				if n != c.SubjectCN && !slices.Contains(c.OtherCNs, n) && !slices.Contains(c.DNSNames, n) {
					c.DNSNames = append(c.DNSNames, n)
				}
			}
			for _, a := range id.IPs {
				if !slices.Contains(c.IPAddresses, a) {
					c.IPAddresses = append(c.IPAddresses, a)
				}
			}
		}
	}
	return c, nil
}

// fromStrict builds a Certificate from the strict parser's reading, for a
// certificate whose structure only it finds (Go's asn1 reads on past the
// end of an explicitly tagged field, which no DER walk does).
func fromStrict(p *ctx509.Certificate, certDER []byte) *Certificate {
	tbs := p.RawTBSCertificate
	stripped, serial, err := StripTBS(tbs)
	if err != nil {
		stripped = tbs
		if t, err := ctx509.RemoveCTPoison(tbs); err == nil {
			stripped = t
		}
		if t, err := ctx509.RemoveSCTList(stripped); err == nil {
			stripped = t
		}
	}
	c := &Certificate{
		TBSSHA256:    sha256.Sum256(stripped),
		SPKISHA256:   sha256.Sum256(p.RawSubjectPublicKeyInfo),
		Issuer:       issuerOf(p.RawIssuer),
		NotBefore:    p.NotBefore.UTC(),
		NotAfter:     p.NotAfter.UTC(),
		Precert:      p.IsPrecertificate(),
		EmbeddedSCTs: len(p.SCTList.SCTList),
	}
	switch {
	case serial != nil: // the serial a DER reading of the same bytes gives
		c.Serial = hex.EncodeToString(serial)
	case p.SerialNumber != nil:
		c.Serial = hex.EncodeToString(p.SerialNumber.Bytes())
	}
	if certDER != nil {
		c.CertSHA256 = sha256.Sum256(certDER)
	}
	if c.Precert {
		c.EmbeddedSCTs = -1
	}
	c.addNames(p)
	if len(c.OtherCNs) > 0 {
		n := len(c.OtherCNs)
		c.SubjectCN, c.OtherCNs = c.OtherCNs[n-1], c.OtherCNs[:n-1:n-1]
		if len(c.OtherCNs) == 0 {
			c.OtherCNs = nil
		}
	}
	return c
}

func cloneStrings(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(bytes.Clone([]byte(v)))
	}
	return out
}

// addNames adds the names a strict parse found that the tolerant reader
// did not (it reads them all; this keeps "what a parser sees is matched"
// true by construction).
func (c *Certificate) addNames(p *ctx509.Certificate) {
	for _, n := range p.DNSNames {
		if !slices.Contains(c.DNSNames, n) {
			c.DNSNames = append(c.DNSNames, n)
		}
	}
	for _, atv := range p.Subject.Names {
		if cn, ok := atv.Value.(string); ok && atv.Type.String() == "2.5.4.3" &&
			cn != c.SubjectCN && !slices.Contains(c.OtherCNs, cn) {
			c.OtherCNs = append(c.OtherCNs, cn)
		}
	}
	for _, ip := range p.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok && !slices.Contains(c.IPAddresses, a.Unmap()) {
			c.IPAddresses = append(c.IPAddresses, a.Unmap())
		}
	}
}

func (c *Certificate) setParseError(err error) {
	if err != nil {
		c.ParseError = err.Error()
	}
}

// findExtension returns the value of the first extension with oid, nil
// when there is none.
func findExtension(exts, oid []byte) []byte {
	for {
		x, ok := nextExtension(&exts)
		if !ok {
			return nil
		}
		if bytes.Equal(x.oid, oid) {
			return x.value
		}
	}
}

// countSCTs counts the SCTs of an SCT-list extension value (an OCTET
// STRING holding a TLS SignedCertificateTimestampList), as far as it can
// be read.
func countSCTs(value []byte) int {
	in := value
	os, ok := readUniversal(&in, tagOctetString)
	if !ok || len(os.content) < 2 {
		return 0
	}
	list := os.content[2:]
	if n := int(os.content[0])<<8 | int(os.content[1]); n < len(list) {
		list = list[:n]
	}
	count := 0
	for len(list) >= 2 {
		n := int(list[0])<<8 | int(list[1])
		if n == 0 || n > len(list)-2 {
			break
		}
		list = list[2+n:]
		count++
	}
	return count
}

// validity reads notBefore and notAfter; a time that cannot be read is zero.
func validity(v []byte) (notBefore, notAfter time.Time) {
	if _, content, ok := next(&v); ok {
		v = content
	}
	if e, ok := readElement(&v); ok {
		notBefore = asn1Time(e)
	}
	if e, ok := readElement(&v); ok {
		notAfter = asn1Time(e)
	}
	return notBefore, notAfter
}

// asn1Time reads a UTCTime or GeneralizedTime, with or without seconds,
// with fractions and zone offsets, as CAs have written them; zero when it
// cannot.
func asn1Time(e element) time.Time {
	s := e.content
	digits := func(n int) (int, bool) {
		if len(s) < n {
			return 0, false
		}
		v := 0
		for _, c := range s[:n] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		s = s[n:]
		return v, true
	}
	var year int
	var ok bool
	switch {
	case e.universal(tagUTCTime):
		if year, ok = digits(2); !ok {
			return time.Time{}
		}
		year += 1900
		if year < 1950 {
			year += 100
		}
	case e.universal(tagGeneralizedTime):
		if year, ok = digits(4); !ok {
			return time.Time{}
		}
	default:
		return time.Time{}
	}
	month, ok1 := digits(2)
	day, ok2 := digits(2)
	hour, ok3 := digits(2)
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}
	}
	minute, sec, nsec := 0, 0, 0
	if m, ok := digits(2); ok {
		minute = m
		if v, ok := digits(2); ok {
			sec = v
		}
	}
	if len(s) > 1 && (s[0] == '.' || s[0] == ',') {
		s = s[1:]
		scale := 100_000_000
		for len(s) > 0 && s[0] >= '0' && s[0] <= '9' {
			nsec += int(s[0]-'0') * scale
			scale /= 10
			s = s[1:]
		}
	}
	offset := 0
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		sign := 1
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
		h, ok1 := digits(2)
		m, ok2 := digits(2)
		if !ok1 || !ok2 {
			return time.Time{}
		}
		offset = sign * (h*3600 + m*60)
	}
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC).Add(-time.Duration(offset) * time.Second)
}
