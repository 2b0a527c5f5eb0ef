package cert

// A tolerant reader of DER (and of the BER habits CAs slip into DER):
// certificate fields are attacker-controlled, and a reader stricter than
// the X.509 parsers that browsers and other monitors use would let a
// certificate they accept slip past the match. It reads high tag numbers
// and non-minimal lengths, which cryptobyte refuses; only indefinite
// lengths (which no parser of certificates accepts) and truncation fail.

// ASN.1 classes, as the two top bits of an identifier octet.
const (
	classUniversal = 0
	classContext   = 2
)

// Universal tag numbers the reader looks at.
const (
	tagBoolean         = 1
	tagInteger         = 2
	tagBitString       = 3
	tagOctetString     = 4
	tagOID             = 6
	tagUTF8String      = 12
	tagSequence        = 16
	tagSet             = 17
	tagPrintableString = 19
	tagTeletexString   = 20
	tagIA5String       = 22
	tagUTCTime         = 23
	tagGeneralizedTime = 24
	tagUniversalString = 28
	tagBMPString       = 30
)

// element is one element read from DER.
type element struct {
	class       uint8
	constructed bool
	tag         uint32
	content     []byte
	full        []byte // identifier and length octets, and content
}

func (e *element) is(class uint8, tag uint32) bool { return e.class == class && e.tag == tag }

// universal reports a universal element with this tag number.
func (e *element) universal(tag uint32) bool { return e.is(classUniversal, tag) }

// Identifier octets (low tag numbers) the hot walk compares with idIs.
const (
	idBoolean     = 0x01
	idInteger     = 0x02
	idOctetString = 0x04
	idOID         = 0x06
	idSequence    = 0x30
	idSet         = 0x31
	idContext0    = 0xa0 // [0], the version's explicit tag
	idContext3    = 0xa3 // [3], the extensions' explicit tag
)

// idIs compares identifier octets, whatever the constructed bit says:
// which parsers hold to it differs, and the walk must not be stricter.
func idIs(id, want byte) bool { return id|0x20 == want|0x20 }

// next reads the next element of *in and advances past it: its identifier
// octet (the first octet, which for a high tag number equals no low tag's)
// and its content. It is readElement without the copy of a struct: the
// walk of every log entry calls it a few dozen times.
func next(in *[]byte) (id byte, content []byte, ok bool) {
	b := *in
	if len(b) >= 2 && b[0]&0x1f != 0x1f {
		i, n := 2, int(b[1])
		switch {
		case n < 0x80:
		case n == 0x81 && len(b) >= 3:
			i, n = 3, int(b[2])
		case n == 0x82 && len(b) >= 4:
			i, n = 4, int(b[2])<<8|int(b[3])
		default:
			return nextSlow(in)
		}
		if n > len(b)-i {
			return 0, nil, false
		}
		*in = b[i+n:]
		return b[0], b[i : i+n : i+n], true
	}
	return nextSlow(in)
}

func nextSlow(in *[]byte) (byte, []byte, bool) {
	e, ok := readElementSlow(in)
	if !ok {
		return 0, nil, false
	}
	return e.full[0], e.content, true
}

// readElement reads the next element of *in and advances past it.
func readElement(in *[]byte) (element, bool) {
	b := *in
	id, content, ok := next(in)
	switch {
	case !ok:
		return element{}, false
	case id&0x1f == 0x1f: // a high tag number: read its digits
		*in = b
		return readElementSlow(in)
	}
	return element{class: id >> 6, constructed: id&0x20 != 0, tag: uint32(id & 0x1f),
		content: content, full: b[: len(b)-len(*in) : len(b)-len(*in)]}, true
}

func readElementSlow(in *[]byte) (element, bool) {
	e, i, n, ok := readHeader(*in)
	if !ok || n > len(*in)-i {
		return element{}, false
	}
	b := *in
	e.content = b[i : i+n : i+n]
	e.full = b[: i+n : i+n]
	*in = b[i+n:]
	return e, true
}

// readExplicitQuirk reads an explicitly tagged element the way Go's
// encoding/asn1 does, which certificate-transparency-go's parser inherits:
// the outer header, then the inner element from right after it, whatever
// the outer length says (even past the end of the input). A DER reader
// sees another structure; the names of both must be read.
func readExplicitQuirk(in []byte) (inner element, ok bool) {
	_, i, _, ok := readHeader(in)
	if !ok {
		return element{}, false
	}
	rest := in[i:]
	return readElement(&rest)
}

// readHeader reads the identifier and length octets at the start of b: the
// element without its content, the header's length and the content's.
func readHeader(b []byte) (e element, header, n int, ok bool) {
	if len(b) < 2 {
		return element{}, 0, 0, false
	}
	id := b[0]
	e = element{class: id >> 6, constructed: id&0x20 != 0, tag: uint32(id & 0x1f)}
	i := 1
	if e.tag == 0x1f {
		// High tag number form: base-128 digits, the last without the top bit.
		e.tag = 0
		for {
			if i >= len(b) || e.tag > 1<<24 {
				return element{}, 0, 0, false
			}
			c := b[i]
			i++
			e.tag = e.tag<<7 | uint32(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return element{}, 0, 0, false
	}
	n = int(b[i])
	i++
	if n&0x80 != 0 {
		octets := n & 0x7f
		if octets == 0 || octets > 4 { // indefinite, or longer than any certificate
			return element{}, 0, 0, false
		}
		n = 0
		for range octets {
			if i >= len(b) {
				return element{}, 0, 0, false
			}
			n = n<<8 | int(b[i])
			i++
		}
	}
	if n < 0 {
		return element{}, 0, 0, false
	}
	return e, i, n, true
}

// readUniversal reads the next element and reports whether it is the
// universal element tag.
func readUniversal(in *[]byte, tag uint32) (element, bool) {
	e, ok := readElement(in)
	return e, ok && e.universal(tag)
}

// appendHeader appends DER identifier and length octets (low tag numbers).
func appendHeader(b []byte, identifier byte, n int) []byte {
	b = append(b, identifier)
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 1<<8:
		return append(b, 0x81, byte(n))
	case n < 1<<16:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n < 1<<24:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}
