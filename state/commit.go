package state

import (
	"errors"
	"time"
)

// Commit is what a source writes in one transaction: the issuances it saw
// and how far it got. Store.Commit writes all of it or, when it fails, none
// of it, so that a crash never loses an issuance a source moved past, nor
// counts one twice. Only an issuance the state cannot record is left out
// alone (its Observed.Err says why), so that one certificate never stops a
// source.
type Commit struct {
	// Source is the source committing: it names the position, cursor and
	// ids below, and labels the log counters.
	Source string
	// Observations are the issuances seen, each with the watches it
	// concerns.
	Observations []Observation
	// LogPosition, when not nil, is the CT log's new position (opaque to
	// the state); Processed and Malformed count the entries it moved past
	// (CounterLogProcessed, CounterLogMalformed).
	LogPosition          []byte
	Processed, Malformed uint64
	// Cursor, when not nil, is the source's new progress marker (opaque).
	Cursor []byte
	// IDs are the certificates the source processed (crt.sh's ids), so that
	// none is fetched again.
	IDs []ProcessedID
	// Fence, when not nil, is the lease the committing replica holds on
	// the source (PostgreSQL, shared by replicas): the store writes the
	// commit only if the lease still has that holder and epoch, checked in
	// the same transaction, and else refuses it whole with an error
	// wrapping ErrFenced. The state file, which one replica owns, ignores
	// it.
	Fence *Fence
}

// Fence is a fencing token: the lease a replica holds on a source, by the
// lease's name, holder and epoch. Every acquisition of a lease takes a new
// epoch, so that a replica that stalled past its lease, and whose lease
// another took, holds an epoch that is no longer the lease's.
type Fence struct {
	Lease  string
	Holder string
	Epoch  int64
}

// ErrFenced is wrapped by Commit's error when the commit's Fence is not
// the lease's any more: nothing was written, and the source must stop on
// this replica.
var ErrFenced = errors.New("the lease on the source is held by another replica")

// Observation is an issuance a source saw, with the watches it concerns and
// the verdict each gives it (see Tx.Observe).
type Observation struct {
	Issuance *Issuance
	Matches  []Match
	// Known observes the issuance stored under Issuance's tbs_sha256
	// instead (for watches added since it was recorded), and nothing when
	// none is stored any more.
	Known bool
}

// Observed is what Commit did with an Observation.
type Observed struct {
	// Fresh are the matches new to the issuance: it was counted for them.
	Fresh []Match
	// Stored is the issuance as stored, when Fresh is not empty.
	Stored *Issuance
	// Err, wrapping ErrUnrecordable, is why the issuance was not recorded:
	// nothing of it was written.
	Err error
}

// ProcessedID is a certificate a source processed, by the source's id for
// it, with its tbs_sha256 (zero when it could not be read) and until when
// the id is kept.
type ProcessedID struct {
	ID        uint64
	TBSSHA256 [32]byte
	NotAfter  time.Time
}

// Commit writes c in one transaction, and returns what became of each of
// its observations, in order.
func (s *Store) Commit(c *Commit) ([]Observed, error) {
	var out []Observed
	err := s.Update(func(tx *Tx) error {
		out = make([]Observed, len(c.Observations))
		for i := range c.Observations {
			if err := tx.commitObservation(&c.Observations[i], &out[i]); err != nil {
				return err
			}
		}
		if c.LogPosition != nil {
			if c.Processed > 0 {
				if err := tx.AddCounter(CounterLogProcessed, []string{c.Source}, c.Processed); err != nil {
					return err
				}
			}
			if c.Malformed > 0 {
				if err := tx.AddCounter(CounterLogMalformed, []string{c.Source}, c.Malformed); err != nil {
					return err
				}
			}
			if err := tx.SetLogPosition(c.Source, c.LogPosition); err != nil {
				return err
			}
		}
		if c.Cursor != nil {
			if err := tx.SetCursor(c.Source, c.Cursor); err != nil {
				return err
			}
		}
		for _, id := range c.IDs {
			if err := tx.MarkID(c.Source, id.ID, id.TBSSHA256, id.NotAfter); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// commitObservation observes o into out; an issuance the state cannot
// record is out.Err, any other failure the transaction's.
func (tx *Tx) commitObservation(o *Observation, out *Observed) error {
	is := o.Issuance
	if o.Known {
		stored, err := tx.Issuance(is.TBSSHA256)
		if err != nil || stored == nil {
			return err
		}
		is = stored
	}
	fresh, err := tx.Observe(is, o.Matches)
	if errors.Is(err, ErrUnrecordable) {
		out.Err = err
		return nil
	}
	if err != nil || len(fresh) == 0 {
		return err
	}
	stored, err := tx.Issuance(is.TBSSHA256)
	*out = Observed{Fresh: fresh, Stored: stored}
	return err
}

// Issuance returns the issuance with this tbs_sha256, or nil.
func (s *Store) Issuance(tbs [32]byte) (is *Issuance, err error) {
	err = s.View(func(tx *Tx) error {
		is, err = tx.Issuance(tbs)
		return err
	})
	return is, err
}

// LogPosition returns a CT log's stored position, or nil.
func (s *Store) LogPosition(log string) (pos []byte, err error) {
	err = s.View(func(tx *Tx) error {
		pos = tx.LogPosition(log)
		return nil
	})
	return pos, err
}

// Cursor returns a source's stored progress marker, or nil.
func (s *Store) Cursor(source string) (cursor []byte, err error) {
	err = s.View(func(tx *Tx) error {
		cursor = tx.Cursor(source)
		return nil
	})
	return cursor, err
}

// SeenID reports whether a source (crt.sh) already processed the
// certificate with this id, and the tbs_sha256 it had.
func (s *Store) SeenID(source string, id uint64) (tbs [32]byte, seen bool, err error) {
	err = s.View(func(tx *Tx) error {
		tbs, seen = tx.SeenID(source, id)
		return nil
	})
	return tbs, seen, err
}
