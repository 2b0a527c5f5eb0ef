package pgstate

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ct-exporter/ct_exporter/state"
)

// pruneBatch bounds one pruning transaction, as in the state file.
const pruneBatch = 5000

// Prune deletes the issuances that expired more than state.ExpiredGrace
// ago and were first seen before the recent window (for every watch), and
// the crt.sh ids of expired certificates. Counters keep their values. It
// returns how many issuances it deleted.
func (s *Store) Prune() (int, error) {
	total := 0
	for {
		var n int64
		err := s.write(func(ctx context.Context, tx pgx.Tx) error {
			now := s.Now()
			horizon := now.Add(-s.Policy().RecentWindow)
			tag, err := tx.Exec(ctx, `DELETE FROM issuances WHERE tbs_sha256 IN (
	SELECT i.tbs_sha256 FROM issuances i WHERE i.expires < $1
	AND NOT EXISTS (SELECT 1 FROM issuance_watches w WHERE w.tbs_sha256 = i.tbs_sha256 AND w.first_seen > $2)
	LIMIT $3)`, now.Add(-state.ExpiredGrace), horizon, pruneBatch)
			if err != nil {
				return err
			}
			n = tag.RowsAffected()
			if n == 0 {
				return nil
			}
			_, err = bump(ctx, tx, -n)
			return err
		})
		total += int(n)
		if err != nil {
			return total, err
		}
		if n > 0 {
			ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
			err := s.refresh(ctx)
			cancel()
			if err != nil {
				return total, err
			}
		}
		if n < pruneBatch {
			break
		}
	}
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		cutoff := time.Unix(max(s.Now().Add(-state.ExpiredGrace).Unix(), 0), 0)
		_, err := tx.Exec(ctx, `DELETE FROM processed_ids WHERE not_after < $1`, cutoff)
		return err
	})
	return total, err
}
