package state

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

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
func (tx *Tx) Observe(obs *Issuance, matches []Match) ([]Match, error) {
	if !obs.NotAfter.IsZero() && obs.NotAfter.Before(tx.now.Add(-ExpiredGrace)) {
		return nil, nil
	}
	b := tx.btx.Bucket(bucketIssuances)
	is, err := tx.Issuance(obs.TBSSHA256)
	if err != nil {
		return nil, err
	}
	changed := false
	if is == nil {
		rec := *obs
		rec.FirstSeen = tx.now
		rec.Watches = nil
		is = &rec
		changed = true
		tx.countDelta++
		if err := tx.appendOnly(bucketExpiry).Put(expiryKey(expiryOf(is, tx.now), is.TBSSHA256), nil); err != nil {
			return nil, err
		}
	} else {
		if is.EmbeddedSCTs < 0 && obs.EmbeddedSCTs >= 0 {
			is.EmbeddedSCTs = obs.EmbeddedSCTs
			changed = true
			if tx.scts == nil {
				tx.scts = map[[32]byte]int{}
			}
			tx.scts[is.TBSSHA256] = is.EmbeddedSCTs
		}
		if is.ParseError == "" && obs.ParseError != "" {
			// A certificate of a known issuance that does not parse (the
			// final one, when the precertificate did): the issuance is
			// flagged from now on, for the watches it concerns already.
			is.ParseError = obs.ParseError
			changed = true
			for _, w := range is.Watches {
				if err := tx.add(counterKey(CounterParseErrors, w.Watch), 1); err != nil {
					return nil, err
				}
			}
			if tx.parseErrors == nil {
				tx.parseErrors = map[[32]byte]string{}
			}
			tx.parseErrors[is.TBSSHA256] = is.ParseError
		}
	}
	var fresh []Match
	for _, m := range matches {
		if is.watchIndex(m.Watch) >= 0 {
			continue
		}
		is.Watches = append(is.Watches, WatchMatch{Watch: m.Watch, FirstSeen: tx.now, Verdict: m.Verdict})
		if err := tx.appendOnly(bucketFirstSeen).Put(firstSeenKey(tx.now, is.TBSSHA256, m.Watch), nil); err != nil {
			return nil, err
		}
		if err := tx.add(counterKey(CounterNewCertificates, m.Watch, watch.Label(is.Issuer.Label()), m.Verdict.String()), 1); err != nil {
			return nil, err
		}
		if is.ParseError != "" {
			if err := tx.add(counterKey(CounterParseErrors, m.Watch), 1); err != nil {
				return nil, err
			}
		}
		tx.recent = append(tx.recent, newRecent(is, tx.now, m.Watch, m.Verdict))
		fresh = append(fresh, m)
		changed = true
	}
	if changed {
		if err := b.Put(is.TBSSHA256[:], encodeIssuance(is)); err != nil {
			return nil, err
		}
	}
	return fresh, nil
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
