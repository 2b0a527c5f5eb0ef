// Package rawcert splits DER certificates into their parts without judging
// them, for the test fakes of services that keep whatever a CT log accepted
// (crt.sh, Cert Spotter). Each fake reads the parts its service's way: this
// package only finds them. The exporter does not use it, so the fakes stay
// independent of the code they test.
//
// Reading is positional and tolerant: a TBSCertificate's fields are taken in
// order whatever their tags, an element that does not read ends the reading
// of its parent, and what was read before is kept. Lengths may be long-form
// without being minimal and tags may use the high-tag-number form, as
// OpenSSL allows; indefinite lengths are refused.
package rawcert

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Classes of an element's tag.
const (
	ClassUniversal   = 0
	ClassApplication = 1
	ClassContext     = 2
	ClassPrivate     = 3
)

// Universal tag numbers the fakes look at.
const (
	TagBoolean         = 1
	TagInteger         = 2
	TagOctetString     = 4
	TagOID             = 6
	TagUTF8String      = 12
	TagSequence        = 16
	TagSet             = 17
	TagNumericString   = 18
	TagPrintableString = 19
	TagT61String       = 20
	TagIA5String       = 22
	TagUTCTime         = 23
	TagGeneralizedTime = 24
	TagVisibleString   = 26
	TagUniversalString = 28
	TagBMPString       = 30
)

// Element is one encoded element (tag, length, content). The zero Element is
// an absent one.
type Element struct {
	Class       int
	Constructed bool
	Tag         int
	// Full is the whole encoding, header included; nil when absent.
	Full []byte
	// Content is the content octets.
	Content []byte
}

// Present says whether the element was there.
func (e Element) Present() bool { return e.Full != nil }

// Is says whether the element is present with this class and tag number.
func (e Element) Is(class, tag int) bool { return e.Full != nil && e.Class == class && e.Tag == tag }

// Universal says whether the element is a primitive universal one of this
// tag number, as every string, time, INTEGER and OID is in DER.
func (e Element) Universal(tag int) bool { return e.Is(ClassUniversal, tag) && !e.Constructed }

var errTruncated = errors.New("rawcert: truncated element")

// Read reads the element at the front of b and returns it and what follows.
func Read(b []byte) (Element, []byte, error) {
	if len(b) < 2 {
		return Element{}, b, errTruncated
	}
	e := Element{Class: int(b[0] >> 6), Constructed: b[0]&0x20 != 0, Tag: int(b[0] & 0x1f)}
	i := 1
	if e.Tag == 0x1f {
		e.Tag = 0
		for {
			if i >= len(b) {
				return Element{}, b, errTruncated
			}
			c := b[i]
			i++
			if e.Tag >= 1<<24 {
				return Element{}, b, errors.New("rawcert: tag number too large")
			}
			e.Tag = e.Tag<<7 | int(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return Element{}, b, errTruncated
	}
	n := int(b[i])
	i++
	if n&0x80 != 0 {
		octets := n & 0x7f
		if octets == 0 {
			return Element{}, b, errors.New("rawcert: indefinite length")
		}
		n = 0
		for ; octets > 0; octets-- {
			if i >= len(b) {
				return Element{}, b, errTruncated
			}
			if n >= 1<<23 {
				return Element{}, b, errTruncated // longer than any certificate held in memory
			}
			n = n<<8 | int(b[i])
			i++
		}
	}
	if n > len(b)-i {
		return Element{}, b, errTruncated
	}
	e.Full = b[: i+n : i+n]
	e.Content = b[i : i+n : i+n]
	return e, b[i+n:], nil
}

// Elements reads the elements content holds, in order, until one does not
// read; rest is what was left unread (empty when all of content read).
func Elements(content []byte) (els []Element, rest []byte) {
	for len(content) > 0 {
		e, r, err := Read(content)
		if err != nil {
			return els, content
		}
		els = append(els, e)
		content = r
	}
	return els, nil
}

// Field names a field of a TBSCertificate.
type Field int

// The TBSCertificate's fields, in their order.
const (
	Version Field = iota
	Serial
	Signature
	Issuer
	Validity
	Subject
	PublicKey
	IssuerUniqueID
	SubjectUniqueID
	Extensions
	numFields
)

// Certificate is a certificate split into its parts.
type Certificate struct {
	// Raw is the certificate as given, trailing bytes included.
	Raw                []byte
	TBS                TBS
	SignatureAlgorithm Element
	Signature          Element
}

// TBS is a TBSCertificate split into its fields.
type TBS struct {
	// Raw is the TBSCertificate's element.
	Raw Element
	// Elements are its elements in order, as far as they read, and Rest
	// the bytes after them that did not.
	Elements []Element
	Rest     []byte
	// Extensions are the elements of the extensions field's SEQUENCE, as
	// far as they read, and ExtensionsRest what followed them unread.
	Extensions     []Extension
	ExtensionsRest []byte

	at [numFields]int // index in Elements + 1; 0 when absent
}

// Parse splits a certificate. It fails only when der does not start with a
// SEQUENCE whose first element is a SEQUENCE (the TBSCertificate); any other
// part that is missing or of the wrong kind is left for the caller to judge.
func Parse(der []byte) (*Certificate, error) {
	outer, _, err := Read(der)
	if err != nil {
		return nil, fmt.Errorf("rawcert: not a certificate: %w", err)
	}
	if !outer.Is(ClassUniversal, TagSequence) {
		return nil, errors.New("rawcert: not a certificate: not a SEQUENCE")
	}
	parts, _ := Elements(outer.Content)
	if len(parts) == 0 || !parts[0].Is(ClassUniversal, TagSequence) {
		return nil, errors.New("rawcert: not a certificate: no TBSCertificate SEQUENCE")
	}
	c := &Certificate{Raw: der, TBS: ParseTBS(parts[0])}
	if len(parts) > 1 {
		c.SignatureAlgorithm = parts[1]
	}
	if len(parts) > 2 {
		c.Signature = parts[2]
	}
	return c, nil
}

// ParseTBS splits a TBSCertificate element. The optional version is taken
// when the first element is [0]; the next six elements are the serial
// number to the public key, whatever they hold; then the first [1], [2] and
// [3] found are the unique ids and the extensions.
func ParseTBS(e Element) TBS {
	t := TBS{Raw: e}
	t.Elements, t.Rest = Elements(e.Content)
	i := 0
	if len(t.Elements) > 0 && t.Elements[0].Is(ClassContext, 0) {
		t.at[Version] = 1
		i = 1
	}
	for f := Serial; f <= PublicKey && i < len(t.Elements); f++ {
		t.at[f] = i + 1
		i++
	}
	for ; i < len(t.Elements); i++ {
		el := t.Elements[i]
		if el.Class != ClassContext {
			continue
		}
		var f Field
		switch el.Tag {
		case 1:
			f = IssuerUniqueID
		case 2:
			f = SubjectUniqueID
		case 3:
			f = Extensions
		default:
			continue
		}
		if t.at[f] == 0 {
			t.at[f] = i + 1
		}
	}
	if ext := t.Field(Extensions); ext.Present() {
		// [3] EXPLICIT wraps the SEQUENCE OF Extension.
		if seq, _, err := Read(ext.Content); err == nil && seq.Is(ClassUniversal, TagSequence) {
			var els []Element
			els, t.ExtensionsRest = Elements(seq.Content)
			for _, x := range els {
				t.Extensions = append(t.Extensions, parseExtension(x))
			}
		}
	}
	return t
}

// Field returns a field's element, the zero Element when absent.
func (t *TBS) Field(f Field) Element {
	if f < 0 || f >= numFields || t.at[f] == 0 {
		return Element{}
	}
	return t.Elements[t.at[f]-1]
}

// Rebuild returns the TBSCertificate with the given fields replaced by the
// given encodings (an empty one drops the field; an absent field given one
// is appended), every other element kept byte for byte and the unread rest
// kept at the end.
func (t *TBS) Rebuild(replace map[Field][]byte) []byte {
	var content []byte
	done := map[Field]bool{}
	for i, el := range t.Elements {
		enc := el.Full
		for f, idx := range t.at {
			if idx == i+1 {
				if r, ok := replace[Field(f)]; ok {
					enc, done[Field(f)] = r, true
				}
			}
		}
		content = append(content, enc...)
	}
	for f := Version; f < numFields; f++ {
		if r, ok := replace[f]; ok && !done[f] {
			content = append(content, r...)
		}
	}
	content = append(content, t.Rest...)
	return Encode(ClassUniversal, true, TagSequence, content)
}

// ExtensionsField encodes an extensions field ([3] EXPLICIT SEQUENCE) holding
// exts (each an encoded Extension) followed by the bytes that did not read
// in the original.
func (t *TBS) ExtensionsField(exts [][]byte) []byte {
	var content []byte
	for _, x := range exts {
		content = append(content, x...)
	}
	content = append(content, t.ExtensionsRest...)
	return Encode(ClassContext, true, 3, Encode(ClassUniversal, true, TagSequence, content))
}

// Extension is one element of the extensions SEQUENCE.
type Extension struct {
	Raw Element
	// OID is the extnID's content octets; nil when it does not read.
	OID []byte
	// Critical is the critical BOOLEAN's element, absent when left to its
	// DEFAULT.
	Critical Element
	// Value is the extnValue OCTET STRING's content; nil when it does not
	// read.
	Value []byte
}

func parseExtension(x Element) Extension {
	ext := Extension{Raw: x}
	if !x.Is(ClassUniversal, TagSequence) {
		return ext
	}
	els, _ := Elements(x.Content)
	if len(els) == 0 || !els[0].Universal(TagOID) {
		return ext
	}
	ext.OID = els[0].Content
	els = els[1:]
	if len(els) > 0 && els[0].Universal(TagBoolean) {
		ext.Critical = els[0]
		els = els[1:]
	}
	if len(els) > 0 && els[0].Universal(TagOctetString) {
		ext.Value = els[0].Content
		if ext.Value == nil {
			ext.Value = []byte{}
		}
	}
	return ext
}

// IsCritical says whether the critical flag is there and not zero (DER
// wants 0xFF, OpenSSL takes any non-zero byte).
func (x Extension) IsCritical() bool {
	for _, b := range x.Critical.Content {
		if b != 0 {
			return true
		}
	}
	return false
}

// Is says whether the extension's OID is oid (content octets, see OID).
func (x Extension) Is(oid []byte) bool { return x.OID != nil && string(x.OID) == string(oid) }

// EncodeExtension encodes an Extension with the given OID (content octets),
// critical element (kept as it was; absent for the DEFAULT) and value.
func EncodeExtension(oid []byte, critical Element, value []byte) []byte {
	content := Encode(ClassUniversal, false, TagOID, oid)
	content = append(content, critical.Full...)
	content = append(content, Encode(ClassUniversal, false, TagOctetString, value)...)
	return Encode(ClassUniversal, true, TagSequence, content)
}

// Encode encodes an element with a minimal DER header.
func Encode(class int, constructed bool, tag int, content []byte) []byte {
	id := byte(class) << 6
	if constructed {
		id |= 0x20
	}
	var b []byte
	if tag < 0x1f {
		b = append(b, id|byte(tag))
	} else {
		b = append(b, id|0x1f)
		b = append(b, base128(tag)...)
	}
	n := len(content)
	switch {
	case n < 0x80:
		b = append(b, byte(n))
	default:
		var l []byte
		for ; n > 0; n >>= 8 {
			l = append([]byte{byte(n)}, l...)
		}
		b = append(b, 0x80|byte(len(l)))
		b = append(b, l...)
	}
	return append(b, content...)
}

func base128(v int) []byte {
	out := []byte{byte(v & 0x7f)}
	for v >>= 7; v > 0; v >>= 7 {
		out = append([]byte{byte(v&0x7f) | 0x80}, out...)
	}
	return out
}

// OID returns the content octets of an OBJECT IDENTIFIER, for comparing with
// Extension.OID and Attribute.Type.
func OID(arcs ...int) []byte {
	if len(arcs) < 2 {
		panic("rawcert: an OID has at least two arcs")
	}
	out := base128(arcs[0]*40 + arcs[1])
	for _, a := range arcs[2:] {
		out = append(out, base128(a)...)
	}
	return out
}

// OIDString renders OID content octets in dotted form, or as "#" and hex
// when they do not decode.
func OIDString(content []byte) string {
	var arcs []string
	v, started := uint64(0), false
	for _, c := range content {
		if !started && c == 0x80 || v >= 1<<56 {
			return "#" + hex.EncodeToString(content)
		}
		started = true
		v = v<<7 | uint64(c&0x7f)
		if c&0x80 != 0 {
			continue
		}
		if arcs == nil {
			first := min(v/40, 2)
			arcs = append(arcs, strconv.FormatUint(first, 10), strconv.FormatUint(v-40*first, 10))
		} else {
			arcs = append(arcs, strconv.FormatUint(v, 10))
		}
		v, started = 0, false
	}
	if started || arcs == nil {
		return "#" + hex.EncodeToString(content)
	}
	return strings.Join(arcs, ".")
}

// Attribute is one AttributeTypeAndValue of a Name.
type Attribute struct {
	// Type is the attribute type's OID content octets.
	Type  []byte
	Value Element
}

// Name reads a Name: a SEQUENCE of RDNs, each a SET of SEQUENCEs {type,
// value}. What does not read is left out. ok is false when e is not a
// SEQUENCE.
func Name(e Element) (rdns [][]Attribute, ok bool) {
	if !e.Is(ClassUniversal, TagSequence) {
		return nil, false
	}
	sets, _ := Elements(e.Content)
	for _, set := range sets {
		if !set.Is(ClassUniversal, TagSet) {
			continue
		}
		atvs, _ := Elements(set.Content)
		var rdn []Attribute
		for _, atv := range atvs {
			if !atv.Is(ClassUniversal, TagSequence) {
				continue
			}
			parts, _ := Elements(atv.Content)
			if len(parts) < 2 || !parts[0].Universal(TagOID) {
				continue
			}
			rdn = append(rdn, Attribute{Type: parts[0].Content, Value: parts[1]})
		}
		if rdn != nil {
			rdns = append(rdns, rdn)
		}
	}
	return rdns, true
}

// GeneralNames reads the GeneralName elements of a SubjectAltName
// extension's value (a SEQUENCE), as far as they read: each is a
// context-specific element whose tag number is the name's type (2 dNSName,
// 7 iPAddress, ...).
func GeneralNames(value []byte) []Element {
	seq, _, err := Read(value)
	if err != nil || !seq.Is(ClassUniversal, TagSequence) {
		return nil
	}
	names, _ := Elements(seq.Content)
	return names
}

// Latin1 reads bytes as ISO 8859-1, one character each: what the services
// make of one-byte string types (TeletexString, and broken others).
func Latin1(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}
