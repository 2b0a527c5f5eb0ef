package state

import (
	"encoding/binary"
	"fmt"
	"slices"
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
	issuers     Issuers // new issuer labels by watch
}

// Issuance returns the issuance with this tbs_sha256, or nil.
func (tx *Tx) Issuance(tbs [32]byte) (*Issuance, error) {
	v := tx.btx.Bucket(bucketIssuances).Get(tbs[:])
	if v == nil {
		return nil, nil
	}
	return DecodeIssuance(tbs[:], v)
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
	if Expired(obs, tx.now) {
		return nil, nil
	}
	if !tx.btx.Writable() {
		return nil, bberrors.ErrTxNotWritable
	}
	stored, err := tx.Issuance(obs.TBSSHA256)
	if err != nil {
		return nil, err
	}
	d := Decide(stored, obs, matches, tx.now, tx.issuerLabel)
	if d == nil {
		return nil, nil
	}
	is := d.Issuance
	var expiry []byte
	if d.New {
		expiry = expiryKey(d.Expiry, is.TBSSHA256)
	}
	firstSeen := make([][]byte, len(d.Fresh))
	for i, m := range d.Fresh {
		firstSeen[i] = firstSeenKey(tx.now, is.TBSSHA256, m.Watch)
	}
	record := EncodeIssuance(is)
	if err := tx.recordable(is, expiry, firstSeen, d.Counters, record); err != nil {
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
	for _, k := range d.Counters {
		if err := tx.add(k, 1); err != nil {
			return nil, err
		}
	}
	if err := tx.btx.Bucket(bucketIssuances).Put(is.TBSSHA256[:], record); err != nil {
		return nil, err
	}
	// The in-memory effects, applied once the transaction commits.
	if d.SCTsKnown {
		if tx.scts == nil {
			tx.scts = map[[32]byte]int{}
		}
		tx.scts[is.TBSSHA256] = is.EmbeddedSCTs
	}
	if d.ParseErrorKnown {
		if tx.parseErrors == nil {
			tx.parseErrors = map[[32]byte]string{}
		}
		tx.parseErrors[is.TBSSHA256] = is.ParseError
	}
	for _, w := range d.NewIssuers {
		if tx.issuers == nil {
			tx.issuers = Issuers{}
		}
		tx.issuers.Add(w, d.Issuer)
	}
	tx.recent = append(tx.recent, d.Recent...)
	return d.Fresh, nil
}

// Expired reports whether an observed issuance expired more than
// ExpiredGrace before now: it is not recorded at all.
func Expired(obs *Issuance, now time.Time) bool {
	return !obs.NotAfter.IsZero() && obs.NotAfter.Before(now.Add(-ExpiredGrace))
}

// Decision is what observing an issuance changes, whatever the store: the
// rules of Observe, as a pure function.
type Decision struct {
	// Issuance is the record to store: the stored one (a copy) updated,
	// or the new one.
	Issuance *Issuance
	// New says that the issuance was not stored: it is counted, and kept
	// until Expiry (then pruned).
	New    bool
	Expiry time.Time
	// SCTsKnown and ParseErrorKnown say that a known issuance learnt its
	// SCT count or that a certificate of it does not parse.
	SCTsKnown, ParseErrorKnown bool
	// Counters are the counter keys (CounterKey) to add 1 to, once each
	// time they appear.
	Counters []string
	// Issuer is the issuer label value; NewIssuers the watches for which
	// it is counted for the first time.
	Issuer     string
	NewIssuers []string
	// Fresh are the matches new to the issuance (each first seen at now),
	// and Recent their recent series.
	Fresh  []Match
	Recent []Recent
}

// Decide applies the rules of Observe to the stored record of an issuance
// (nil when none), for a certificate of it observed at now concerning
// matches. issuerLabel is the issuer label of a new issuance for a watch,
// and whether the issuer is new for the watch (see Policy.MaxIssuersPerWatch);
// it is called once per fresh match, and a store remembers the new ones
// (NewIssuers) for the rest of the transaction. It returns nil when nothing
// changes. The caller checks Expired first.
func Decide(stored, obs *Issuance, matches []Match, now time.Time, issuerLabel func(w, issuer string) (string, bool)) *Decision {
	d := &Decision{}
	is := stored
	if is == nil {
		rec := *obs
		rec.FirstSeen = now
		rec.Watches = nil
		is = &rec
		d.New = true
		d.Expiry = ExpiryOf(is, now)
	} else {
		cp := *is
		cp.Watches = slices.Clone(is.Watches)
		is = &cp
		if is.EmbeddedSCTs < 0 && obs.EmbeddedSCTs >= 0 {
			is.EmbeddedSCTs = obs.EmbeddedSCTs
			d.SCTsKnown = true
		}
		if is.ParseError == "" && obs.ParseError != "" {
			// A certificate of a known issuance that does not parse (the
			// final one, when the precertificate did): the issuance is
			// flagged from now on, for the watches it concerns already.
			is.ParseError = obs.ParseError
			d.ParseErrorKnown = true
			for _, w := range is.Watches {
				d.Counters = append(d.Counters, CounterKey(CounterParseErrors, w.Watch))
			}
		}
	}
	d.Issuance = is
	for _, m := range matches {
		if is.watchIndex(m.Watch) >= 0 {
			continue
		}
		if d.Issuer == "" {
			d.Issuer = watch.Label(is.Issuer.Label())
		}
		is.Watches = append(is.Watches, WatchMatch{Watch: m.Watch, FirstSeen: now, Verdict: m.Verdict})
		label, isNew := issuerLabel(m.Watch, d.Issuer)
		if isNew {
			d.NewIssuers = append(d.NewIssuers, m.Watch)
		}
		d.Counters = append(d.Counters, CounterKey(CounterNewCertificates, m.Watch, label, m.Verdict.String()))
		if is.ParseError != "" {
			d.Counters = append(d.Counters, CounterKey(CounterParseErrors, m.Watch))
		}
		d.Fresh = append(d.Fresh, m)
	}
	if !d.New && !d.SCTsKnown && !d.ParseErrorKnown && len(d.Fresh) == 0 {
		return nil
	}
	for _, m := range d.Fresh {
		d.Recent = append(d.Recent, NewRecent(is, now, m.Watch, m.Verdict))
	}
	return d
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
// issuance of watch w (Mirror.IssuerLabel), the transaction's new issuers
// included.
func (tx *Tx) issuerLabel(w, issuer string) (label string, isNew bool) {
	return tx.s.IssuerLabel(tx.policy, w, tx.issuers, issuer)
}

// issuerLabel decides Mirror.IssuerLabel from the issuers of the watch
// counted so far (known) and added by the transaction.
func issuerLabel(p Policy, known, added map[string]struct{}, issuer string) (label string, isNew bool) {
	if issuer == IssuerOther {
		return issuer, false
	}
	if _, ok := known[issuer]; ok {
		return issuer, false
	}
	if _, ok := added[issuer]; ok {
		return issuer, false
	}
	limit := p.MaxIssuersPerWatch
	if limit <= 0 {
		limit = DefaultMaxIssuersPerWatch
	}
	if len(known)+len(added) >= limit {
		return IssuerOther, false
	}
	return issuer, true
}

// unreadableValidity is how long an issuance whose NotAfter could not be
// read is kept: longer than any certificate may be valid, so that it is
// never pruned and then counted again while it could still be seen.
const unreadableValidity = 2 * 398 * 24 * time.Hour

// ExpiryOf is when an issuance first seen at now expires, for pruning.
func ExpiryOf(is *Issuance, now time.Time) time.Time {
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
	return tx.add(CounterKey(name, labels...), delta)
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
