package pgstate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

// round runs l's round over groups and fails the test on an error.
func round(t *testing.T, l *Leaser, groups ...[]string) map[string]int64 {
	t.Helper()
	held, err := l.Round(context.Background(), groups)
	if err != nil {
		t.Fatal(err)
	}
	return held
}

// A lease is acquired, renewed, kept from another replica while renewed,
// and taken over with a new epoch once its holder stops renewing; the old
// holder learns it lost it at its next round.
func TestLeaseAcquireRenewTakeover(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "lease")
	c := storetest.NewClock()
	s := open(t, url, c.Now)
	const dur = 500 * time.Millisecond
	a, b := s.Leaser("a", dur), s.Leaser("b", dur)
	src := []string{"log1"}

	if held := round(t, a, src); held["log1"] != 1 || len(held) != 1 {
		t.Fatalf("a holds %v, want log1 at epoch 1", held)
	}
	// While a renews, b never takes it: a's heartbeat makes b's share 0,
	// and a's lease is unexpired.
	deadline := time.Now().Add(3 * dur)
	for time.Now().Before(deadline) {
		if held := round(t, a, src); held["log1"] != 1 {
			t.Fatalf("a lost its lease while renewing: %v", held)
		}
		if held := round(t, b, src); len(held) != 0 {
			t.Fatalf("b took a renewed lease: %v", held)
		}
	}
	// a stops renewing: b takes over once a's lease and heartbeat expire.
	start := time.Now()
	for {
		if held := round(t, b, src); held["log1"] == 2 {
			break
		}
		if time.Since(start) > 10*dur {
			t.Fatal("b did not take the expired lease over")
		}
	}
	if took := time.Since(start); took > 3*dur {
		t.Errorf("takeover took %v with a lease of %v", took, dur)
	}
	if held := b.Held(); held["log1"] != 2 {
		t.Fatalf("b holds %v", held)
	}
	// a comes back: its renewal fails and it holds nothing; nor does it
	// take the log back from b, which holds its share (the one more goes
	// to the replica holding the most), round after round.
	if held := round(t, a, src); len(held) != 0 {
		t.Fatalf("a still holds %v after the takeover", held)
	}
	if a.Fence("log1") != nil {
		t.Fatal("a has a fence for a lease it lost")
	}
	deadline = time.Now().Add(3 * dur)
	for time.Now().Before(deadline) {
		if held := round(t, b, src); held["log1"] != 2 {
			t.Fatalf("b lost the lease to a returning replica: %v", held)
		}
		if held := round(t, a, src); len(held) != 0 {
			t.Fatalf("a took the lease back: %v", held)
		}
	}
}

// heldFence is the fence of the lease l holds on src by the database,
// whatever l's clock says of it.
func heldFence(t *testing.T, l *Leaser, src string) *state.Fence {
	t.Helper()
	e, ok := l.Held()[src]
	if !ok {
		t.Fatalf("%s holds no lease on %s", l.ID(), src)
	}
	return &state.Fence{Lease: src, Holder: l.ID(), Epoch: e}
}

// A lease is lost by the replica's own clock once its duration passed
// since it was last renewed, whatever the database says: a replica that
// resumes from a stall stops using it before any round. A round that
// renews it (nobody took it) gives it back, at the same epoch.
func TestLeaseLapsesByLocalClock(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "lapse")
	c := storetest.NewClock()
	s := open(t, url, c.Now)
	const dur = time.Hour // the database's lease never expires here
	a := s.Leaser("a", dur)
	a.now = c.Now
	round(t, a, []string{"log1"})
	if f := a.Fence("log1"); f == nil || f.Epoch != 1 {
		t.Fatalf("fence after the round: %+v", f)
	}
	c.Advance(dur - time.Nanosecond)
	if a.Fence("log1") == nil {
		t.Fatal("the lease lapsed before its duration")
	}
	c.Advance(time.Nanosecond)
	if f := a.Fence("log1"); f != nil {
		t.Fatalf("fence %+v after the lease's duration without a renewal", f)
	}
	if f := a.Fence("log2"); f != nil {
		t.Fatalf("fence %+v for a lease never held", f)
	}
	round(t, a, []string{"log1"})
	if f := a.Fence("log1"); f == nil || f.Epoch != 1 {
		t.Fatalf("fence after the renewal: %+v, want epoch 1", f)
	}
	// The database goes away: rounds fail at once, the lease lapses and
	// is no longer among those to run, round after round (its sources
	// must not start again), until a round renews it.
	srv.Stop(t)
	c.Advance(dur)
	for i := 0; i < 3; i++ {
		held, err := a.Round(context.Background(), [][]string{{"log1"}})
		if err == nil || len(held) != 0 {
			t.Fatalf("round with the database down: %v, %v; want an error and nothing to run", held, err)
		}
	}
	srv.StartAgain(t)
	var held map[string]int64
	for i := 0; ; i++ {
		var err error
		if held, err = a.Round(context.Background(), [][]string{{"log1"}}); err == nil {
			break
		} else if i == 5 {
			t.Fatal(err)
		}
	}
	if held["log1"] != 1 {
		t.Fatalf("after the database came back: %v, want log1 at epoch 1 again", held)
	}
}

// A commit carrying a stale epoch is refused whole, in the transaction
// that would write it: no issuance, counter, position or cursor; the
// current holder's commit goes through. A released lease fences too.
func TestFencingRefusesStaleEpoch(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "fence")
	c := storetest.NewClock()
	s := open(t, url, c.Now)
	const dur = 300 * time.Millisecond
	a, b := s.Leaser("a", dur), s.Leaser("b", dur)
	src := []string{"log1"}
	round(t, a, src)
	stale := heldFence(t, a, "log1")
	deadline := time.Now().Add(10 * dur)
	for len(round(t, b, src)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("b did not take the lease over")
		}
	}
	m := state.Match{Watch: "example.com", Verdict: watch.Unreviewed}
	commit := func(f *state.Fence, i int) ([]state.Observed, error) {
		return s.Commit(&state.Commit{Source: "log1", Fence: f, LogPosition: []byte{byte(i)}, Processed: 1,
			Cursor:       []byte{byte(i)},
			Observations: []state.Observation{{Issuance: storetest.Issuance(i, c.Now()), Matches: []state.Match{m}}}})
	}
	before := s.Snapshot().WriteErrors
	if _, err := commit(stale, 1); !errors.Is(err, state.ErrFenced) {
		t.Fatalf("stale commit: %v, want ErrFenced", err)
	}
	if s.Snapshot().WriteErrors != before {
		t.Error("a fenced commit was counted as a write error")
	}
	is, err := s.Issuance(storetest.Issuance(1, c.Now()).TBSSHA256)
	if err != nil || is != nil {
		t.Fatalf("the fenced commit's issuance: %v, %v", is, err)
	}
	if pos, err := s.LogPosition("log1"); err != nil || pos != nil {
		t.Fatalf("the fenced commit's position: %v, %v", pos, err)
	}
	if cur, err := s.Cursor("log1"); err != nil || cur != nil {
		t.Fatalf("the fenced commit's cursor: %v, %v", cur, err)
	}
	if cs := s.Snapshot().Counters; len(cs) != 0 {
		t.Fatalf("the fenced commit counted %v", cs)
	}
	// A fence naming another holder at the current epoch is refused too.
	cur := heldFence(t, b, "log1")
	if _, err := commit(&state.Fence{Lease: "log1", Holder: "a", Epoch: cur.Epoch}, 1); !errors.Is(err, state.ErrFenced) {
		t.Fatalf("another holder's commit: %v, want ErrFenced", err)
	}
	// A lease nobody ever held fences.
	if _, err := commit(&state.Fence{Lease: "log2", Holder: "b", Epoch: 1}, 1); !errors.Is(err, state.ErrFenced) {
		t.Fatalf("a commit under no lease: %v, want ErrFenced", err)
	}
	if res, err := commit(cur, 2); err != nil || len(res[0].Fresh) != 1 {
		t.Fatalf("the holder's commit: %v, %v", res, err)
	}
	if pos, err := s.LogPosition("log1"); err != nil || !slices.Equal(pos, []byte{2}) {
		t.Fatalf("position %v, %v", pos, err)
	}
	// Released (the replica shut down): its token no longer commits.
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := commit(cur, 3); !errors.Is(err, state.ErrFenced) {
		t.Fatalf("commit after release: %v, want ErrFenced", err)
	}
	// Without a fence (the state file's way), commits are not checked.
	if _, err := commit(nil, 4); err != nil {
		t.Fatal(err)
	}
}

// The fence check locks the lease row until the commit ends: a takeover
// waits for the commit in flight, so the commit is either before the
// takeover or refused.
func TestFenceHoldsTakeoverUntilCommit(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "fencelock")
	s := open(t, url, storetest.NewClock().Now)
	const dur = 200 * time.Millisecond
	a, b := s.Leaser("a", dur), s.Leaser("b", dur)
	round(t, a, []string{"log1"})
	f := heldFence(t, a, "log1")
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := fence(ctx, tx, f); err != nil {
		t.Fatal(err)
	}
	// a's lease expires while its commit is in flight; b tries to take it.
	var expired bool
	deadline := time.Now().Add(10 * dur)
	for !expired {
		if err := s.pool.QueryRow(ctx, `SELECT expires_at <= now() FROM leases WHERE source = 'log1'`).Scan(&expired); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease did not expire")
		}
	}
	done := make(chan error, 1)
	go func() {
		_, ok, err := b.acquire(ctx, "log1")
		if err == nil && !ok {
			err = errors.New("b could not take the expired lease")
		}
		done <- err
	}()
	// The acquisition waits on the row lock: PostgreSQL says so.
	for {
		var waiting int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the takeover did not wait for the commit in flight: %v", err)
		default:
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatal("the takeover never waited on the lease row")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if g := b.Held()["log1"]; g != 0 {
		t.Fatalf("acquire alone does not record the lease as held: %v", g)
	}
}

// Three replicas share seven sources 3/2/2, each source held by exactly
// one; when one leaves (Close) the two others share them 4/3, and when one
// dies (stops renewing) the last takes everything over.
func TestLeaseBalance(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "balance")
	s := open(t, url, storetest.NewClock().Now)
	const dur = 400 * time.Millisecond
	var sources []string
	for i := range 7 {
		sources = append(sources, fmt.Sprintf("log%d", i))
	}
	ls := []*Leaser{s.Leaser("r1", dur), s.Leaser("r2", dur), s.Leaser("r3", dur)}
	settle := func(ls []*Leaser, want []int) {
		t.Helper()
		deadline := time.Now().Add(20 * dur)
		for {
			var counts []int
			owner := map[string]int{}
			for _, l := range ls {
				held := round(t, l, sources)
				counts = append(counts, len(held))
				for src := range held {
					owner[src]++
				}
			}
			// Each source held by exactly one, as the database says too.
			ok := len(owner) == len(sources)
			for _, n := range owner {
				ok = ok && n == 1
			}
			slices.Sort(counts)
			slices.Reverse(counts)
			if ok && slices.Equal(counts, want) {
				var live int
				if err := s.pool.QueryRow(context.Background(),
					`SELECT count(*) FROM leases WHERE holder <> '' AND source = ANY($1)`, sources).Scan(&live); err != nil {
					t.Fatal(err)
				}
				if live != len(sources) {
					t.Fatalf("the database has %d leases held, want %d", live, len(sources))
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not settled: counts %v (want %v), owners %v", counts, want, owner)
			}
		}
	}
	settle(ls, []int{3, 2, 2})
	if err := ls[2].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	settle(ls[:2], []int{4, 3})
	settle(ls[:1], []int{7}) // r2 stops renewing
}

// Groups are shared each on its own: two logs and two search sources on
// three replicas settle with at most one of each per replica (2/1/1 in
// all), also when one replica held everything before the others came.
func TestLeaseBalanceByGroup(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "groups")
	s := open(t, url, storetest.NewClock().Now)
	const dur = 400 * time.Millisecond
	logs, searches := []string{"fakelog", "sunlight"}, []string{"certspotter", "crtsh"}
	ls := []*Leaser{s.Leaser("r1", dur), s.Leaser("r2", dur), s.Leaser("r3", dur)}
	if held := round(t, ls[0], logs, searches); len(held) != 4 {
		t.Fatalf("a replica alone holds %v, want all four", held)
	}
	deadline := time.Now().Add(20 * dur)
	for {
		var totals []int
		owner := map[string]int{}
		ok := true
		for _, l := range ls {
			held := round(t, l, logs, searches)
			totals = append(totals, len(held))
			for _, g := range [][]string{logs, searches} {
				n := 0
				for _, src := range g {
					if _, h := held[src]; h {
						n++
						owner[src]++
					}
				}
				ok = ok && n <= 1
			}
		}
		for _, src := range append(slices.Clone(logs), searches...) {
			ok = ok && owner[src] == 1
		}
		slices.Sort(totals)
		if ok {
			if !slices.Equal(totals, []int{1, 1, 2}) {
				t.Fatalf("settled with %v sources per replica, want 2/1/1", totals)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled: totals %v, owners %v", totals, owner)
		}
	}
}

// assign balances each group and the totals, keeps leases where they are
// when that is balanced, and never leaves a replica idle while another
// holds two more.
func TestAssign(t *testing.T) {
	logs, searches := []string{"A", "B"}, []string{"X", "Y"}
	set := func(srcs ...string) map[string]bool {
		m := map[string]bool{}
		for _, s := range srcs {
			m[s] = true
		}
		return m
	}
	for _, tc := range []struct {
		name string
		held map[string]map[string]bool
		want map[string][]int
	}{
		{"fresh", map[string]map[string]bool{"r1": set(), "r2": set(), "r3": set()},
			map[string][]int{"r1": {1, 1}, "r2": {1, 0}, "r3": {0, 1}}},
		// Balanced by group but not in all (2/2/0): the idle replica
		// takes a search source.
		{"per group only", map[string]map[string]bool{"r1": set("A", "X"), "r2": set("B", "Y"), "r3": set()},
			map[string][]int{"r1": {1, 1}, "r2": {1, 0}, "r3": {0, 1}}},
		// Settled: nothing moves.
		{"settled", map[string]map[string]bool{"r1": set("B"), "r2": set("A", "Y"), "r3": set("X")},
			map[string][]int{"r1": {1, 0}, "r2": {1, 1}, "r3": {0, 1}}},
		// A replica that comes back takes one source, not two, and
		// only in the group where the totals need it.
		{"comeback", map[string]map[string]bool{"r0": set(), "r2": set("A", "X"), "r3": set("B", "Y")},
			map[string][]int{"r0": {0, 1}, "r2": {1, 1}, "r3": {1, 0}}},
		{"alone", map[string]map[string]bool{"r1": set()}, map[string][]int{"r1": {2, 2}}},
	} {
		got := assign(tc.held, [][]string{logs, searches})
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
