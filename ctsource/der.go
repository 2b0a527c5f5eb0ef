package ctsource

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

// readElement reads the next element of *in and advances past it.
func readElement(in *[]byte) (element, bool) {
	b := *in
	if len(b) < 2 {
		return element{}, false
	}
	id := b[0]
	e := element{class: id >> 6, constructed: id&0x20 != 0, tag: uint32(id & 0x1f)}
	i := 1
	if e.tag == 0x1f {
		// High tag number form: base-128 digits, the last without the top bit.
		e.tag = 0
		for {
			if i >= len(b) || e.tag > 1<<24 {
				return element{}, false
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
		return element{}, false
	}
	n := int(b[i])
	i++
	if n&0x80 != 0 {
		octets := n & 0x7f
		if octets == 0 || octets > 4 { // indefinite, or longer than any certificate
			return element{}, false
		}
		n = 0
		for range octets {
			if i >= len(b) {
				return element{}, false
			}
			n = n<<8 | int(b[i])
			i++
		}
	}
	if n < 0 || n > len(b)-i {
		return element{}, false
	}
	e.content = b[i : i+n : i+n]
	e.full = b[: i+n : i+n]
	*in = b[i+n:]
	return e, true
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
