package state

import (
	"bytes"
	"encoding/binary"
	"time"
)

// pruneBatch bounds one pruning transaction, so that pruning a large backlog
// never holds the writer for long.
const pruneBatch = 5000

// Prune deletes the issuances that expired more than ExpiredGrace ago and
// were first seen before the recent window, and the crt.sh ids of expired
// certificates. Counters keep their values. It returns how many issuances it
// deleted.
func (s *Store) Prune() (int, error) {
	total := 0
	for {
		n, more, err := s.pruneIssuances()
		total += n
		if err != nil || !more {
			if err == nil {
				err = s.pruneIDs()
			}
			return total, err
		}
	}
}

func (s *Store) pruneIssuances() (deleted int, more bool, err error) {
	err = s.Update(func(tx *Tx) error {
		deleted, more = 0, false
		horizon := tx.now.Add(-tx.policy.RecentWindow)
		end := expiryKey(tx.now.Add(-ExpiredGrace), [32]byte{})
		expiry := tx.btx.Bucket(bucketExpiry)
		issuances := tx.btx.Bucket(bucketIssuances)
		firstSeen := tx.btx.Bucket(bucketFirstSeen)
		var doomed [][]byte
		c := expiry.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, end) < 0; k, _ = c.Next() {
			if len(doomed) == pruneBatch {
				more = true
				break
			}
			var tbs [32]byte
			copy(tbs[:], k[8:])
			is, err := tx.Issuance(tbs)
			if err != nil {
				return err
			}
			if is != nil && LastSeen(is).After(horizon) {
				continue
			}
			doomed = append(doomed, bytes.Clone(k))
			if is == nil {
				continue
			}
			for _, w := range is.Watches {
				if err := firstSeen.Delete(firstSeenKey(w.FirstSeen, tbs, w.Watch)); err != nil {
					return err
				}
			}
			if err := issuances.Delete(tbs[:]); err != nil {
				return err
			}
			deleted++
		}
		for _, k := range doomed {
			if err := expiry.Delete(k); err != nil {
				return err
			}
		}
		tx.countDelta -= int64(deleted)
		return nil
	})
	return deleted, more, err
}

// LastSeen is when the issuance last became new for a watch; zero for one
// that concerns no watch (a crt.sh download that matched nothing).
func LastSeen(is *Issuance) time.Time {
	var t time.Time
	for _, w := range is.Watches {
		if w.FirstSeen.After(t) {
			t = w.FirstSeen
		}
	}
	return t
}

// pruneIDs forgets crt.sh ids of certificates that expired more than
// ExpiredGrace ago: crt.sh no longer returns them with exclude=expired, and
// should one come back, Observe ignores it.
func (s *Store) pruneIDs() error {
	return s.Update(func(tx *Tx) error {
		cutoff := uint64(max(tx.now.Add(-ExpiredGrace).Unix(), 0))
		return tx.btx.Bucket(bucketIDs).ForEachBucket(func(name []byte) error {
			b := tx.btx.Bucket(bucketIDs).Bucket(name)
			var doomed [][]byte
			err := b.ForEach(func(k, v []byte) error {
				if len(v) == 40 && binary.BigEndian.Uint64(v[32:]) < cutoff {
					doomed = append(doomed, bytes.Clone(k))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range doomed {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
