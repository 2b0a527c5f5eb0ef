package pgstate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ct-exporter/ct_exporter/state"
)

// The default lease timings: a replica renews its leases every
// DefaultRenewInterval, and a lease not renewed for DefaultLeaseDuration
// is free. Another replica, which runs a round every renew interval, takes
// a dead replica's sources over within duration + interval (20 s).
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewInterval = 5 * time.Second
)

// fence checks, in tx, that f is still the lease's holder and epoch, and
// locks the lease row until tx ends: no replica takes the lease over
// between the check and the commit. The clock plays no part: a lease that
// expired but that no other replica took is still f's.
func fence(ctx context.Context, tx pgx.Tx, f *state.Fence) error {
	var holder string
	var epoch int64
	err := tx.QueryRow(ctx, `SELECT holder, epoch FROM leases WHERE source = $1 FOR UPDATE`, f.Lease).Scan(&holder, &epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s has no lease", state.ErrFenced, f.Lease)
	}
	if err != nil {
		return err
	}
	if holder != f.Holder || epoch != f.Epoch {
		return fmt.Errorf("%w: %s: epoch %d of %q, the commit's is %d of %q",
			state.ErrFenced, f.Lease, epoch, holder, f.Epoch, f.Holder)
	}
	return nil
}

// micros is d as the statements below take it: $n::bigint * interval
// '1 microsecond'.
func micros(d time.Duration) int64 { return d.Microseconds() }

// Leaser holds leases on sources for one replica (its holder id), and
// balances them with the other live replicas: each Round heartbeats,
// renews what it holds, releases what is beyond its share and acquires
// free or expired leases up to its share. The live replicas, ordered by
// id, share n sources so that the first n mod r hold one more than the
// others: followed sources per replica differ by at most one once
// settled.
type Leaser struct {
	s        *Store
	id       string
	duration time.Duration

	mu   sync.Mutex
	held map[string]int64 // source → epoch
}

// Leaser returns a leaser for the replica with this id (unique among
// replicas) and lease duration (DefaultLeaseDuration when 0).
func (s *Store) Leaser(id string, duration time.Duration) *Leaser {
	if duration <= 0 {
		duration = DefaultLeaseDuration
	}
	return &Leaser{s: s, id: id, duration: duration, held: map[string]int64{}}
}

// ID is the replica's holder id.
func (l *Leaser) ID() string { return l.id }

// Fence is the fencing token of the lease on source, or nil when it is not
// held.
func (l *Leaser) Fence(source string) *state.Fence {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.held[source]
	if !ok {
		return nil
	}
	return &state.Fence{Lease: source, Holder: l.id, Epoch: e}
}

// Held is a copy of the leases held: source → epoch.
func (l *Leaser) Held() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(l.held))
	for k, v := range l.held {
		out[k] = v
	}
	return out
}

// Round runs one round over these sources (every replica's same list) and
// returns the leases held after it. On an error, the leases not renewed
// are dropped from what is held (the caller stops their sources: their
// commits would be fenced anyway once another replica takes them).
func (l *Leaser) Round(ctx context.Context, sources []string) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.duration)
	defer cancel()
	err := l.round(ctx, sources)
	if err != nil {
		// What could not be renewed may be lost by now: stop following
		// it rather than risk a refused commit later.
		l.mu.Lock()
		if ctx.Err() != nil {
			clear(l.held)
		}
		l.mu.Unlock()
	}
	return l.Held(), err
}

func (l *Leaser) round(ctx context.Context, sources []string) error {
	db := l.s.pool
	dur := micros(l.duration)
	// Heartbeat, then the live replicas.
	if _, err := db.Exec(ctx, `INSERT INTO replicas (id, expires_at) VALUES ($1, now() + $2::bigint * interval '1 microsecond')
ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at`, l.id, dur); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, `DELETE FROM replicas WHERE expires_at < now() - interval '1 hour'`); err != nil {
		return err
	}
	// Renew what is held and still wanted; release what is not wanted.
	l.mu.Lock()
	var renew []string
	var epochs []int64
	var drop []string
	for src, e := range l.held {
		if slices.Contains(sources, src) {
			renew = append(renew, src)
			epochs = append(epochs, e)
		} else {
			drop = append(drop, src)
		}
	}
	l.mu.Unlock()
	for _, src := range drop {
		if err := l.release(ctx, src); err != nil {
			return err
		}
	}
	renewed := map[string]int64{}
	if len(renew) > 0 {
		rows, err := db.Query(ctx, `UPDATE leases SET expires_at = now() + $3::bigint * interval '1 microsecond'
FROM unnest($1::text[], $2::bigint[]) AS h(source, epoch)
WHERE leases.source = h.source AND leases.epoch = h.epoch AND leases.holder = $4
RETURNING leases.source, leases.epoch`, renew, epochs, dur, l.id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var src string
			var e int64
			if err := rows.Scan(&src, &e); err != nil {
				rows.Close()
				return err
			}
			renewed[src] = e
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.held = renewed // a lease not renewed was taken over
	l.mu.Unlock()
	share, err := l.share(ctx, sources, len(renewed))
	if err != nil {
		return err
	}

	// Beyond the share: release the extras.
	if len(renewed) > share {
		held := sortedKeys(renewed)
		for _, src := range held[share:] {
			if err := l.release(ctx, src); err != nil {
				return err
			}
		}
		return nil
	}
	if len(renewed) == share {
		return nil
	}

	// Below it: acquire free or expired leases, in an order of this
	// replica's own, so that replicas rarely race for the same one.
	rows, err := db.Query(ctx, `SELECT source FROM leases WHERE source = ANY($1) AND holder <> '' AND expires_at > now()`, sources)
	if err != nil {
		return err
	}
	taken, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	var free []string
	for _, src := range sources {
		if !slices.Contains(taken, src) {
			free = append(free, src)
		}
	}
	slices.SortFunc(free, func(a, b string) int { return cmpHash(l.id, a, b) })
	n := len(renewed)
	for _, src := range free {
		if n >= share {
			break
		}
		e, ok, err := l.acquire(ctx, src)
		if err != nil {
			return err
		}
		if ok {
			l.mu.Lock()
			l.held[src] = e
			l.mu.Unlock()
			n++
		}
	}
	return nil
}

// share is how many of the sources this replica, holding n of them,
// follows: the live replicas (by their heartbeat) share them so that they
// differ by at most one, and the one more goes to the replicas that hold
// the most already (then by id), so that a replica coming back takes
// nothing from one that follows its share.
func (l *Leaser) share(ctx context.Context, sources []string, n int) (int, error) {
	rows, err := l.s.pool.Query(ctx, `SELECT r.id, count(l.source) FROM replicas r
LEFT JOIN leases l ON l.holder = r.id AND l.expires_at > now() AND l.source = ANY($1)
WHERE r.expires_at > now() GROUP BY r.id`, sources)
	if err != nil {
		return 0, err
	}
	type replica struct {
		id   string
		held int64
	}
	live, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (replica, error) {
		var x replica
		err := r.Scan(&x.id, &x.held)
		return x, err
	})
	if err != nil {
		return 0, err
	}
	// Ourselves as we know us (our heartbeat may have just expired).
	live = slices.DeleteFunc(live, func(r replica) bool { return r.id == l.id })
	live = append(live, replica{l.id, int64(n)})
	slices.SortFunc(live, func(a, b replica) int {
		if a.held != b.held {
			return int(b.held - a.held)
		}
		return strings.Compare(a.id, b.id)
	})
	rank := slices.IndexFunc(live, func(r replica) bool { return r.id == l.id })
	share := len(sources) / len(live)
	if rank < len(sources)%len(live) {
		share++
	}
	return share, nil
}

// acquire takes the lease on src if it is free, released or expired (by
// the database's clock), with a new epoch.
func (l *Leaser) acquire(ctx context.Context, src string) (int64, bool, error) {
	var e int64
	err := l.s.pool.QueryRow(ctx, `INSERT INTO leases (source, holder, epoch, expires_at)
VALUES ($1, $2, 1, now() + $3::bigint * interval '1 microsecond')
ON CONFLICT (source) DO UPDATE SET holder = excluded.holder, epoch = leases.epoch + 1, expires_at = excluded.expires_at
WHERE leases.holder = '' OR leases.expires_at <= now()
RETURNING epoch`, src, l.id, micros(l.duration)).Scan(&e)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	return e, err == nil, err
}

// release gives the lease on src up, if it is still this replica's, and
// forgets it. A commit of the source after the release is fenced.
func (l *Leaser) release(ctx context.Context, src string) error {
	l.mu.Lock()
	e, ok := l.held[src]
	delete(l.held, src)
	l.mu.Unlock()
	if !ok {
		return nil
	}
	_, err := l.s.pool.Exec(ctx, `UPDATE leases SET holder = '', expires_at = now() WHERE source = $1 AND holder = $2 AND epoch = $3`, src, l.id, e)
	return err
}

// Close releases every lease held and the heartbeat, so that the other
// replicas take the sources over at once.
func (l *Leaser) Close(ctx context.Context) error {
	for _, src := range sortedKeys(l.Held()) {
		if err := l.release(ctx, src); err != nil {
			return err
		}
	}
	_, err := l.s.pool.Exec(ctx, `DELETE FROM replicas WHERE id = $1`, l.id)
	return err
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func cmpHash(id, a, b string) int {
	h := func(s string) uint64 {
		f := fnv.New64a()
		f.Write([]byte(id))
		f.Write([]byte{0})
		f.Write([]byte(s))
		return f.Sum64()
	}
	ha, hb := h(a), h(b)
	switch {
	case ha < hb:
		return -1
	case ha > hb:
		return 1
	}
	return 0
}
