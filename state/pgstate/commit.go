package pgstate

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ct-exporter/ct_exporter/state"
)

// Commit writes c in one transaction, and returns what became of each of
// its observations, in order: the state file's rules (state.Decide).
func (s *Store) Commit(c *state.Commit) ([]state.Observed, error) {
	var (
		out    []state.Observed
		change state.Change
		seq    uint64
	)
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		// Fencing first, in this transaction: the lease row is locked
		// until it ends, so no takeover commits between check and write.
		if c.Fence != nil {
			if err := fence(ctx, tx, c.Fence); err != nil {
				return err
			}
		}
		// Bring the mirror (and so the issuers counted) up to what is
		// committed: the issuer labels are decided on them.
		if err := s.refreshWith(ctx, tx); err != nil {
			return err
		}
		var err error
		out, change, err = s.commit(ctx, tx, c)
		if err != nil {
			return err
		}
		seq, err = bump(ctx, tx, change.CountDelta)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.applyOwn(seq, change)
	return out, nil
}

// bump takes the next change number and tells the other replicas.
func bump(ctx context.Context, tx pgx.Tx, countDelta int64) (uint64, error) {
	var seq int64
	if err := tx.QueryRow(ctx, `UPDATE ct_changes SET seq = seq + 1, issuances = issuances + $1 WHERE id = 1 RETURNING seq`, countDelta).Scan(&seq); err != nil {
		return 0, err
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, strconv.FormatInt(seq, 10))
	return uint64(seq), err
}

// applyOwn applies the effects of the transaction that made change number
// seq: at once when the mirror was at the number before (no other commit
// came between), else by a refresh.
func (s *Store) applyOwn(seq uint64, change state.Change) {
	s.refreshMu.Lock()
	if s.seq == seq-1 {
		s.Apply(change)
		s.seq = seq
		s.refreshMu.Unlock()
		return
	}
	s.refreshMu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	if err := s.refresh(ctx); err != nil {
		s.AddReadError()
		s.logger.Warn("refreshing the state from PostgreSQL failed; it will be tried again", "state", s.name, "err", err)
	}
}

func (s *Store) commit(ctx context.Context, tx pgx.Tx, c *state.Commit) ([]state.Observed, state.Change, error) {
	now := s.Now()
	policy := s.Policy()
	out := make([]state.Observed, len(c.Observations))
	change := state.Change{Counters: map[string]uint64{}}
	added := state.Issuers{} // new issuer labels by watch
	known := map[[32]byte]*state.Issuance{}
	fresh := map[[32]byte]bool{} // issuances new in this transaction
	dirty := map[[32]byte]bool{}
	var order [][32]byte
	var watchRows [][]any

	if len(c.Observations) > 0 {
		keys := make([][]byte, 0, len(c.Observations))
		for i := range c.Observations {
			tbs := c.Observations[i].Issuance.TBSSHA256
			keys = append(keys, tbs[:])
		}
		rows, err := tx.Query(ctx, `SELECT tbs_sha256, record FROM issuances WHERE tbs_sha256 = ANY($1)`, keys)
		if err != nil {
			return nil, change, err
		}
		for rows.Next() {
			var tbs, rec []byte
			if err := rows.Scan(&tbs, &rec); err != nil {
				rows.Close()
				return nil, change, err
			}
			is, err := state.DecodeIssuance(tbs, rec)
			if err != nil {
				rows.Close()
				return nil, change, err
			}
			known[is.TBSSHA256] = is
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, change, err
		}
	}
	label := func(w, issuer string) (string, bool) {
		return s.IssuerLabel(policy, w, added, issuer)
	}
	for i := range c.Observations {
		o := &c.Observations[i]
		tbs := o.Issuance.TBSSHA256
		stored := known[tbs]
		obs := o.Issuance
		if o.Known {
			if stored == nil {
				continue
			}
			obs = stored
		}
		if state.Expired(obs, now) {
			continue
		}
		d := state.Decide(stored, obs, o.Matches, now, label)
		if d == nil {
			continue
		}
		if d.New {
			fresh[tbs] = true
			change.CountDelta++
		}
		if !dirty[tbs] {
			dirty[tbs] = true
			order = append(order, tbs)
		}
		known[tbs] = d.Issuance
		for _, k := range d.Counters {
			change.Counters[k]++
		}
		for _, w := range d.NewIssuers {
			added.Add(w, d.Issuer)
		}
		for _, m := range d.Fresh {
			watchRows = append(watchRows, []any{tbs[:], m.Watch, now, m.Verdict.String()})
		}
		if d.SCTsKnown {
			if change.SCTs == nil {
				change.SCTs = map[[32]byte]int{}
			}
			change.SCTs[tbs] = d.Issuance.EmbeddedSCTs
		}
		if d.ParseErrorKnown {
			if change.ParseErrors == nil {
				change.ParseErrors = map[[32]byte]string{}
			}
			change.ParseErrors[tbs] = d.Issuance.ParseError
		}
		change.Recent = append(change.Recent, d.Recent...)
		if len(d.Fresh) > 0 {
			cp := *d.Issuance
			out[i] = state.Observed{Fresh: d.Fresh, Stored: &cp}
		}
	}
	if c.LogPosition != nil {
		if c.Processed > 0 {
			change.Counters[state.CounterKey(state.CounterLogProcessed, c.Source)] += c.Processed
		}
		if c.Malformed > 0 {
			change.Counters[state.CounterKey(state.CounterLogMalformed, c.Source)] += c.Malformed
		}
	}

	// The next change number: the lock is held, so it is ours.
	var next int64
	if err := tx.QueryRow(ctx, `SELECT seq + 1 FROM ct_changes WHERE id = 1`).Scan(&next); err != nil {
		return nil, change, err
	}
	b := &pgx.Batch{}
	for _, tbs := range order {
		is := known[tbs]
		rec := state.EncodeIssuance(is)
		if fresh[tbs] {
			queueInsertIssuance(b, is, state.ExpiryOf(is, now), next, rec)
		} else {
			b.Queue(`UPDATE issuances SET embedded_scts = $2, parse_error = $3, changed = $4, record = $5 WHERE tbs_sha256 = $1`,
				tbs[:], is.EmbeddedSCTs, text(is.ParseError), next, rec)
		}
	}
	for i, r := range watchRows {
		b.Queue(`INSERT INTO issuance_watches (tbs_sha256, watch, first_seen, verdict, changed, ordinal) VALUES ($1, $2, $3, $4, $5, $6)`,
			append(r, next, i)...)
	}
	for k, d := range change.Counters {
		name, labels := state.ParseCounterKey(k)
		b.Queue(`INSERT INTO counters (name, labels, value, changed) VALUES ($1, $2, $3, $4)
ON CONFLICT (name, labels) DO UPDATE SET value = counters.value + excluded.value, changed = excluded.changed`,
			name, labels, int64(d), next)
	}
	if c.LogPosition != nil {
		b.Queue(`INSERT INTO log_positions (log, position) VALUES ($1, $2)
ON CONFLICT (log) DO UPDATE SET position = excluded.position`, c.Source, c.LogPosition)
	}
	if c.Cursor != nil {
		b.Queue(`INSERT INTO cursors (source, cursor) VALUES ($1, $2)
ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor`, c.Source, c.Cursor)
	}
	for _, id := range c.IDs {
		b.Queue(`INSERT INTO processed_ids (source, id, tbs_sha256, not_after) VALUES ($1, $2, $3, $4)
ON CONFLICT (source, id) DO UPDATE SET tbs_sha256 = excluded.tbs_sha256, not_after = excluded.not_after`,
			c.Source, int64(id.ID), id.TBSSHA256[:], time.Unix(max(id.NotAfter.Unix(), 0), 0).UTC())
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, change, err
		}
	}
	return out, change, nil
}

// text is a string as PostgreSQL text holds it: valid UTF-8 without NUL.
// The columns are for SQL readers; the record keeps the exact bytes.
func text(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// queueInsertIssuance queues the row of a new issuance: its columns for SQL
// readers (text made valid UTF-8) and rec, the record the stores read back.
func queueInsertIssuance(b *pgx.Batch, is *state.Issuance, expires time.Time, changed int64, rec []byte) {
	ips := make([]string, len(is.IPs))
	for i, a := range is.IPs {
		ips[i] = a.String()
	}
	names := make([]string, len(is.DNSNames))
	for i, n := range is.DNSNames {
		names[i] = text(n)
	}
	b.Queue(`INSERT INTO issuances (tbs_sha256, cert_sha256, serial, issuer_cn, issuer_o, issuer_dn, subject_cn,
	dns_names, ip_addresses, not_before, not_after, embedded_scts, parse_error, first_seen, expires, changed, record)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
		is.TBSSHA256[:], is.CertSHA256[:], text(is.Serial), text(is.Issuer.CN), text(is.Issuer.O), text(is.Issuer.DN), text(is.SubjectCN),
		names, ips, timeOrNil(is.NotBefore), timeOrNil(is.NotAfter), is.EmbeddedSCTs, text(is.ParseError),
		is.FirstSeen, expires, changed, rec)
}
