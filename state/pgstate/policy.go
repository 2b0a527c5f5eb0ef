package pgstate

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ct-exporter/ct_exporter/state"
)

// SetPolicy installs the configuration's view of recent issuances and
// rebuilds the recent series from the database, as the state file does:
// verdicts are judged again and the cap applied again. It reads only the
// matches first seen within the window.
func (s *Store) SetPolicy(p state.Policy) error {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("state: %s: %w", s.name, err)
	}
	defer tx.Rollback(ctx)
	// The counters and the change number first, in the same snapshot as
	// the series: later refreshes go on from there.
	if err := s.refreshWith(ctx, tx); err != nil {
		return fmt.Errorf("state: %s: %w", s.name, err)
	}
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	start := s.Now().Add(-p.RecentWindow)
	// first_seen holds microseconds; the records, nanoseconds.
	rows, err := tx.Query(ctx, `SELECT w.watch, i.tbs_sha256, i.record FROM issuance_watches w
JOIN issuances i USING (tbs_sha256) WHERE w.first_seen >= $1 ORDER BY w.first_seen, i.tbs_sha256, w.watch`,
		start.Add(-time.Millisecond))
	if err != nil {
		return fmt.Errorf("state: %s: %w", s.name, err)
	}
	defer rows.Close()
	byWatch := map[string][]state.Recent{}
	for rows.Next() {
		var w string
		var tbs, rec []byte
		if err := rows.Scan(&w, &tbs, &rec); err != nil {
			return fmt.Errorf("state: %s: %w", s.name, err)
		}
		is, err := state.DecodeIssuance(tbs, rec)
		if err != nil {
			return fmt.Errorf("state: %s: %w", s.name, err)
		}
		for _, m := range is.Watches {
			if m.Watch != w || m.FirstSeen.Before(start) {
				continue
			}
			verdict, ok := p.Verdict(w, is)
			if !ok {
				continue
			}
			byWatch[w] = append(byWatch[w], state.NewRecent(is, m.FirstSeen, w, verdict))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: %s: %w", s.name, err)
	}
	s.Rebuild(p, byWatch)
	return nil
}
