package pgstate

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ct-exporter/ct_exporter/state"
)

// refresh brings the mirror up to what is committed, in one snapshot.
func (s *Store) refresh(ctx context.Context) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	return s.refreshWith(ctx, tx)
}

// refreshWith brings the mirror up to what q sees: the changes numbered
// after the mirror's, in their order.
func (s *Store) refreshWith(ctx context.Context, q querier) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	var seq, count int64
	if err := q.QueryRow(ctx, `SELECT seq, issuances FROM ct_changes WHERE id = 1`).Scan(&seq, &count); err != nil {
		return err
	}
	if uint64(seq) == s.seq && s.loaded {
		return nil
	}
	since := int64(s.seq)
	n := uint64(count)
	change := state.Change{SetCounters: map[string]uint64{}, SetCount: &n}

	rows, err := q.Query(ctx, `SELECT name, labels, value FROM counters WHERE changed > $1`, since)
	if err != nil {
		return err
	}
	for rows.Next() {
		var name string
		var labels []string
		var v int64
		if err := rows.Scan(&name, &labels, &v); err != nil {
			rows.Close()
			return err
		}
		change.SetCounters[state.CounterKey(name, labels...)] = uint64(v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}

	if !s.loaded {
		// Opening: the counters are all the mirror needs; the recent
		// series are read, within their window only, by SetPolicy (as
		// the state file does), so that a large database is not read
		// into memory.
		s.loaded = true
		s.Apply(change)
		s.seq = uint64(seq)
		return nil
	}

	// New matches, as the transactions that made them found them.
	rows, err = q.Query(ctx, `SELECT w.watch, i.tbs_sha256, i.record FROM issuance_watches w
JOIN issuances i USING (tbs_sha256) WHERE w.changed > $1 ORDER BY w.changed, w.ordinal`, since)
	if err != nil {
		return err
	}
	for rows.Next() {
		var w string
		var tbs, rec []byte
		if err := rows.Scan(&w, &tbs, &rec); err != nil {
			rows.Close()
			return err
		}
		is, err := state.DecodeIssuance(tbs, rec)
		if err != nil {
			rows.Close()
			return err
		}
		for _, m := range is.Watches {
			if m.Watch == w {
				change.Recent = append(change.Recent, state.NewRecent(is, m.FirstSeen, w, m.Verdict))
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}

	// Known issuances that learnt their SCTs or a parse error.
	rows, err = q.Query(ctx, `SELECT tbs_sha256, embedded_scts, parse_error FROM issuances
WHERE changed > $1 AND (embedded_scts >= 0 OR parse_error <> '')`, since)
	if err != nil {
		return err
	}
	for rows.Next() {
		var b []byte
		var scts int
		var perr string
		if err := rows.Scan(&b, &scts, &perr); err != nil {
			rows.Close()
			return err
		}
		var tbs [32]byte
		copy(tbs[:], b)
		if scts >= 0 {
			if change.SCTs == nil {
				change.SCTs = map[[32]byte]int{}
			}
			change.SCTs[tbs] = scts
		}
		if perr != "" {
			if change.ParseErrors == nil {
				change.ParseErrors = map[[32]byte]string{}
			}
			change.ParseErrors[tbs] = perr
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	s.Apply(change)
	s.seq = uint64(seq)
	return nil
}

// listen refreshes the mirror when another replica commits (NOTIFY), and
// every RefreshInterval, until Close.
func (s *Store) listen() {
	defer s.wg.Done()
	for s.ctx.Err() == nil {
		err := s.listenOnce()
		if s.ctx.Err() != nil {
			return
		}
		s.logger.Debug("listening for state changes failed; trying again", "state", s.name, "err", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(time.Second):
		}
		s.refreshLogged()
	}
}

func (s *Store) listenOnce() error {
	conn, err := s.pool.Acquire(s.ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(s.ctx, `LISTEN `+channel); err != nil {
		conn.Conn().Close(context.Background())
		return err
	}
	defer func() {
		if !conn.Conn().IsClosed() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := conn.Exec(ctx, `UNLISTEN *`); err != nil {
				conn.Conn().Close(ctx)
			}
		}
	}()
	// Changes committed before LISTEN took effect.
	s.refreshLogged()
	for {
		ctx, cancel := context.WithTimeout(s.ctx, RefreshInterval)
		_, err := conn.Conn().WaitForNotification(ctx)
		cancel()
		if s.ctx.Err() != nil {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		// A notification, or the interval passed without one.
		s.refreshLogged()
	}
}

func (s *Store) refreshLogged() {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	if err := s.refresh(ctx); err != nil && s.ctx.Err() == nil {
		s.AddReadError()
		s.logger.Warn("refreshing the state from PostgreSQL failed; it will be tried again", "state", s.name, "err", err)
	}
}
