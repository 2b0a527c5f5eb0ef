package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// Item is one piece of a state as Export gives it and Import takes it:
// exactly one of its fields is set. Together, the items of a state are all
// of it, so that a state copied item by item into an empty store neither
// loses nor counts again anything (`ct_exporter state copy`).
type Item struct {
	// Issuance is an issuance with its watch matches (first-seen times and
	// verdicts).
	Issuance *Issuance
	// Counter is a persisted counter.
	Counter *Counter
	// Cursor is a source's progress marker, LogPosition a CT log's
	// position.
	Cursor, LogPosition *Marker
	// ID is a certificate a source (crt.sh) processed.
	ID *SourceID
}

// Marker is a source's opaque progress marker or position.
type Marker struct {
	Source string
	Value  []byte
}

// SourceID is a certificate a source processed.
type SourceID struct {
	Source string
	ProcessedID
}

// ImportStats counts what Import wrote.
type ImportStats struct {
	Issuances, Matches, Counters, Cursors, LogPositions, IDs int
}

// Add counts an item.
func (st *ImportStats) Add(it Item) {
	switch {
	case it.Issuance != nil:
		st.Issuances++
		st.Matches += len(it.Issuance.Watches)
	case it.Counter != nil:
		st.Counters++
	case it.Cursor != nil:
		st.Cursors++
	case it.LogPosition != nil:
		st.LogPositions++
	case it.ID != nil:
		st.IDs++
	}
}

// ErrNotEmpty is returned by Import into a store that holds something,
// unless told to replace it.
var ErrNotEmpty = errors.New("the destination state is not empty")

// Export calls fn with every item of the state, in one read transaction.
func (s *Store) Export(fn func(Item) error) error {
	return s.db.View(func(btx *bbolt.Tx) error {
		err := btx.Bucket(bucketIssuances).ForEach(func(k, v []byte) error {
			is, err := DecodeIssuance(k, v)
			if err != nil {
				return err
			}
			return fn(Item{Issuance: is})
		})
		if err != nil {
			return err
		}
		err = btx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			n, ok := readU64(v)
			if !ok {
				return fmt.Errorf("%w: counter %q", errCorrupt, k)
			}
			name, labels := ParseCounterKey(string(k))
			return fn(Item{Counter: &Counter{Name: name, Labels: labels, Value: n}})
		})
		if err != nil {
			return err
		}
		err = btx.Bucket(bucketCursors).ForEach(func(k, v []byte) error {
			return fn(Item{Cursor: &Marker{Source: string(k), Value: clone(v)}})
		})
		if err != nil {
			return err
		}
		err = btx.Bucket(bucketLogs).ForEach(func(k, v []byte) error {
			return fn(Item{LogPosition: &Marker{Source: string(k), Value: clone(v)}})
		})
		if err != nil {
			return err
		}
		ids := btx.Bucket(bucketIDs)
		return ids.ForEach(func(source, _ []byte) error {
			b := ids.Bucket(source)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				if len(k) != 8 || len(v) != 40 {
					return fmt.Errorf("%w: id %x of %s", errCorrupt, k, source)
				}
				id := SourceID{Source: string(source)}
				id.ID = binary.BigEndian.Uint64(k)
				copy(id.TBSSHA256[:], v)
				id.NotAfter = time.Unix(int64(binary.BigEndian.Uint64(v[32:])), 0).UTC()
				return fn(Item{ID: &id})
			})
		})
	})
}

// Import writes every item items gives in one transaction: all of them or,
// when it fails, none. It refuses a store that is not empty (ErrNotEmpty)
// unless replace is true: then what the store held is deleted in the same
// transaction. The store's metrics reflect the import once it is opened
// again; nothing else should use it meanwhile.
func (s *Store) Import(replace bool, items func(yield func(Item) error) error) (ImportStats, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var st ImportStats
	err := s.db.Update(func(btx *bbolt.Tx) error {
		st = ImportStats{}
		names := [][]byte{bucketIssuances, bucketFirstSeen, bucketExpiry, bucketCounters, bucketCursors, bucketIDs, bucketLogs}
		for _, name := range names {
			if k, _ := btx.Bucket(name).Cursor().First(); k == nil {
				continue
			}
			if !replace {
				return ErrNotEmpty
			}
			if err := btx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := btx.CreateBucket(name); err != nil {
				return err
			}
		}
		var count uint64
		err := items(func(it Item) error {
			st.Add(it)
			switch {
			case it.Issuance != nil:
				is := it.Issuance
				if err := btx.Bucket(bucketIssuances).Put(is.TBSSHA256[:], EncodeIssuance(is)); err != nil {
					return err
				}
				count++
				if err := btx.Bucket(bucketExpiry).Put(expiryKey(ExpiryOf(is, is.FirstSeen), is.TBSSHA256), nil); err != nil {
					return err
				}
				for _, m := range is.Watches {
					if err := btx.Bucket(bucketFirstSeen).Put(firstSeenKey(m.FirstSeen, is.TBSSHA256, m.Watch), nil); err != nil {
						return err
					}
				}
			case it.Counter != nil:
				c := it.Counter
				return btx.Bucket(bucketCounters).Put([]byte(CounterKey(c.Name, c.Labels...)), u64(c.Value))
			case it.Cursor != nil:
				return btx.Bucket(bucketCursors).Put([]byte(it.Cursor.Source), it.Cursor.Value)
			case it.LogPosition != nil:
				return btx.Bucket(bucketLogs).Put([]byte(it.LogPosition.Source), it.LogPosition.Value)
			case it.ID != nil:
				b, err := btx.Bucket(bucketIDs).CreateBucketIfNotExists([]byte(it.ID.Source))
				if err != nil {
					return err
				}
				v := append(it.ID.TBSSHA256[:0:0], it.ID.TBSSHA256[:]...)
				v = binary.BigEndian.AppendUint64(v, uint64(max(it.ID.NotAfter.Unix(), 0)))
				return b.Put(binary.BigEndian.AppendUint64(nil, it.ID.ID), v)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return btx.Bucket(bucketMeta).Put(keyCount, u64(count))
	})
	if err != nil {
		if errors.Is(err, ErrNotEmpty) {
			return st, err
		}
		return st, fmt.Errorf("state: import into %s: %w", s.path, err)
	}
	return st, nil
}
