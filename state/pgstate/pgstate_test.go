package pgstate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

var dbs atomic.Int64

// The behavioural tests every store passes, against PostgreSQL: one
// server, a database per test.
func TestStore(t *testing.T) {
	srv := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) func() storetest.Store {
		url := srv.CreateDB(t, fmt.Sprintf("store%d", dbs.Add(1)))
		return func() storetest.Store {
			s, err := Open(url, Options{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

func open(t *testing.T, url string, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(url, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SetPolicy(storetest.Unchanged(time.Hour, 10000)); err != nil {
		t.Fatal(err)
	}
	return s
}

// Two replicas committing the same issuances at once count each once, and
// both report the same counters and series once refreshed.
func TestConcurrentReplicasCountOnce(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "shared")
	c := storetest.NewClock()
	a, b := open(t, url, c.Now), open(t, url, c.Now)
	const n = 200
	m := state.Match{Watch: "example.com", Verdict: watch.Unreviewed}
	var wg sync.WaitGroup
	fresh := make([]atomic.Int64, n)
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i += 4 {
				var obs []state.Observation
				for j := i; j < i+4; j++ {
					obs = append(obs, state.Observation{Issuance: storetest.Issuance(j, c.Now()), Matches: []state.Match{m}})
				}
				res, err := s.Commit(&state.Commit{Source: "log", Observations: obs, LogPosition: []byte{byte(i)}, Processed: 4})
				if err != nil {
					t.Error(err)
					return
				}
				for k, r := range res {
					fresh[i+k].Add(int64(len(r.Fresh)))
				}
			}
		}()
	}
	wg.Wait()
	for i := range fresh {
		if got := fresh[i].Load(); got != 1 {
			t.Fatalf("issuance %d found fresh %d times", i, got)
		}
	}
	// The other replica's commits arrive by NOTIFY; wait for them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		sa, sb := a.Snapshot(), b.Snapshot()
		ok := true
		for _, snap := range []state.Snapshot{sa, sb} {
			if storetest.NewCertificates(snap, "example.com", "R11", "unreviewed") != n || snap.Certificates != n ||
				len(snap.Recent) != n || storetest.CounterValue(snap, state.CounterLogProcessed, "log") != 2*n {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas disagree or miscount: a %d/%d/%d, b %d/%d/%d",
				storetest.NewCertificates(sa, "example.com", "R11", "unreviewed"), sa.Certificates, len(sa.Recent),
				storetest.NewCertificates(sb, "example.com", "R11", "unreviewed"), sb.Certificates, len(sb.Recent))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A commit by another replica reaches this one's mirror (and bumps the
// generation the collector caches on) without a commit of its own.
func TestOtherReplicasCommitsAreMirrored(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "mirror")
	c := storetest.NewClock()
	a, b := open(t, url, c.Now), open(t, url, c.Now)
	gen, _ := b.RecentVersion()
	storetest.Observe(t, a, storetest.Issuance(1, c.Now()), state.Match{Watch: "example.com", Verdict: watch.Unreviewed})
	deadline := time.Now().Add(5 * time.Second)
	for len(b.Snapshot().Recent) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the other replica's commit was not mirrored")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g, _ := b.RecentVersion(); g == gen {
		t.Fatal("the generation did not change")
	}
	// Once the server restarts, the other replica listens again.
	srv.Restart(t)
	commit := &state.Commit{Source: "test", Observations: []state.Observation{{Issuance: storetest.Issuance(2, c.Now()),
		Matches: []state.Match{{Watch: "example.com", Verdict: watch.Unreviewed}}}}}
	for i := 0; ; i++ {
		if _, err := a.Commit(commit); err == nil {
			break
		} else if i == 5 {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(RefreshInterval + 5*time.Second)
	for len(b.Snapshot().Recent) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("a commit after the restart was not mirrored")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A PostgreSQL restart makes a commit fail (a write error); the next one
// succeeds, and nothing is lost or counted twice.
func TestRestartMidRun(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "restart")
	c := storetest.NewClock()
	s := open(t, url, c.Now)
	m := state.Match{Watch: "example.com", Verdict: watch.Unreviewed}
	storetest.Observe(t, s, storetest.Issuance(1, c.Now()), m)
	srv.Restart(t)
	commit := &state.Commit{Source: "log", Observations: []state.Observation{{Issuance: storetest.Issuance(2, c.Now()), Matches: []state.Match{m}}},
		LogPosition: []byte("2"), Processed: 1}
	failed := 0
	for {
		_, err := s.Commit(commit)
		if err == nil {
			break
		}
		failed++
		if failed > 5 {
			t.Fatalf("commits keep failing after the restart: %v", err)
		}
	}
	snap := s.Snapshot()
	if failed == 0 {
		t.Log("the pool reconnected before the first commit failed")
	}
	if snap.WriteErrors != uint64(failed) {
		t.Errorf("write errors %d, want %d", snap.WriteErrors, failed)
	}
	if storetest.NewCertificates(snap, "example.com", "R11", "unreviewed") != 2 || snap.Certificates != 2 {
		t.Errorf("after the restart: %d counted, %d certificates; want 2, 2",
			storetest.NewCertificates(snap, "example.com", "R11", "unreviewed"), snap.Certificates)
	}
	if pos, err := s.LogPosition("log"); err != nil || string(pos) != "2" {
		t.Errorf("position %q, %v", pos, err)
	}
	// Reopened, the same.
	s.Close()
	s = open(t, url, c.Now)
	if snap := s.Snapshot(); storetest.NewCertificates(snap, "example.com", "R11", "unreviewed") != 2 || snap.Certificates != 2 || len(snap.Recent) != 2 {
		t.Errorf("reopened: %+v", snap)
	}
}

// While the server is down, a commit fails, is counted as a write error
// and changes nothing; the mirror's refreshes fail and are counted as read
// errors (ct_state_read_errors_total, which CTExporterStateReadFailing
// watches). Once it is back, both recover, and nothing was lost.
func TestOutageCounted(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "outage")
	c := storetest.NewClock()
	s, other := open(t, url, c.Now), open(t, url, c.Now)
	m := state.Match{Watch: "example.com", Verdict: watch.Unreviewed}
	storetest.Observe(t, s, storetest.Issuance(1, c.Now()), m)
	srv.Stop(t)
	commit := func(i int) error {
		_, err := s.Commit(&state.Commit{Source: "log", LogPosition: []byte{byte(i)}, Processed: 1,
			Observations: []state.Observation{{Issuance: storetest.Issuance(i, c.Now()), Matches: []state.Match{m}}}})
		return err
	}
	if err := commit(2); err == nil {
		t.Fatal("a commit succeeded with the server down")
	}
	if snap := s.Snapshot(); snap.WriteErrors != 1 || snap.Certificates != 1 {
		t.Fatalf("after a failed commit: %d write errors, %d certificates; want 1, 1", snap.WriteErrors, snap.Certificates)
	}
	deadline := time.Now().Add(10 * time.Second)
	for other.Snapshot().ReadErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no read error counted while the server is down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.StartAgain(t)
	for i := 0; commit(2) != nil; i++ {
		if i == 5 {
			t.Fatal("commits keep failing once the server is back")
		}
	}
	deadline = time.Now().Add(RefreshInterval + 5*time.Second)
	for other.Snapshot().Certificates != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the other replica's mirror did not recover")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if snap := s.Snapshot(); storetest.NewCertificates(snap, "example.com", "R11", "unreviewed") != 2 {
		t.Errorf("counted %d, want 2", storetest.NewCertificates(snap, "example.com", "R11", "unreviewed"))
	}
}

// A schema newer than this build is refused, and left untouched.
func TestNewerSchemaIsRefused(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "newer")
	s, err := Open(url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO ct_exporter_schema (version) VALUES ($1)`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(url, Options{})
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", SchemaVersion+1)) {
		t.Fatalf("Open = %v", err)
	}
	if strings.Contains(err.Error(), pgtest.Password) {
		t.Fatal("the password is in the error")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgresql://u@h/db":                           "postgresql://u@h/db",
		"postgres://u@h/db?password=secret":             "postgres://u@h/db?password=xxxxx",
		"host=h user=u password=secret dbname=db":       "host=h user=u password=xxxxx dbname=db",
		"host=h password='se cret' dbname=db":           "host=h password=xxxxx dbname=db",
		"host=h user=u dbname=db":                       "host=h user=u dbname=db",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// Open's errors never carry the password.
func TestOpenErrorHasNoPassword(t *testing.T) {
	_, err := Open("postgres://u:hunter2@127.0.0.1:1/db?sslmode=disable&connect_timeout=1", Options{})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Open = %v", err)
	}
}
