package pgstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ct-exporter/ct_exporter/state"
)

// dumpTimeout bounds an Export or an Import, which read or write a whole
// state.
const dumpTimeout = 6 * time.Hour

// Export calls fn with every item of the state, from one snapshot of the
// database.
func (s *Store) Export(fn func(state.Item) error) error {
	ctx, cancel := context.WithTimeout(s.ctx, dumpTimeout)
	defer cancel()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	each := func(sql string, scan func(pgx.Rows) error) error {
		rows, err := tx.Query(ctx, sql)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	err = each(`SELECT tbs_sha256, record FROM issuances ORDER BY tbs_sha256`, func(r pgx.Rows) error {
		var tbs, rec []byte
		if err := r.Scan(&tbs, &rec); err != nil {
			return err
		}
		is, err := state.DecodeIssuance(tbs, rec)
		if err != nil {
			return err
		}
		return fn(state.Item{Issuance: is})
	})
	if err == nil {
		err = each(`SELECT name, labels, value FROM counters ORDER BY name, labels`, func(r pgx.Rows) error {
			var c state.Counter
			var v int64
			if err := r.Scan(&c.Name, &c.Labels, &v); err != nil {
				return err
			}
			c.Value = uint64(v)
			return fn(state.Item{Counter: &c})
		})
	}
	if err == nil {
		err = each(`SELECT source, cursor FROM cursors ORDER BY source`, func(r pgx.Rows) error {
			var m state.Marker
			if err := r.Scan(&m.Source, &m.Value); err != nil {
				return err
			}
			return fn(state.Item{Cursor: &m})
		})
	}
	if err == nil {
		err = each(`SELECT log, position FROM log_positions ORDER BY log`, func(r pgx.Rows) error {
			var m state.Marker
			if err := r.Scan(&m.Source, &m.Value); err != nil {
				return err
			}
			return fn(state.Item{LogPosition: &m})
		})
	}
	if err == nil {
		err = each(`SELECT source, id, tbs_sha256, not_after FROM processed_ids ORDER BY source, id`, func(r pgx.Rows) error {
			var id state.SourceID
			var n int64
			var tbs []byte
			if err := r.Scan(&id.Source, &n, &tbs, &id.NotAfter); err != nil {
				return err
			}
			id.ID = uint64(n)
			copy(id.TBSSHA256[:], tbs)
			id.NotAfter = id.NotAfter.UTC()
			return fn(state.Item{ID: &id})
		})
	}
	if err != nil {
		return fmt.Errorf("state: export %s: %w", s.name, err)
	}
	return nil
}

// stateTables are the tables of the state, which Import fills.
const stateTables = `issuances, issuance_watches, counters, log_positions, cursors, processed_ids`

// ErrInUse is wrapped by Import's error when replicas run on the database.
var ErrInUse = errors.New("replicas are running on the database")

// Import writes every item items gives in one transaction: all of them or,
// when it fails, none. It refuses a state that is not empty
// (state.ErrNotEmpty) unless replace is true: then what it held is deleted
// in the same transaction. It refuses a database that replicas run on (a
// live heartbeat, ErrInUse): they keep in memory what an import would
// replace (their mirror, the positions they read from), and would write
// it back. Once written, the tables are analyzed, as after any bulk load,
// so that the planner reads the recent window by its index from the first
// open on.
func (s *Store) Import(replace bool, items func(yield func(state.Item) error) error) (state.ImportStats, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var st state.ImportStats
	ctx, cancel := context.WithTimeout(s.ctx, dumpTimeout)
	defer cancel()
	err := func() error {
		tx, err := beginWrite(ctx, s.pool)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		var live int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM replicas WHERE expires_at > now()`).Scan(&live); err != nil {
			return err
		}
		if live > 0 {
			return fmt.Errorf("%w: %d ct_exporter replica(s) heartbeat on it: stop them first "+
				"(a replica killed without stopping keeps it for its lease duration, %v by default)", ErrInUse, live, DefaultLeaseDuration)
		}
		var empty bool
		if err := tx.QueryRow(ctx, `SELECT NOT (EXISTS (SELECT 1 FROM issuances) OR EXISTS (SELECT 1 FROM counters)
	OR EXISTS (SELECT 1 FROM log_positions) OR EXISTS (SELECT 1 FROM cursors) OR EXISTS (SELECT 1 FROM processed_ids))`).Scan(&empty); err != nil {
			return err
		}
		if !empty {
			if !replace {
				return state.ErrNotEmpty
			}
			if _, err := tx.Exec(ctx, `TRUNCATE `+stateTables); err != nil {
				return err
			}
		}
		var next int64
		if err := tx.QueryRow(ctx, `SELECT seq + 1 FROM ct_changes WHERE id = 1`).Scan(&next); err != nil {
			return err
		}
		b := &pgx.Batch{}
		flush := func() error {
			if b.Len() == 0 {
				return nil
			}
			err := tx.SendBatch(ctx, b).Close()
			b = &pgx.Batch{}
			return err
		}
		var count int64
		ordinal := 0
		err = items(func(it state.Item) error {
			st.Add(it)
			switch {
			case it.Issuance != nil:
				is := it.Issuance
				tbs := is.TBSSHA256
				queueInsertIssuance(b, is, state.ExpiryOf(is, is.FirstSeen), next, state.EncodeIssuance(is))
				for _, m := range is.Watches {
					b.Queue(`INSERT INTO issuance_watches (tbs_sha256, watch, first_seen, verdict, changed, ordinal) VALUES ($1, $2, $3, $4, $5, $6)`,
						tbs[:], m.Watch, m.FirstSeen, m.Verdict.String(), next, ordinal)
					ordinal++
				}
				count++
			case it.Counter != nil:
				c := it.Counter
				b.Queue(`INSERT INTO counters (name, labels, value, changed) VALUES ($1, $2, $3, $4)`, c.Name, c.Labels, int64(c.Value), next)
			case it.Cursor != nil:
				b.Queue(`INSERT INTO cursors (source, cursor) VALUES ($1, $2)`, it.Cursor.Source, it.Cursor.Value)
			case it.LogPosition != nil:
				b.Queue(`INSERT INTO log_positions (log, position) VALUES ($1, $2)`, it.LogPosition.Source, it.LogPosition.Value)
			case it.ID != nil:
				b.Queue(`INSERT INTO processed_ids (source, id, tbs_sha256, not_after) VALUES ($1, $2, $3, $4)`,
					it.ID.Source, int64(it.ID.ID), it.ID.TBSSHA256[:], time.Unix(max(it.ID.NotAfter.Unix(), 0), 0).UTC())
			}
			if b.Len() >= 1000 {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE ct_changes SET seq = $1, issuances = $2 WHERE id = 1`, next, count); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, strconv.FormatInt(next, 10)); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}()
	if err != nil {
		if errors.Is(err, state.ErrNotEmpty) {
			return st, err
		}
		if !errors.Is(err, ErrInUse) {
			s.AddWriteError()
		}
		return st, fmt.Errorf("state: import into %s: %w", s.name, err)
	}
	// Without statistics, the planner takes a freshly filled table for a
	// small one and reads the window by a hash join over all of it (2 s
	// at a million issuances; 39 ms once analyzed).
	if _, err := s.pool.Exec(ctx, `ANALYZE `+stateTables); err != nil {
		return st, fmt.Errorf("state: analyzing %s after the import: %w", s.name, err)
	}
	return st, s.refresh(ctx)
}
