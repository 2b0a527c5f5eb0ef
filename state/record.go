package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/ct-exporter/ct_exporter/watch"
)

// Issuance is what the state file keeps about one issuance (a precertificate
// and its final certificate), keyed by its tbs_sha256.
type Issuance struct {
	TBSSHA256  [32]byte
	CertSHA256 [32]byte // of the first certificate seen; never changes
	SPKISHA256 [32]byte
	Serial     string
	Issuer     watch.Issuer
	SubjectCN  string
	// OtherCNs are the subject's other CNs (rare): watches match them too.
	OtherCNs  []string
	DNSNames  []string
	IPs       []netip.Addr
	NotBefore time.Time
	NotAfter  time.Time
	// EmbeddedSCTs is -1 until a final certificate has been seen.
	EmbeddedSCTs int
	// ParseError is why a strict X.509 parser refuses a certificate of the
	// issuance (the first seen that it refuses); empty when all parse.
	ParseError string
	FirstSeen  time.Time
	// Watches are the watches the issuance was first seen for, with the
	// verdict it had then (the verdict label of ct_new_certificates_total).
	Watches []WatchMatch
}

// WatchMatch records that an issuance concerned a watch.
type WatchMatch struct {
	Watch     string
	FirstSeen time.Time
	Verdict   watch.Verdict
}

// Match is a watch an observed certificate concerns, with the verdict it gets.
type Match struct {
	Watch   string
	Verdict watch.Verdict
}

// Names returns the DNS names and subject CNs, as the certificate gives
// them (not normalized).
func (is *Issuance) Names() []string {
	names := make([]string, 0, len(is.DNSNames)+len(is.OtherCNs)+1)
	names = append(names, is.DNSNames...)
	names = append(names, is.OtherCNs...)
	if is.SubjectCN != "" {
		names = append(names, is.SubjectCN)
	}
	return names
}

// Candidate returns the facts a verdict is based on.
func (is *Issuance) Candidate() watch.Candidate {
	return watch.Candidate{TBSSHA256: is.TBSSHA256, SPKISHA256: is.SPKISHA256, Issuer: is.Issuer}
}

func (is *Issuance) watchIndex(w string) int {
	for i := range is.Watches {
		if is.Watches[i].Watch == w {
			return i
		}
	}
	return -1
}

// recordVersion 2 added OtherCNs and ParseError; version 1 records are
// still read.
const recordVersion = 2

var errCorrupt = errors.New("corrupt record")

// EncodeIssuance is the record of an issuance, DecodeIssuance reads it.
// The record format is a version byte, then fields in a fixed order: fixed-size
// hashes, uvarint-length-prefixed strings, zigzag varints for times (Unix
// nanoseconds) and the SCT count. Compact, because there may be millions.
func EncodeIssuance(is *Issuance) []byte {
	b := make([]byte, 0, 160+len(is.Issuer.DN)+16*len(is.DNSNames))
	b = append(b, recordVersion)
	b = append(b, is.CertSHA256[:]...)
	b = append(b, is.SPKISHA256[:]...)
	b = appendString(b, is.Serial)
	b = appendString(b, is.Issuer.CN)
	b = appendString(b, is.Issuer.O)
	b = appendString(b, is.Issuer.DN)
	b = appendString(b, is.SubjectCN)
	b = binary.AppendUvarint(b, uint64(len(is.DNSNames)))
	for _, n := range is.DNSNames {
		b = appendString(b, n)
	}
	b = binary.AppendUvarint(b, uint64(len(is.IPs)))
	for _, a := range is.IPs {
		raw := a.AsSlice()
		b = appendString(b, string(raw))
	}
	b = appendTime(b, is.NotBefore)
	b = appendTime(b, is.NotAfter)
	b = binary.AppendVarint(b, int64(is.EmbeddedSCTs))
	b = appendTime(b, is.FirstSeen)
	b = binary.AppendUvarint(b, uint64(len(is.Watches)))
	for _, w := range is.Watches {
		b = appendString(b, w.Watch)
		b = appendTime(b, w.FirstSeen)
		b = append(b, byte(w.Verdict))
	}
	b = binary.AppendUvarint(b, uint64(len(is.OtherCNs)))
	for _, n := range is.OtherCNs {
		b = appendString(b, n)
	}
	return appendString(b, is.ParseError)
}

// DecodeIssuance reads a record of EncodeIssuance.
func DecodeIssuance(tbs []byte, b []byte) (*Issuance, error) {
	d := decoder{b: b}
	version := d.byte()
	if version < 1 || version > recordVersion {
		return nil, fmt.Errorf("%w: record version %d, this build reads up to %d", errCorrupt, version, recordVersion)
	}
	is := &Issuance{}
	copy(is.TBSSHA256[:], tbs)
	d.fixed(is.CertSHA256[:])
	d.fixed(is.SPKISHA256[:])
	is.Serial = d.string()
	is.Issuer.CN = d.string()
	is.Issuer.O = d.string()
	is.Issuer.DN = d.string()
	is.SubjectCN = d.string()
	if n := d.count(); n > 0 {
		is.DNSNames = make([]string, n)
		for i := range is.DNSNames {
			is.DNSNames[i] = d.string()
		}
	}
	if n := d.count(); n > 0 {
		is.IPs = make([]netip.Addr, n)
		for i := range is.IPs {
			a, ok := netip.AddrFromSlice([]byte(d.string()))
			if !ok {
				d.err = errCorrupt
			}
			is.IPs[i] = a
		}
	}
	is.NotBefore = d.time()
	is.NotAfter = d.time()
	is.EmbeddedSCTs = int(d.varint())
	is.FirstSeen = d.time()
	if n := d.count(); n > 0 {
		is.Watches = make([]WatchMatch, n)
		for i := range is.Watches {
			is.Watches[i] = WatchMatch{Watch: d.string(), FirstSeen: d.time(), Verdict: watch.Verdict(d.byte())}
		}
	}
	if version >= 2 {
		if n := d.count(); n > 0 {
			is.OtherCNs = make([]string, n)
			for i := range is.OtherCNs {
				is.OtherCNs[i] = d.string()
			}
		}
		is.ParseError = d.string()
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: issuance %x", errCorrupt, tbs)
	}
	return is, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	// Saturated: a certificate valid until 9999 (RFC 5280's "no expiry")
	// is stored as valid until 2262, not as a wrapped-around date.
	switch {
	case t.Before(minRecordTime):
		return binary.AppendVarint(b, math.MinInt64)
	case t.After(maxKeyTime):
		return binary.AppendVarint(b, math.MaxInt64)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

var minRecordTime = time.Unix(0, math.MinInt64)

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() { d.err, d.b = errCorrupt, nil }

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) fixed(dst []byte) {
	if len(d.b) < len(dst) {
		d.fail()
		return
	}
	copy(dst, d.b)
	d.b = d.b[len(dst):]
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length and bounds it by the bytes left, so that a corrupt
// record cannot make the decoder allocate without limit.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) time() time.Time {
	v := d.varint()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}
