package statecopy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/pgstate"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

const n = 30

// observations are the commits of the test state: issuances for one or two
// watches with different verdicts, a parse error, SCTs known for some.
func observations(c *storetest.Clock) []state.Observation {
	var obs []state.Observation
	for i := 0; i < n; i++ {
		is := storetest.Issuance(i, c.Now())
		m := []state.Match{{Watch: "example.com", Verdict: watch.Verdict(i%4 + 1)}}
		if i%2 == 0 {
			m = append(m, state.Match{Watch: "other.example", Verdict: watch.Unreviewed})
		}
		if i%5 == 0 {
			is.ParseError = fmt.Sprintf("x509: bad %d", i)
		}
		if i%4 == 0 {
			is.EmbeddedSCTs = 2
		}
		obs = append(obs, state.Observation{Issuance: is, Matches: m})
	}
	return obs
}

// fill commits the test state into s: issuances, a CT log's position and
// counters, a cursor and crt.sh ids.
func fill(t *testing.T, s storetest.Store, c *storetest.Clock) {
	t.Helper()
	obs := observations(c)
	for i := 0; i < n; i += 10 {
		commit := &state.Commit{Source: "ct/log", Observations: obs[i : i+10], LogPosition: []byte{byte(i), 1}, Processed: 100, Malformed: 1}
		if _, err := s.Commit(commit); err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Minute)
	}
	ids := []state.ProcessedID{
		{ID: 7, TBSSHA256: obs[0].Issuance.TBSSHA256, NotAfter: c.Now().Add(24 * time.Hour)},
		{ID: 9, NotAfter: c.Now().Add(48 * time.Hour)},
	}
	if _, err := s.Commit(&state.Commit{Source: "crtsh", Cursor: []byte("cursor-1"), IDs: ids}); err != nil {
		t.Fatal(err)
	}
}

// filled is a new state file holding the test state, closed.
func filled(t *testing.T, c *storetest.Clock) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.db")
	s := openFile(t, path, c)
	fill(t, s, c)
	s.Close()
	return path
}

// content is every item of a state, printed and sorted.
func content(t *testing.T, loc string) []string {
	t.Helper()
	s, err := Open(loc, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []string
	err = s.Export(func(it state.Item) error {
		switch {
		case it.Issuance != nil:
			out = append(out, fmt.Sprintf("issuance %+v", *it.Issuance))
		case it.Counter != nil:
			out = append(out, fmt.Sprintf("counter %+v", *it.Counter))
		case it.Cursor != nil:
			out = append(out, fmt.Sprintf("cursor %+v", *it.Cursor))
		case it.LogPosition != nil:
			out = append(out, fmt.Sprintf("log %+v", *it.LogPosition))
		case it.ID != nil:
			out = append(out, fmt.Sprintf("id %+v", *it.ID))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func openFile(t *testing.T, path string, c *storetest.Clock) *state.Store {
	t.Helper()
	s, err := state.Open(path, state.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy(storetest.Unchanged(time.Hour, 10000)); err != nil {
		t.Fatal(err)
	}
	return s
}

func openPG(t *testing.T, url string, c *storetest.Clock) *pgstate.Store {
	t.Helper()
	s, err := pgstate.Open(url, pgstate.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy(storetest.Unchanged(time.Hour, 10000)); err != nil {
		t.Fatal(err)
	}
	return s
}

// recommit commits the test issuances again and returns how many were
// counted for a watch.
func recommit(t *testing.T, s storetest.Store, c *storetest.Clock) int {
	t.Helper()
	res, err := s.Commit(&state.Commit{Source: "ct/log", Observations: observations(c)})
	if err != nil {
		t.Fatal(err)
	}
	fresh := 0
	for _, r := range res {
		fresh += len(r.Fresh)
	}
	return fresh
}

// A state file copied to PostgreSQL, to another PostgreSQL database and
// back to a file is the same state, and no copy counts again what the
// original counted.
func TestRoundTrip(t *testing.T) {
	srv := pgtest.Start(t)
	url, url2 := srv.CreateDB(t, "copy"), srv.CreateDB(t, "copy2")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	c := storetest.NewClock()
	src := openFile(t, a, c)
	fill(t, src, c)
	want := src.Snapshot()
	src.Close()

	orig := content(t, a)
	if len(orig) < n+5 {
		t.Fatalf("the test state has only %d items", len(orig))
	}
	st, err := Copy(a, url, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Issuances != n || st.Matches != n+n/2 || st.Cursors != 1 || st.LogPositions != 1 || st.IDs != 2 {
		t.Errorf("copy stats %+v", st)
	}
	if got := content(t, url); !reflect.DeepEqual(got, orig) {
		t.Errorf("PostgreSQL after the copy:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(orig, "\n"))
	}
	// Analyzed as the copy ends: the planner knows the tables' sizes.
	if got := reltuples(t, url, "issuances"); got != n {
		t.Errorf("pg_class.reltuples of issuances after the copy = %v, want %d", got, n)
	}
	if _, err := Copy(url, url2, false); err != nil {
		t.Fatal(err)
	}
	if got := content(t, url2); !reflect.DeepEqual(got, orig) {
		t.Errorf("PostgreSQL after a copy from PostgreSQL:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(orig, "\n"))
	}
	if _, err := Copy(url2, b, false); err != nil {
		t.Fatal(err)
	}
	if got := content(t, b); !reflect.DeepEqual(got, orig) {
		t.Errorf("state file after the round trip:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(orig, "\n"))
	}

	// The copies show the same counters and series, and count nothing again.
	c.Advance(time.Minute)
	for name, s := range map[string]storetest.Store{"postgres": openPG(t, url, c), "postgres copy": openPG(t, url2, c), "file": openFile(t, b, c)} {
		got := s.Snapshot()
		if !reflect.DeepEqual(counters(got), counters(want)) {
			t.Errorf("%s: counters %v, want %v", name, counters(got), counters(want))
		}
		if got.Certificates != want.Certificates {
			t.Errorf("%s: %d certificates, want %d", name, got.Certificates, want.Certificates)
		}
		if len(got.Recent) != len(want.Recent) {
			t.Errorf("%s: %d recent series, want %d", name, len(got.Recent), len(want.Recent))
		}
		if fresh := recommit(t, s, c); fresh != 0 {
			t.Errorf("%s: committing the same issuances again counted %d", name, fresh)
		}
		if v, w := storetest.NewCertificates(s.Snapshot(), "example.com", "R11", "unreviewed"), storetest.NewCertificates(want, "example.com", "R11", "unreviewed"); v != w || v == 0 {
			t.Errorf("%s: ct_new_certificates_total %d, want %d", name, v, w)
		}
		if tbs, seen, err := s.SeenID("crtsh", 7); err != nil || !seen || tbs != observations(c)[0].Issuance.TBSSHA256 {
			t.Errorf("%s: crt.sh id 7: %x %v %v", name, tbs, seen, err)
		}
		if pos, err := s.LogPosition("ct/log"); err != nil || string(pos) != string([]byte{20, 1}) {
			t.Errorf("%s: log position %x %v", name, pos, err)
		}
		s.Close()
	}
}

// reltuples is what PostgreSQL's statistics hold of table's rows (-1 when
// it was never analyzed).
func reltuples(t *testing.T, url, table string) float64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v float64
	if err := conn.QueryRow(context.Background(), `SELECT reltuples FROM pg_class WHERE relname = $1`, table).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A database that replicas run on is refused, replace or not: they would
// write back what they hold in memory. Once they stop, the copy goes.
func TestLiveReplicas(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "live")
	c := storetest.NewClock()
	a := filled(t, c)

	replica := openPG(t, url, c)
	defer replica.Close()
	leaser := replica.Leaser("replica-1", time.Minute)
	if _, err := leaser.Round(context.Background(), [][]string{{"ct/log"}}); err != nil {
		t.Fatal(err)
	}
	for _, replace := range []bool{false, true} {
		_, err := Copy(a, url, replace)
		if !errors.Is(err, pgstate.ErrInUse) || !strings.Contains(err.Error(), "stop them first") {
			t.Errorf("copy (replace %v) into a database a replica runs on: %v, want a refusal", replace, err)
		}
	}
	if got := content(t, url); len(got) != 0 {
		t.Errorf("a refused copy wrote %d items", len(got))
	}
	if err := leaser.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(a, url, false); err != nil {
		t.Fatalf("copy once the replica stopped: %v", err)
	}
	if got, want := content(t, url), content(t, a); !reflect.DeepEqual(got, want) {
		t.Errorf("after the copy:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func counters(s state.Snapshot) []string {
	var out []string
	for _, c := range s.Counters {
		out = append(out, fmt.Sprintf("%s%q=%d", c.Name, c.Labels, c.Value))
	}
	sort.Strings(out)
	return out
}

// A destination that holds a state is refused, and replaced only when
// asked; the refusal changes nothing.
func TestNonEmptyDestination(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "dest")
	c := storetest.NewClock()
	a := filled(t, c)

	other := filepath.Join(t.TempDir(), "other.db")
	o := openFile(t, other, c)
	storetest.Observe(t, o, storetest.Issuance(1000, c.Now()), state.Match{Watch: "example.net", Verdict: watch.Unreviewed})
	o.Close()
	if _, err := Copy(other, url, false); err != nil {
		t.Fatal(err)
	}
	before := content(t, url)

	for _, dst := range []string{url, other} {
		_, err := Copy(a, dst, false)
		if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "--replace") {
			t.Errorf("copy into %s: %v, want a refusal", dst, err)
		}
	}
	if got := content(t, url); !reflect.DeepEqual(got, before) {
		t.Errorf("a refused copy changed the destination")
	}
	for _, dst := range []string{url, other} {
		if _, err := Copy(a, dst, true); err != nil {
			t.Fatal(err)
		}
		if got, want := content(t, dst), content(t, a); !reflect.DeepEqual(got, want) {
			t.Errorf("%s after --replace:\n%s\nwant:\n%s", dst, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// A source that does not exist is an error, not an empty state file.
func TestMissingSource(t *testing.T) {
	dir := t.TempDir()
	if _, err := Copy(filepath.Join(dir, "missing.db"), filepath.Join(dir, "b.db"), false); err == nil {
		t.Fatal("copied a missing file")
	}
	if _, err := Open(filepath.Join(dir, "missing.db"), false); err == nil {
		t.Fatal("opened a missing file")
	}
}

func TestIsURL(t *testing.T) {
	for loc, want := range map[string]bool{
		"postgres://u:p@h/db":           true,
		"postgresql://h/db":             true,
		"host=h dbname=ct password=p":   true,
		"dbname=ct":                     true,
		"/var/lib/ct_exporter/state.db": false,
		"state.db":                      false,
		"./a=b.db":                      false,
	} {
		if got := IsURL(loc); got != want {
			t.Errorf("IsURL(%q) = %v", loc, got)
		}
	}
	if got := Name("postgres://u:secret@h/db"); strings.Contains(got, "secret") {
		t.Errorf("Name shows the password: %s", got)
	}
	if got := Name("host=h password=secret"); strings.Contains(got, "secret") {
		t.Errorf("Name shows the password: %s", got)
	}
}
