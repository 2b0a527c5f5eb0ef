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
// free or expired leases up to its share. Sources come in groups (CT logs;
// search sources), each shared on its own: followed sources of a group
// per replica differ by at most one once settled.
//
// A lease is also bounded by this replica's own monotonic clock: it is
// taken as lost once duration has passed since the statement that last
// acquired or renewed it was sent, which is never after the database's
// expiry. A replica that stalls (SIGSTOP, a long GC, a partition) thus
// stops using its leases when it resumes, before any round: sources stop
// sending (ctsource.WithLease) and committing. The fence in each commit's
// transaction, not this clock, is what guarantees that a lost lease
// commits nothing.
type Leaser struct {
	s        *Store
	id       string
	duration time.Duration

	now func() time.Time // monotonic; a test's own in tests

	mu   sync.Mutex
	held map[string]lease // source → the lease held
}

type lease struct {
	epoch int64
	until time.Time // by this replica's monotonic clock
}

// Leaser returns a leaser for the replica with this id (unique among
// replicas) and lease duration (DefaultLeaseDuration when 0).
func (s *Store) Leaser(id string, duration time.Duration) *Leaser {
	if duration <= 0 {
		duration = DefaultLeaseDuration
	}
	return &Leaser{s: s, id: id, duration: duration, now: time.Now, held: map[string]lease{}}
}

// ID is the replica's holder id.
func (l *Leaser) ID() string { return l.id }

// Fence is the fencing token of the lease on source, or nil when it is not
// held or its time ran out by this replica's clock since it was last
// renewed.
func (l *Leaser) Fence(source string) *state.Fence {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.held[source]
	if !ok || !l.now().Before(h.until) {
		return nil
	}
	return &state.Fence{Lease: source, Holder: l.id, Epoch: h.epoch}
}

// Held is a copy of the leases held: source → epoch.
func (l *Leaser) Held() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int64, len(l.held))
	for k, h := range l.held {
		out[k] = h.epoch
	}
	return out
}

// Round runs one round over these groups of sources (every replica's same
// groups) and returns the leases held after it and not lapsed (Fence), the
// sources to run. On an error, what could not be renewed lapses in time,
// and is then left out: the caller stops those sources (their commits
// would be fenced anyway once another replica takes them), and runs them
// again after a round that renews them. A lapsed lease is kept to be
// renewed: if no replica took it, it is still this one's.
func (l *Leaser) Round(ctx context.Context, groups [][]string) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.duration)
	defer cancel()
	err := l.round(ctx, groups)
	if err != nil {
		// What could not be renewed may be lost by now: stop following
		// it rather than risk a refused commit later.
		l.mu.Lock()
		if ctx.Err() != nil {
			clear(l.held)
		}
		l.mu.Unlock()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	out := make(map[string]int64, len(l.held))
	for src, h := range l.held {
		if now.Before(h.until) {
			out[src] = h.epoch
		}
	}
	return out, err
}

func (l *Leaser) round(ctx context.Context, groups [][]string) error {
	db := l.s.pool
	dur := micros(l.duration)
	var all []string
	for _, g := range groups {
		all = append(all, g...)
	}
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
	for src, h := range l.held {
		if slices.Contains(all, src) {
			renew = append(renew, src)
			epochs = append(epochs, h.epoch)
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
	renewed := map[string]lease{}
	if len(renew) > 0 {
		sent := l.now()
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
			renewed[src] = lease{epoch: e, until: sent.Add(l.duration)}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.held = renewed // a lease not renewed was taken over
	l.mu.Unlock()
	shares, err := l.shares(ctx, groups, all)
	if err != nil {
		return err
	}
	for i, g := range groups {
		if err := l.balance(ctx, g, shares[i]); err != nil {
			return err
		}
	}
	return nil
}

// shares is how many sources of each group this replica follows, as
// assign decides for the live replicas (by their heartbeat) and what they
// hold.
func (l *Leaser) shares(ctx context.Context, groups [][]string, all []string) ([]int, error) {
	rows, err := l.s.pool.Query(ctx, `SELECT r.id, coalesce(l.source, '') FROM replicas r
LEFT JOIN leases l ON l.holder = r.id AND l.expires_at > now() AND l.source = ANY($1)
WHERE r.expires_at > now()`, all)
	if err != nil {
		return nil, err
	}
	held := map[string]map[string]bool{}
	for rows.Next() {
		var id, src string
		if err := rows.Scan(&id, &src); err != nil {
			rows.Close()
			return nil, err
		}
		if held[id] == nil {
			held[id] = map[string]bool{}
		}
		if src != "" {
			held[id][src] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Ourselves as we know us (our heartbeat may have just expired).
	mine := map[string]bool{}
	for src := range l.Held() {
		mine[src] = true
	}
	held[l.id] = mine
	return assign(held, groups)[l.id], nil
}

// assign shares each group among the replicas (id → the sources each
// holds) so that, in each group, they differ by at most one, and in all,
// by at most one too. A group of n sources on r replicas gives each n/r
// and one more to n mod r of them: the replicas given the fewest extras in
// the groups before it first, then those holding the most of the group
// already (so that a replica that comes back takes nothing from one that
// follows its share), then by id. Every replica computes the same from the
// same rows.
//
// The first group (the monitor passes the CT logs first) is shared by what
// is held and by id alone, so a log never moves for the totals. A later
// group may: a replica that died keeps its heartbeat until it expires and
// may meanwhile be given a search source's extra, which then waits for
// that expiry (at most a lease duration) to go to a live replica. A search
// is polled every few minutes from a shared cursor: it is late, never
// missed.
func assign(held map[string]map[string]bool, groups [][]string) map[string][]int {
	ids := make([]string, 0, len(held))
	for id := range held {
		ids = append(ids, id)
	}
	extras := map[string]int{}
	out := map[string][]int{}
	for _, g := range groups {
		in := map[string]int{}
		for _, id := range ids {
			for _, src := range g {
				if held[id][src] {
					in[id]++
				}
			}
		}
		slices.SortFunc(ids, func(a, b string) int {
			if extras[a] != extras[b] {
				return extras[a] - extras[b]
			}
			if in[a] != in[b] {
				return in[b] - in[a]
			}
			return strings.Compare(a, b)
		})
		base, more := len(g)/len(ids), len(g)%len(ids)
		for rank, id := range ids {
			n := base
			if rank < more {
				n++
				extras[id]++
			}
			out[id] = append(out[id], n)
		}
	}
	return out
}

// balance releases what this replica holds of group beyond its share, or
// acquires free or expired leases of it up to its share.
func (l *Leaser) balance(ctx context.Context, group []string, share int) error {
	held := l.Held()
	var mine []string
	for _, src := range group {
		if _, ok := held[src]; ok {
			mine = append(mine, src)
		}
	}
	slices.Sort(mine)
	if len(mine) >= share {
		for _, src := range mine[share:] {
			if err := l.release(ctx, src); err != nil {
				return err
			}
		}
		return nil
	}

	// Below it: acquire free or expired leases, in an order of this
	// replica's own, so that replicas rarely race for the same one.
	rows, err := l.s.pool.Query(ctx, `SELECT source FROM leases WHERE source = ANY($1) AND holder <> '' AND expires_at > now()`, group)
	if err != nil {
		return err
	}
	taken, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	var free []string
	for _, src := range group {
		if !slices.Contains(taken, src) {
			free = append(free, src)
		}
	}
	slices.SortFunc(free, func(a, b string) int { return cmpHash(l.id, a, b) })
	n := len(mine)
	for _, src := range free {
		if n >= share {
			break
		}
		h, ok, err := l.acquire(ctx, src)
		if err != nil {
			return err
		}
		if ok {
			l.mu.Lock()
			l.held[src] = h
			l.mu.Unlock()
			n++
		}
	}
	return nil
}

// acquire takes the lease on src if it is free, released or expired (by
// the database's clock), with a new epoch.
func (l *Leaser) acquire(ctx context.Context, src string) (lease, bool, error) {
	var e int64
	sent := l.now()
	err := l.s.pool.QueryRow(ctx, `INSERT INTO leases (source, holder, epoch, expires_at)
VALUES ($1, $2, 1, now() + $3::bigint * interval '1 microsecond')
ON CONFLICT (source) DO UPDATE SET holder = excluded.holder, epoch = leases.epoch + 1, expires_at = excluded.expires_at
WHERE leases.holder = '' OR leases.expires_at <= now()
RETURNING epoch`, src, l.id, micros(l.duration)).Scan(&e)
	if errors.Is(err, pgx.ErrNoRows) {
		return lease{}, false, nil
	}
	return lease{epoch: e, until: sent.Add(l.duration)}, err == nil, err
}

// release gives the lease on src up, if it is still this replica's, and
// forgets it. A commit of the source after the release is fenced.
func (l *Leaser) release(ctx context.Context, src string) error {
	l.mu.Lock()
	h, ok := l.held[src]
	delete(l.held, src)
	l.mu.Unlock()
	if !ok {
		return nil
	}
	_, err := l.s.pool.Exec(ctx, `UPDATE leases SET holder = '', expires_at = now() WHERE source = $1 AND holder = $2 AND epoch = $3`, src, l.id, h.epoch)
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
