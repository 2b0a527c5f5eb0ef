package state

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/ct-exporter/ct_exporter/watch"
)

// Tx is one transaction on the state file.
type Tx struct {
	s      *Store
	btx    *bbolt.Tx
	now    time.Time
	policy Policy

	// Effects on the in-memory mirror, applied after the commit.
	counters    map[string]uint64
	countDelta  int64
	recent      []Recent
	scts        map[[32]byte]int
	parseErrors map[[32]byte]string
	issuers     map[string]map[string]struct{} // new issuer labels by watch
}

// Issuance returns the issuance with this tbs_sha256, or nil.
func (tx *Tx) Issuance(tbs [32]byte) (*Issuance, error) {
	v := tx.btx.Bucket(bucketIssuances).Get(tbs[:])
	if v == nil {
		return nil, nil
	}
	return decodeIssuance(tbs[:], v)
}

// Observe records that a certificate of issuance obs was seen, concerning
// the given watches. It returns the matches that are new: for those, the
// issuance was counted. Seeing the final certificate of a known issuance
// fills in its SCT count. An issuance that expired more than ExpiredGrace ago
// is not recorded at all.
//
// Observe writes all it has to or nothing: an issuance whose keys or record
// bbolt would refuse is refused whole, with an error wrapping
// ErrUnrecordable, before anything is written (bbolt does not undo the puts
// of a transaction that goes on). Any other error is the store's.
func (tx *Tx) Observe(obs *Issuance, matches []Match) ([]Match, error) {
	if !obs.NotAfter.IsZero() && obs.NotAfter.Before(tx.now.Add(-ExpiredGrace)) {
		return nil, nil
	}
	if !tx.btx.Writable() {
		// Before anything else: the issuers are read under writeMu only.
		return nil, bberrors.ErrTxNotWritable
	}
	is, err := tx.Issuance(obs.TBSSHA256)
	if err != nil {
		return nil, err
	}
	// Everything is computed first, on is (a copy), and checked; then written.
	var (
		expiry          []byte // when the issuance is new
		sctsKnown       bool
		parseErrorKnown bool
		firstSeen       [][]byte
		counters        []string
		issuers         []Match // watches for which the issuer is new, in Watch an issuer label
		fresh           []Match
	)
	if is == nil {
		rec := *obs
		rec.FirstSeen = tx.now
		rec.Watches = nil
		is = &rec
		expiry = expiryKey(expiryOf(is, tx.now), is.TBSSHA256)
	} else {
		if is.EmbeddedSCTs < 0 && obs.EmbeddedSCTs >= 0 {
			is.EmbeddedSCTs = obs.EmbeddedSCTs
			sctsKnown = true
		}
		if is.ParseError == "" && obs.ParseError != "" {
			// A certificate of a known issuance that does not parse (the
			// final one, when the precertificate did): the issuance is
			// flagged from now on, for the watches it concerns already.
			is.ParseError = obs.ParseError
			parseErrorKnown = true
			for _, w := range is.Watches {
				counters = append(counters, counterKey(CounterParseErrors, w.Watch))
			}
		}
	}
	var issuer string
	for _, m := range matches {
		if is.watchIndex(m.Watch) >= 0 {
			continue
		}
		if issuer == "" {
			issuer = watch.Label(is.Issuer.Label())
		}
		is.Watches = append(is.Watches, WatchMatch{Watch: m.Watch, FirstSeen: tx.now, Verdict: m.Verdict})
		firstSeen = append(firstSeen, firstSeenKey(tx.now, is.TBSSHA256, m.Watch))
		label, isNew := tx.issuerLabel(m.Watch, issuer)
		if isNew {
			issuers = append(issuers, m)
		}
		counters = append(counters, counterKey(CounterNewCertificates, m.Watch, label, m.Verdict.String()))
		if is.ParseError != "" {
			counters = append(counters, counterKey(CounterParseErrors, m.Watch))
		}
		fresh = append(fresh, m)
	}
	if expiry == nil && !sctsKnown && !parseErrorKnown && len(fresh) == 0 {
		return nil, nil
	}
	record := encodeIssuance(is)
	if err := tx.recordable(is, expiry, firstSeen, counters, record); err != nil {
		return nil, err
	}

	if expiry != nil {
		tx.countDelta++
		if err := tx.appendOnly(bucketExpiry).Put(expiry, nil); err != nil {
			return nil, err
		}
	}
	for _, k := range firstSeen {
		if err := tx.appendOnly(bucketFirstSeen).Put(k, nil); err != nil {
			return nil, err
		}
	}
	for _, k := range counters {
		if err := tx.add(k, 1); err != nil {
			return nil, err
		}
	}
	if err := tx.btx.Bucket(bucketIssuances).Put(is.TBSSHA256[:], record); err != nil {
		return nil, err
	}
	// The in-memory effects, applied once the transaction commits.
	if sctsKnown {
		if tx.scts == nil {
			tx.scts = map[[32]byte]int{}
		}
		tx.scts[is.TBSSHA256] = is.EmbeddedSCTs
	}
	if parseErrorKnown {
		if tx.parseErrors == nil {
			tx.parseErrors = map[[32]byte]string{}
		}
		tx.parseErrors[is.TBSSHA256] = is.ParseError
	}
	for _, m := range issuers {
		tx.addIssuer(m.Watch, issuer)
	}
	for _, m := range fresh {
		tx.recent = append(tx.recent, newRecent(is, tx.now, m.Watch, m.Verdict))
	}
	return fresh, nil
}

// recordable checks everything Observe is about to write against what
// bbolt accepts, so that a certificate bbolt would refuse is refused before
// any of it is written.
func (tx *Tx) recordable(is *Issuance, expiry []byte, firstSeen [][]byte, counters []string, record []byte) error {
	maxKey, maxValue := tx.s.maxKey, tx.s.maxValue
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("state: issuance %x %w: %s", is.TBSSHA256, ErrUnrecordable, fmt.Sprintf(format, args...))
	}
	if len(record) > maxValue {
		return refuse("its record is %d bytes, over the limit of %d", len(record), maxValue)
	}
	if len(expiry) > maxKey {
		return refuse("its expiry key is %d bytes, over the limit of %d", len(expiry), maxKey)
	}
	for _, k := range firstSeen {
		if len(k) > maxKey {
			return refuse("a first-seen key is %d bytes, over the limit of %d", len(k), maxKey)
		}
	}
	for _, k := range counters {
		if len(k) > maxKey {
			return refuse("a counter key is %d bytes, over the limit of %d", len(k), maxKey)
		}
	}
	// Keys are never empty: each starts with a fixed-size part or a name.
	return nil
}

// issuerLabel is the issuer label of ct_new_certificates_total for a new
// issuance of watch w: the issuer's own, unless the watch has reached
// MaxIssuersPerWatch without it (IssuerOther). isNew says that the issuer
// is counted for the watch for the first time.
func (tx *Tx) issuerLabel(w, issuer string) (label string, isNew bool) {
	if issuer == IssuerOther {
		return issuer, false
	}
	if _, ok := tx.s.issuers[w][issuer]; ok {
		return issuer, false
	}
	if _, ok := tx.issuers[w][issuer]; ok {
		return issuer, false
	}
	limit := tx.policy.MaxIssuersPerWatch
	if limit <= 0 {
		limit = DefaultMaxIssuersPerWatch
	}
	if len(tx.s.issuers[w])+len(tx.issuers[w]) >= limit {
		return IssuerOther, false
	}
	return issuer, true
}

// addIssuer notes an issuer counted for the first time for watch w, for
// the rest of the transaction and, once it commits, for the store.
func (tx *Tx) addIssuer(w, issuer string) {
	if tx.issuers == nil {
		tx.issuers = map[string]map[string]struct{}{}
	}
	set := tx.issuers[w]
	if set == nil {
		set = map[string]struct{}{}
		tx.issuers[w] = set
	}
	set[issuer] = struct{}{}
}

// unreadableValidity is how long an issuance whose NotAfter could not be
// read is kept: longer than any certificate may be valid, so that it is
// never pruned and then counted again while it could still be seen.
const unreadableValidity = 2 * 398 * 24 * time.Hour

// expiryOf is when an issuance first seen at now expires, for pruning.
func expiryOf(is *Issuance, now time.Time) time.Time {
	if is.NotAfter.IsZero() {
		return now.Add(unreadableValidity)
	}
	return is.NotAfter
}

// appendOnly returns a time-ordered index bucket, whose keys mostly arrive
// in order: its pages are filled before they split, instead of half.
func (tx *Tx) appendOnly(name []byte) *bbolt.Bucket {
	b := tx.btx.Bucket(name)
	b.FillPercent = 0.9
	return b
}

// AddCounter adds to a persisted counter.
func (tx *Tx) AddCounter(name string, labels []string, delta uint64) error {
	return tx.add(counterKey(name, labels...), delta)
}

func (tx *Tx) add(key string, delta uint64) error {
	b := tx.btx.Bucket(bucketCounters)
	cur, _ := readU64(b.Get([]byte(key)))
	if err := b.Put([]byte(key), u64(cur+delta)); err != nil {
		return err
	}
	tx.counters[key] += delta
	return nil
}

// Cursor returns a source's opaque progress marker, or nil.
func (tx *Tx) Cursor(source string) []byte {
	return clone(tx.btx.Bucket(bucketCursors).Get([]byte(source)))
}

// SetCursor stores a source's progress marker.
func (tx *Tx) SetCursor(source string, v []byte) error {
	return tx.btx.Bucket(bucketCursors).Put([]byte(source), v)
}

// SeenID reports whether a source (crt.sh) already processed the certificate
// with this id, and the tbs_sha256 it had.
func (tx *Tx) SeenID(source string, id uint64) ([32]byte, bool) {
	var tbs [32]byte
	b := tx.btx.Bucket(bucketIDs).Bucket([]byte(source))
	if b == nil {
		return tbs, false
	}
	v := b.Get(binary.BigEndian.AppendUint64(nil, id))
	if len(v) != 40 {
		return tbs, false
	}
	copy(tbs[:], v)
	return tbs, true
}

// MarkID records that a source processed the certificate with this id.
func (tx *Tx) MarkID(source string, id uint64, tbs [32]byte, notAfter time.Time) error {
	b, err := tx.btx.Bucket(bucketIDs).CreateBucketIfNotExists([]byte(source))
	if err != nil {
		return fmt.Errorf("state: ids of %s: %w", source, err)
	}
	v := append(tbs[:0:0], tbs[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(max(notAfter.Unix(), 0)))
	return b.Put(binary.BigEndian.AppendUint64(nil, id), v)
}

// LogPosition returns a CT log's stored position, or nil.
func (tx *Tx) LogPosition(log string) []byte {
	return clone(tx.btx.Bucket(bucketLogs).Get([]byte(log)))
}

// SetLogPosition stores a CT log's position.
func (tx *Tx) SetLogPosition(log string, v []byte) error {
	return tx.btx.Bucket(bucketLogs).Put([]byte(log), v)
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
