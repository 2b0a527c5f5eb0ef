package cert

import (
	"bytes"
	"errors"
)

// tbsFields locates the fields of a TBSCertificate, read tolerantly: by
// position, whatever their encoding, so that a certificate whose
// extensions, key or times a strict parser refuses still has a serial, an
// issuer, a key and names. The slices alias the TBSCertificate.
type tbsFields struct {
	serial     []byte // the INTEGER's content
	sigAlg     []byte // full element
	issuer     []byte // full Name element
	validity   []byte // full Validity element
	subject    []byte // full Name element
	spki       []byte // full SubjectPublicKeyInfo element
	extensions []byte // content of the Extensions SEQUENCE; nil when absent
	// goReading is where Go's encoding/asn1 reads the fields after the
	// version when the version's explicit tag holds more than the version
	// (nil otherwise): see readTBS.
	goReading []byte
}

var errTBS = errors.New("tbs: not a TBSCertificate")

// readTBS reads a TBSCertificate element (tbs true) or a Certificate
// element, whose first element is the TBSCertificate. Bytes after the
// element are ignored, as other parsers of CT entries ignore them.
func readTBS(der []byte, tbs bool) (body []byte, f tbsFields, err error) {
	in := der
	if !tbs {
		id, cert, ok := next(&in)
		if !ok || !idIs(id, idSequence) {
			return nil, f, errTBS
		}
		in = cert
	}
	start := in
	id, t, ok := next(&in)
	if !ok || !idIs(id, idSequence) {
		return nil, f, errTBS
	}
	body = start[:len(start)-len(in)]
	in = t
	rest := in
	if id, v, ok := next(&rest); ok && idIs(id, idContext0) {
		in = rest // the version
		if _, _, ok := next(&v); !ok || len(v) > 0 {
			// The version's explicit tag holds more, or less, than the
			// version. Go's encoding/asn1 (and so certificate-transparency-
			// go) reads the version from right after the tag's header and
			// the next fields from right after the version, whatever the
			// tag's length says, which DER readers do not: a different
			// certificate, whose names must be read too.
			_, header, _, _ := readHeader(t)
			if v, ok := readExplicitQuirk(t); ok {
				f.goReading = t[header+len(v.full):]
			}
		}
	}
	if !readFields(in, &f) {
		return nil, f, errTBS
	}
	return body, f, nil
}

// readFields reads the fields of a TBSCertificate after its version.
func readFields(in []byte, f *tbsFields) bool {
	id, serial, ok := next(&in)
	if !ok || !idIs(id, idInteger) {
		return false
	}
	f.serial = serial
	// The rest by position: a strict parser would have refused anything
	// else, and a lenient one reads them in this order too.
	for _, dst := range []*[]byte{&f.sigAlg, &f.issuer, &f.validity, &f.subject, &f.spki} {
		at := in
		if _, _, ok = next(&in); !ok {
			return false
		}
		*dst = at[:len(at)-len(in)]
	}
	for len(in) > 0 {
		at := in
		id, content, ok := next(&in)
		if !ok {
			// A damaged tail; but Go's asn1 reads the extensions of an [3]
			// whose length overruns from right after its header.
			if h, _, _, ok := readHeader(at); ok && h.is(classContext, 3) && f.extensions == nil {
				if s, ok := readExplicitQuirk(at); ok && s.universal(tagSequence) {
					f.extensions = s.content
				}
			}
			break
		}
		if idIs(id, idContext3) {
			if sid, seq, ok := next(&content); ok && idIs(sid, idSequence) {
				f.extensions = seq
			} else if s, ok := readExplicitQuirk(at); ok && s.universal(tagSequence) {
				// Its SEQUENCE overruns the tag: Go's asn1 reads it so.
				f.extensions = s.content
			}
		}
	}
	return true
}

// extension is one extension of a TBSCertificate.
type extension struct {
	oid      []byte
	critical bool
	value    []byte // the extnValue OCTET STRING's content
	full     []byte
}

// nextExtension reads the next well-formed extension of *exts, skipping
// malformed ones: one bad extension must not hide the others.
func nextExtension(exts *[]byte) (extension, bool) {
	for {
		oid, rest, full, ok := nextExtensionOID(exts)
		if !ok {
			return extension{}, false
		}
		if critical, value, ok := extensionValue(rest); ok {
			return extension{oid: oid, critical: critical, value: value, full: full}, true
		}
	}
}

// nextExtensionOID reads the next extension of *exts whose OID can be read,
// and returns what follows the OID: the walk of every log entry looks at
// the value of SAN extensions only.
func nextExtensionOID(exts *[]byte) (oid, rest, full []byte, ok bool) {
	for len(*exts) > 0 {
		at := *exts
		_, e, ok := next(exts)
		if !ok {
			*exts = nil
			return nil, nil, nil, false
		}
		if id, o, ok := next(&e); ok && idIs(id, idOID) {
			return o, e, at[:len(at)-len(*exts)], true
		}
	}
	return nil, nil, nil, false
}

// extensionValue reads what follows an extension's OID: its criticality and
// the content of its extnValue OCTET STRING.
func extensionValue(in []byte) (critical bool, value []byte, ok bool) {
	id, v, ok := next(&in)
	if ok && idIs(id, idBoolean) {
		critical = len(v) == 1 && v[0] != 0
		id, v, ok = next(&in)
	}
	if !ok || !idIs(id, idOctetString) {
		return false, nil, false
	}
	return critical, v, true
}

var (
	oidCTPoison  = []byte{0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x03} // 1.3.6.1.4.1.11129.2.4.3
	oidCTSCTList = []byte{0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02} // 1.3.6.1.4.1.11129.2.4.2
	oidCTEKU     = []byte{0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x04} // 1.3.6.1.4.1.11129.2.4.4, precertificate signing
	oidSAN       = []byte{0x55, 0x1d, 0x11}                                           // 2.5.29.17
	oidAKI       = []byte{0x55, 0x1d, 0x23}                                           // 2.5.29.35
	oidEKU       = []byte{0x55, 0x1d, 0x25}                                           // 2.5.29.37
)

// StripTBS returns the TBSCertificate without the CT poison and SCT-list
// extensions, and the serial number's content bytes. It splices the original
// bytes rather than re-encoding a parsed structure, so the result is exactly
// what the issuing CA signed minus those extensions, whatever its encoding
// quirks.
func StripTBS(tbs []byte) (stripped, serial []byte, err error) {
	return spliceTBS(tbs, nil)
}

// pscRewrite is what RFC 6962 §3.2 changes in the TBSCertificate of a
// precertificate that a Precertificate Signing Certificate signed: the
// issuer becomes the PSC's issuer, and the authority key identifier the
// PSC's own (removed when the PSC has none, added when the precertificate
// has none).
type pscRewrite struct {
	issuer []byte // full Name element
	aki    []byte // extnValue content of the PSC's AKI; nil when it has none
}

// spliceTBS returns the TBSCertificate without the CT extensions and, when
// psc is set, rewritten as RFC 6962 §3.2 says; and the serial's content.
func spliceTBS(tbs []byte, psc *pscRewrite) (out, serial []byte, err error) {
	in := tbs
	t, ok := readUniversal(&in, tagSequence)
	if !ok || len(in) != 0 {
		return nil, nil, errors.New("tbs: not a single SEQUENCE")
	}
	body := t.content
	content := make([]byte, 0, len(tbs))
	field := 0 // fields after the version, by position
	for len(body) > 0 {
		e, ok := readElement(&body)
		if !ok {
			if serial == nil {
				return nil, nil, errors.New("tbs: malformed element")
			}
			// A damaged tail is kept as it is: readTBS reads past it too.
			content = append(content, body...)
			break
		}
		switch {
		case field == 0 && e.is(classContext, 0):
			content = append(content, e.full...)
			continue
		case field == 0:
			if !e.universal(tagInteger) {
				return nil, nil, errors.New("tbs: no serial number")
			}
			serial = e.content
			content = append(content, e.full...)
		case field == 2 && psc != nil:
			content = append(content, psc.issuer...)
		case e.is(classContext, 3) && e.constructed && isSequence(e.content):
			if exts := stripExtensions(e.content, psc); exts != nil {
				inner := appendHeader(nil, 0x30, len(exts))
				content = appendHeader(content, 0xa3, len(inner)+len(exts))
				content = append(append(content, inner...), exts...)
			}
		default:
			content = append(content, e.full...)
		}
		field++
	}
	if serial == nil {
		return nil, nil, errors.New("tbs: no serial number")
	}
	out = appendHeader(make([]byte, 0, len(content)+6), 0x30, len(content))
	return append(out, content...), serial, nil
}

// stripExtensions returns the Extension elements of an [3] field's content
// minus the CT ones (with the AKI rewritten for a PSC), or nil when none
// remain. What it cannot read it keeps as it is: the identity of an odd
// certificate must still be the same whichever source it comes from.
func stripExtensions(field []byte, psc *pscRewrite) []byte {
	seq, ok := readUniversal(&field, tagSequence)
	if !ok || len(field) != 0 {
		return nil
	}
	in := seq.content
	var kept []byte
	sawAKI := false
	for len(in) > 0 {
		e, ok := readElement(&in)
		if !ok {
			return append(kept, in...)
		}
		c := e.content
		oid, ok := readUniversal(&c, tagOID)
		switch {
		case !ok || !e.universal(tagSequence):
		case bytes.Equal(oid.content, oidCTPoison), bytes.Equal(oid.content, oidCTSCTList):
			continue
		case psc != nil && bytes.Equal(oid.content, oidAKI):
			sawAKI = true
			if psc.aki != nil {
				kept = appendAKI(kept, c, psc.aki)
			}
			continue
		}
		kept = append(kept, e.full...)
	}
	if psc != nil && !sawAKI && psc.aki != nil {
		kept = appendAKI(kept, nil, psc.aki)
	}
	return kept
}

// isSequence reports content that is exactly one SEQUENCE.
func isSequence(content []byte) bool {
	_, ok := readUniversal(&content, tagSequence)
	return ok && len(content) == 0
}

// appendAKI appends an AKI extension with value, keeping the criticality
// of the one it replaces (rest: what followed its OID).
func appendAKI(b, rest, value []byte) []byte {
	var ext []byte
	ext = appendHeader(ext, 0x06, len(oidAKI))
	ext = append(ext, oidAKI...)
	if e, ok := readElement(&rest); ok && e.universal(tagBoolean) {
		ext = append(ext, e.full...)
	}
	ext = appendHeader(ext, 0x04, len(value))
	ext = append(ext, value...)
	b = appendHeader(b, 0x30, len(ext))
	return append(b, ext...)
}
