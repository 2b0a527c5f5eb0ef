package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"go.etcd.io/bbolt"

	"github.com/ct-exporter/ct_exporter/watch"
)

// fuzzAllocLimit bounds what decoding len(data) bytes may allocate. A count
// is bounded by the bytes left, so one input byte can make the decoder
// preallocate at most one element of the largest kind (a WatchMatch),
// besides the string bytes copied out of the record; a count taken at face
// value (up to 2^64) would be caught at once. The constant covers the
// Issuance itself and the error message (which quotes the key).
func fuzzAllocLimit(tbs, data []byte) uint64 {
	perByte := uint64(unsafe.Sizeof(WatchMatch{})) + 16
	return perByte*uint64(len(data)) + 4*uint64(len(tbs)) + 4096
}

// allocated returns the bytes fn allocates, or more than limit. Over the
// limit, fn is measured again (it is deterministic), so that an allocation
// elsewhere in the process at the same time is not counted.
func allocated(fn func(), limit uint64) uint64 {
	var least uint64
	for i := 0; i < 3; i++ {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		fn()
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; i == 0 || n < least {
			least = n
		}
		if least <= limit {
			break
		}
	}
	return least
}

// FuzzDecodeIssuance: a record read from the state file never makes the
// decoder panic or allocate beyond a small multiple of its size, and a
// record that decodes re-encodes to one that decodes to the same issuance.
func FuzzDecodeIssuance(f *testing.F) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	full := &Issuance{
		TBSSHA256:  [32]byte{1, 2, 3},
		CertSHA256: [32]byte{4, 5, 6},
		SPKISHA256: [32]byte{7, 8, 9},
		Serial:     "00a1b2c3d4e5f60718293a4b5c6d7e8f90",
		Issuer:     watch.Issuer{CN: "R11", O: "Let's Encrypt", DN: "CN=R11, O=Let's Encrypt, C=US"},
		SubjectCN:  "www.example.com",
		DNSNames:   []string{"www.example.com", "example.com", "*.example.com"},
		IPs:        []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("::ffff:198.51.100.9")},
		NotBefore:  t0,
		NotAfter:   t0.Add(90 * 24 * time.Hour),
		FirstSeen:  t0.Add(time.Minute + 123456789),
		// A precertificate only so far.
		EmbeddedSCTs: -1,
		Watches: []WatchMatch{
			{Watch: "example.com", FirstSeen: t0.Add(time.Minute), Verdict: watch.IssuerUnexpected},
			{Watch: "192.0.2.0/24", FirstSeen: t0.Add(time.Hour), Verdict: watch.Authorized},
		},
	}
	final := *full
	final.EmbeddedSCTs, final.IPs, final.Watches = 3, nil, full.Watches[:1]
	for _, is := range []*Issuance{full, &final, {TBSSHA256: [32]byte{9}}} {
		rec := EncodeIssuance(is)
		f.Add(is.TBSSHA256[:], rec)
		f.Add(is.TBSSHA256[:], rec[:len(rec)/2])
	}
	// A huge DNS name count, and a record of another version.
	f.Add(make([]byte, 32), append(append([]byte{recordVersion}, make([]byte, 64)...), 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f))
	f.Add(make([]byte, 32), []byte{2})
	f.Fuzz(func(t *testing.T, tbs, data []byte) {
		if len(tbs) > 64 {
			tbs = tbs[:64] // keys are 32 bytes
		}
		var is *Issuance
		var err error
		limit := fuzzAllocLimit(tbs, data)
		if n := allocated(func() { is, err = DecodeIssuance(tbs, data) }, limit); n > limit {
			t.Fatalf("decoding %d bytes allocated %d bytes (limit %d)", len(data), n, limit)
		}
		if err != nil {
			if is != nil {
				t.Fatal("an issuance returned with an error")
			}
			return
		}
		rec := EncodeIssuance(is)
		again, err := DecodeIssuance(tbs, rec)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v\nissuance %+v\nrecord %x", err, is, rec)
		}
		if !reflect.DeepEqual(is, again) {
			t.Fatalf("round trip changes the issuance:\n%+v\n%+v", is, again)
		}
		// Overlong varints may make the input longer than its
		// re-encoding, but re-encoding is stable from then on.
		if rec2 := EncodeIssuance(again); string(rec2) != string(rec) {
			t.Fatalf("encoding is not stable:\n%x\n%x", rec, rec2)
		}
	})
}

// FuzzStateKeys: the keys Observe builds from a configured watch and a
// certificate's issuer and times stay within bbolt's key limit whatever the
// certificate holds, decode back to what they were built from, keep
// different watches' and issuers' counters apart, and order times as time
// goes (an expiry key that wrapped around would be pruned, and its issuance
// counted again).
func FuzzStateKeys(f *testing.F) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	f.Add("example.com", "R11", "E5", byte(watch.IssuerAllowed), t0.Unix(), int64(0), []byte("tbs"))
	f.Add("Bücher.Example.", "Let's Encrypt", "Let\\'s Encrypt", byte(0), int64(253402300799), int64(1e9), make([]byte, 32))
	f.Add("192.0.2.0/24", strings.Repeat("A", 40000), strings.Repeat("A", 39999)+"B", byte(3), int64(-62135596800), int64(-1), []byte{})
	f.Add(strings.Repeat("a.", 126)+"com", "\x00R11", "R11\x00", byte(255), int64(9223372036), int64(854775807), []byte{0xff})
	f.Fuzz(func(t *testing.T, rawWatch, issuerA, issuerB string, verdict byte, sec, nsec int64, tbsSeed []byte) {
		// The state only ever gets watches the configuration accepted.
		w, why := watch.NormalizeDomain(rawWatch)
		if why != "" {
			return
		}
		tbs := sha256.Sum256(tbsSeed)
		v := watch.Verdict(verdict).String()
		la, lb := watch.Label(issuerA), watch.Label(issuerB)

		ka := CounterKey(CounterNewCertificates, w, la, v)
		kb := CounterKey(CounterNewCertificates, w, lb, v)
		for _, k := range []string{ka, kb, CounterKey(CounterParseErrors, w), CounterKey(CounterNewCertificates, w, IssuerOther, v)} {
			if len(k) == 0 || len(k) > bbolt.MaxKeySize {
				t.Fatalf("counter key of %d bytes", len(k))
			}
		}
		name, labels := ParseCounterKey(ka)
		if name != CounterNewCertificates || !slices.Equal(labels, []string{w, la, v}) {
			t.Fatalf("counter key %q decodes to %q %q", ka, name, labels)
		}
		if (ka == kb) != (issuerA == issuerB) {
			t.Fatalf("issuers %q and %q: counter keys %q and %q", issuerA, issuerB, ka, kb)
		}
		// Another watch's counter is another key, even with a label
		// value that holds the other's name.
		if other := CounterKey(CounterNewCertificates, w+".x", la, v); other == ka {
			t.Fatalf("watches %s and %s.x share the counter key %q", w, w, ka)
		}

		at := time.Unix(sec, nsec)
		fs := firstSeenKey(at, tbs, w)
		if len(fs) > bbolt.MaxKeySize || len(fs) != 40+len(w) {
			t.Fatalf("first_seen key of %d bytes for a watch of %d", len(fs), len(w))
		}
		if gotTBS, gotWatch := fs[8:40], string(fs[40:]); !bytes.Equal(gotTBS, tbs[:]) || gotWatch != w {
			t.Fatalf("first_seen key %x decodes to %x %q", fs, gotTBS, gotWatch)
		}
		ex := expiryKey(at, tbs)
		if len(ex) != 40 || !bytes.Equal(ex[8:], tbs[:]) {
			t.Fatalf("expiry key %x", ex)
		}
		nanos := int64(binary.BigEndian.Uint64(ex[:8]))
		if nanos < 0 || int64(binary.BigEndian.Uint64(fs[:8])) != nanos {
			t.Fatalf("time %v: expiry key time %d, first_seen key time %x", at, nanos, fs[:8])
		}
		if !at.Before(minKeyTime) && !at.After(maxKeyTime) && !time.Unix(0, nanos).Equal(at) {
			t.Fatalf("time %v decodes to %v", at, time.Unix(0, nanos))
		}
		// Keys order as times do (ties where the range saturates).
		for _, d := range []time.Duration{time.Nanosecond, time.Hour, 200 * 365 * 24 * time.Hour} {
			later := expiryKey(at.Add(d), tbs)
			if bytes.Compare(later[:8], ex[:8]) < 0 {
				t.Fatalf("%v expires before %v: keys %x < %x", at.Add(d), at, later[:8], ex[:8])
			}
		}
		if at.After(time.Now()) && time.Unix(0, nanos).Before(time.Now()) {
			t.Fatalf("a time to come, %v, is keyed as %v", at, time.Unix(0, nanos))
		}
	})
}
