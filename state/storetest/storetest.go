// Package storetest holds the behavioural tests every state store passes:
// the state file (package state) and PostgreSQL (package state/pgstate)
// run them alike, through what the program uses of a store.
package storetest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// Store is what the tests use of a store.
type Store interface {
	Commit(c *state.Commit) ([]state.Observed, error)
	Issuance(tbs [32]byte) (*state.Issuance, error)
	LogPosition(log string) ([]byte, error)
	Cursor(source string) ([]byte, error)
	SeenID(source string, id uint64) (tbs [32]byte, seen bool, err error)
	SetPolicy(state.Policy) error
	Prune() (int, error)
	Snapshot() state.Snapshot
	RecentVersion() (uint64, time.Time)
	Close() error
}

// Factory makes an empty store for a test and returns how to open it: each
// call opens the same store again (after the last one was closed).
type Factory func(t *testing.T, now func() time.Time) (open func() Store)

// Clock is a test's clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// NewClock is a clock at a fixed time, to the microsecond as every store
// keeps it.
func NewClock() *Clock { return ClockAt(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)) }

// ClockAt is a clock at t.
func ClockAt(t time.Time) *Clock { return &Clock{t: t} }

// Issuance is a test issuance, the same for the same i.
func Issuance(i int, now time.Time) *state.Issuance {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], uint64(i))
	return &state.Issuance{
		TBSSHA256:    sha256.Sum256(append([]byte("tbs"), seed[:]...)),
		CertSHA256:   sha256.Sum256(append([]byte("cert"), seed[:]...)),
		SPKISHA256:   sha256.Sum256(append([]byte("spki"), seed[:]...)),
		Serial:       fmt.Sprintf("%08x", i),
		Issuer:       watch.Issuer{CN: "R11", O: "Let's Encrypt", DN: "CN=R11, O=Let's Encrypt, C=US"},
		SubjectCN:    fmt.Sprintf("host%d.example.com", i),
		DNSNames:     []string{fmt.Sprintf("host%d.example.com", i), "example.com"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(90 * 24 * time.Hour),
		EmbeddedSCTs: -1,
	}
}

// Unchanged is a policy under which every watch is configured and keeps
// the verdict it gave when it first saw the issuance.
func Unchanged(window time.Duration, limit int) state.Policy {
	return state.Policy{RecentWindow: window, SeriesLimit: limit, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		for _, m := range is.Watches {
			if m.Watch == w {
				return m.Verdict, true
			}
		}
		return 0, false
	}}
}

// Observe commits one observation and returns its fresh matches.
func Observe(t testing.TB, s Store, is *state.Issuance, matches ...state.Match) []state.Match {
	t.Helper()
	res, err := s.Commit(&state.Commit{Source: "test", Observations: []state.Observation{{Issuance: is, Matches: matches}}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	return res[0].Fresh
}

// NewCertificates is the value of ct_new_certificates_total{labels}.
func NewCertificates(snap state.Snapshot, labels ...string) uint64 {
	return CounterValue(snap, state.CounterNewCertificates, labels...)
}

// CounterValue is a persisted counter's value.
func CounterValue(snap state.Snapshot, name string, labels ...string) uint64 {
	for _, c := range snap.Counters {
		if c.Name == name && strings.Join(c.Labels, "\x00") == strings.Join(labels, "\x00") {
			return c.Value
		}
	}
	return 0
}

// Run runs every behavioural test against the stores f makes.
func Run(t *testing.T, f Factory) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"CountsEachIssuanceOncePerWatch", countsOncePerWatch},
		{"PrecertAndFinalInOneCommit", precertAndFinal},
		{"ExpiredIssuanceIsIgnored", expiredIgnored},
		{"SeriesCapEvictsLeastUrgentFirst", seriesCap},
		{"SetPolicyJudgesAgain", setPolicyJudgesAgain},
		{"Prune", prune},
		{"Commit", commit},
		{"ParseErrorsCounted", parseErrors},
		{"MaxIssuersPerWatch", maxIssuers},
		{"OddStringsAreRecorded", oddStrings},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f) })
	}
}

func openWith(t *testing.T, f Factory, c *Clock, p state.Policy) (Store, func() Store) {
	t.Helper()
	open := f(t, c.Now)
	reopen := func() Store {
		t.Helper()
		s := open()
		if err := s.SetPolicy(p); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := reopen()
	return s, reopen
}

func countsOncePerWatch(t *testing.T, f Factory) {
	c := NewClock()
	s, reopen := openWith(t, f, c, Unchanged(168*time.Hour, 1000))
	pre := Issuance(1, c.Now())
	m := state.Match{Watch: "example.com", Verdict: watch.Unreviewed}
	if fresh := Observe(t, s, pre, m); len(fresh) != 1 {
		t.Fatalf("first sighting: fresh = %v", fresh)
	}
	c.Advance(time.Minute)
	final := *pre
	final.CertSHA256 = sha256.Sum256([]byte("final"))
	final.EmbeddedSCTs = 2
	if fresh := Observe(t, s, &final, m); len(fresh) != 0 {
		t.Fatalf("final certificate counted again: %v", fresh)
	}
	m2 := state.Match{Watch: "host1.example.com", Verdict: watch.IssuerUnexpected}
	if fresh := Observe(t, s, &final, m, m2); len(fresh) != 1 || fresh[0] != m2 {
		t.Fatalf("second watch: fresh = %v", fresh)
	}
	snap := s.Snapshot()
	if got := NewCertificates(snap, "example.com", "R11", "unreviewed"); got != 1 {
		t.Errorf("new_certificates{example.com} = %d, want 1", got)
	}
	if got := NewCertificates(snap, "host1.example.com", "R11", "issuer_unexpected"); got != 1 {
		t.Errorf("new_certificates{host1.example.com} = %d, want 1", got)
	}
	if snap.Certificates != 1 {
		t.Errorf("certificates = %d, want 1", snap.Certificates)
	}
	if len(snap.Recent) != 2 {
		t.Fatalf("recent = %d series, want 2", len(snap.Recent))
	}
	for _, r := range snap.Recent {
		if r.CertSHA256 != pre.CertSHA256 {
			t.Errorf("%s: cert_sha256 is not the first certificate's", r.Watch)
		}
		if r.EmbeddedSCTs != 2 {
			t.Errorf("%s: SCTs = %d, want 2 from the final certificate", r.Watch, r.EmbeddedSCTs)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	defer s.Close()
	again := s.Snapshot()
	if got := NewCertificates(again, "example.com", "R11", "unreviewed"); got != 1 {
		t.Errorf("after reopen: new_certificates = %d, want 1", got)
	}
	if len(again.Recent) != 2 || again.Recent[0] != snap.Recent[0] || again.Recent[1] != snap.Recent[1] {
		t.Errorf("recent series changed across reopen:\n%+v\n%+v", snap.Recent, again.Recent)
	}
	if again.Certificates != 1 {
		t.Errorf("after reopen: certificates = %d", again.Certificates)
	}
	if fresh := Observe(t, s, pre, m); len(fresh) != 0 {
		t.Error("issuance counted again after reopen")
	}
}

func precertAndFinal(t *testing.T, f Factory) {
	c := NewClock()
	s, _ := openWith(t, f, c, Unchanged(168*time.Hour, 1000))
	defer s.Close()
	pre := Issuance(1, c.Now())
	final := *pre
	final.EmbeddedSCTs = 3
	m := []state.Match{{Watch: "example.com", Verdict: watch.Unreviewed}}
	res, err := s.Commit(&state.Commit{Source: "log", Observations: []state.Observation{{Issuance: pre, Matches: m}, {Issuance: &final, Matches: m}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res[0].Fresh) != 1 || len(res[1].Fresh) != 0 {
		t.Fatalf("observed %+v", res)
	}
	if r := s.Snapshot().Recent; len(r) != 1 || r[0].EmbeddedSCTs != 3 {
		t.Fatalf("recent = %+v, want one series with 3 SCTs", r)
	}
	if snap := s.Snapshot(); snap.Certificates != 1 || NewCertificates(snap, "example.com", "R11", "unreviewed") != 1 {
		t.Fatalf("snapshot %+v", snap)
	}
}

func expiredIgnored(t *testing.T, f Factory) {
	c := NewClock()
	s, _ := openWith(t, f, c, Unchanged(168*time.Hour, 1000))
	defer s.Close()
	is := Issuance(1, c.Now())
	is.NotAfter = c.Now().Add(-state.ExpiredGrace - time.Second)
	if fresh := Observe(t, s, is, state.Match{Watch: "example.com", Verdict: watch.Unreviewed}); fresh != nil {
		t.Fatalf("expired issuance recorded: %v", fresh)
	}
	if n := s.Snapshot().Certificates; n != 0 {
		t.Fatalf("certificates = %d", n)
	}
}

func seriesCap(t *testing.T, f Factory) {
	c := NewClock()
	s, _ := openWith(t, f, c, Unchanged(time.Hour, 3))
	defer s.Close()
	w := "example.com"
	Observe(t, s, Issuance(1, c.Now()), state.Match{Watch: w, Verdict: watch.IssuerUnexpected})
	for i := 2; i <= 6; i++ {
		c.Advance(time.Second)
		Observe(t, s, Issuance(i, c.Now()), state.Match{Watch: w, Verdict: watch.Authorized})
	}
	snap := s.Snapshot()
	if len(snap.Recent) != 3 {
		t.Fatalf("recent = %d, want 3", len(snap.Recent))
	}
	if snap.Recent[0].Verdict != watch.IssuerUnexpected {
		t.Errorf("the unexpected issuance was evicted by authorized ones: %+v", snap.Recent)
	}
	if snap.Recent[2].Serial != fmt.Sprintf("%08x", 6) || snap.Recent[1].Serial != fmt.Sprintf("%08x", 5) {
		t.Errorf("kept %s, %s; want the newest authorized", snap.Recent[1].Serial, snap.Recent[2].Serial)
	}
	if snap.Dropped[w] != 3 {
		t.Errorf("dropped = %d, want 3", snap.Dropped[w])
	}
	c.Advance(2 * time.Hour)
	if snap := s.Snapshot(); len(snap.Recent) != 0 || snap.Certificates != 6 {
		t.Errorf("after the window: %d recent, %d certificates", len(snap.Recent), snap.Certificates)
	}
}

func setPolicyJudgesAgain(t *testing.T, f Factory) {
	c := NewClock()
	s, _ := openWith(t, f, c, Unchanged(168*time.Hour, 1000))
	defer s.Close()
	a, b := Issuance(1, c.Now()), Issuance(2, c.Now())
	Observe(t, s, a, state.Match{Watch: "example.com", Verdict: watch.Unreviewed})
	Observe(t, s, b, state.Match{Watch: "example.com", Verdict: watch.Unreviewed}, state.Match{Watch: "gone.example", Verdict: watch.Unreviewed})
	gen, _ := s.RecentVersion()
	err := s.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 10, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		if w == "gone.example" {
			return 0, false
		}
		if is.TBSSHA256 == a.TBSSHA256 {
			return watch.Authorized, true
		}
		return watch.Unreviewed, true
	}})
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := s.RecentVersion(); g == gen {
		t.Error("the generation did not change")
	}
	snap := s.Snapshot()
	if len(snap.Recent) != 2 {
		t.Fatalf("recent = %+v", snap.Recent)
	}
	for _, r := range snap.Recent {
		want := watch.Unreviewed
		if r.TBSSHA256 == a.TBSSHA256 {
			want = watch.Authorized
		}
		if r.Verdict != want || r.Watch != "example.com" {
			t.Errorf("%x for %s: verdict %v, want %v", r.TBSSHA256[:4], r.Watch, r.Verdict, want)
		}
	}
	if got := NewCertificates(snap, "example.com", "R11", "unreviewed"); got != 2 {
		t.Errorf("new_certificates = %d, want 2", got)
	}
}

func prune(t *testing.T, f Factory) {
	c := NewClock()
	s, _ := openWith(t, f, c, Unchanged(48*time.Hour, 10))
	defer s.Close()
	short := Issuance(1, c.Now())
	short.NotAfter = c.Now().Add(time.Hour)
	long := Issuance(2, c.Now())
	unmatched := Issuance(3, c.Now())
	unmatched.NotAfter = short.NotAfter
	Observe(t, s, short, state.Match{Watch: "example.com", Verdict: watch.Unreviewed})
	Observe(t, s, long, state.Match{Watch: "example.com", Verdict: watch.Unreviewed})
	Observe(t, s, unmatched)
	if _, err := s.Commit(&state.Commit{Source: "crtsh", IDs: []state.ProcessedID{
		{ID: 1, TBSSHA256: short.TBSSHA256, NotAfter: short.NotAfter},
		{ID: 2, TBSSHA256: long.TBSSHA256, NotAfter: long.NotAfter},
	}}); err != nil {
		t.Fatal(err)
	}
	c.Advance(30 * time.Hour)
	if n, err := s.Prune(); err != nil || n != 1 {
		t.Fatalf("prune within window = %d, %v; want only the unmatched one", n, err)
	}
	c.Advance(30 * time.Hour)
	if n, err := s.Prune(); err != nil || n != 1 {
		t.Fatalf("prune = %d, %v; want 1", n, err)
	}
	snap := s.Snapshot()
	if snap.Certificates != 1 {
		t.Errorf("certificates = %d, want 1", snap.Certificates)
	}
	if got := NewCertificates(snap, "example.com", "R11", "unreviewed"); got != 2 {
		t.Errorf("counter went back to %d after pruning", got)
	}
	if is, err := s.Issuance(short.TBSSHA256); err != nil || is != nil {
		t.Errorf("short-lived issuance not pruned (%v)", err)
	}
	if is, err := s.Issuance(long.TBSSHA256); err != nil || is == nil {
		t.Errorf("unexpired issuance pruned (%v)", err)
	}
	if _, seen, err := s.SeenID("crtsh", 1); err != nil || seen {
		t.Errorf("id of an expired certificate not pruned (%v)", err)
	}
	if _, seen, err := s.SeenID("crtsh", 2); err != nil || !seen {
		t.Errorf("id of a valid certificate pruned (%v)", err)
	}
	// A pruned issuance seen again after its grace is ignored, never
	// counted again.
	if fresh := Observe(t, s, short, state.Match{Watch: "example.com", Verdict: watch.Unreviewed}); len(fresh) != 0 {
		t.Error("a pruned issuance was counted again")
	}
}

func commit(t *testing.T, f Factory) {
	c := NewClock()
	s, _ := openWith(t, f, c, Unchanged(time.Hour, 100))
	defer s.Close()
	m := state.Match{Watch: "example.com", Verdict: watch.Unreviewed}
	res, err := s.Commit(&state.Commit{
		Source:       "log",
		Observations: []state.Observation{{Issuance: Issuance(1, c.Now()), Matches: []state.Match{m}}, {Issuance: Issuance(3, c.Now())}},
		LogPosition:  []byte("position"), Processed: 10, Malformed: 1,
		Cursor: []byte("cursor"),
		IDs:    []state.ProcessedID{{ID: 9000000001, TBSSHA256: [32]byte{7}, NotAfter: c.Now().Add(time.Hour)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || len(res[0].Fresh) != 1 || res[0].Stored == nil || res[0].Stored.FirstSeen.IsZero() ||
		res[1].Fresh != nil || res[1].Stored != nil || res[1].Err != nil {
		t.Fatalf("observed %+v", res)
	}
	if pos, err := s.LogPosition("log"); err != nil || string(pos) != "position" {
		t.Fatalf("position %q, %v", pos, err)
	}
	if pos, err := s.LogPosition("other"); err != nil || pos != nil {
		t.Fatalf("position of another log %q, %v", pos, err)
	}
	if cur, err := s.Cursor("log"); err != nil || string(cur) != "cursor" {
		t.Fatalf("cursor %q, %v", cur, err)
	}
	if tbs, seen, err := s.SeenID("log", 9000000001); err != nil || !seen || tbs != [32]byte{7} {
		t.Fatalf("id: %x %v %v", tbs, seen, err)
	}
	if _, seen, _ := s.SeenID("other", 9000000001); seen {
		t.Fatal("ids leak between sources")
	}
	snap := s.Snapshot()
	if p, mf := CounterValue(snap, state.CounterLogProcessed, "log"), CounterValue(snap, state.CounterLogMalformed, "log"); p != 10 || mf != 1 {
		t.Fatalf("processed %d, malformed %d", p, mf)
	}
	if snap.Certificates != 2 {
		t.Fatalf("certificates = %d", snap.Certificates)
	}
	// A watch added since: the stored issuance gets it (Known); a Known
	// observation of an issuance no longer stored does nothing.
	m2 := state.Match{Watch: "example.org", Verdict: watch.Unreviewed}
	res, err = s.Commit(&state.Commit{Source: "log", Observations: []state.Observation{
		{Issuance: &state.Issuance{TBSSHA256: Issuance(3, c.Now()).TBSSHA256}, Matches: []state.Match{m2}, Known: true},
		{Issuance: &state.Issuance{TBSSHA256: Issuance(4, c.Now()).TBSSHA256}, Matches: []state.Match{m2}, Known: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res[0].Fresh) != 1 || res[0].Stored == nil || res[0].Stored.Serial != fmt.Sprintf("%08x", 3) || res[1].Fresh != nil {
		t.Fatalf("known: %+v", res)
	}
	if is, _ := s.Issuance(Issuance(4, c.Now()).TBSSHA256); is != nil {
		t.Fatal("a known observation of an unknown issuance recorded it")
	}
	if got := NewCertificates(s.Snapshot(), "example.org", "R11", "unreviewed"); got != 1 {
		t.Fatalf("new_certificates{example.org} = %d", got)
	}
}

func parseErrors(t *testing.T, f Factory) {
	c := NewClock()
	s, _ := openWith(t, f, c, Unchanged(168*time.Hour, 1000))
	defer s.Close()
	count := func(w string) uint64 { return CounterValue(s.Snapshot(), state.CounterParseErrors, w) }
	m := state.Match{Watch: "example.com", Verdict: watch.Unreviewed}
	bad := Issuance(1, c.Now())
	bad.ParseError = "x509: cannot parse URI"
	Observe(t, s, bad, m, state.Match{Watch: "example.org", Verdict: watch.Unreviewed})
	Observe(t, s, bad, m)
	if count("example.com") != 1 || count("example.org") != 1 {
		t.Fatalf("parse errors %d, %d, want 1, 1", count("example.com"), count("example.org"))
	}
	pre := Issuance(2, c.Now())
	Observe(t, s, pre, m)
	gen, _ := s.RecentVersion()
	final := Issuance(2, c.Now())
	final.EmbeddedSCTs, final.ParseError = 2, "x509: malformed extension"
	Observe(t, s, final, m)
	Observe(t, s, final, m)
	if count("example.com") != 2 {
		t.Fatalf("parse errors %d, want 2", count("example.com"))
	}
	if g, _ := s.RecentVersion(); g == gen {
		t.Fatal("the recent series did not change")
	}
	check := func() {
		t.Helper()
		n := 0
		for _, r := range s.Snapshot().Recent {
			if r.ParseError != "" {
				n++
			}
			if r.TBSSHA256 == final.TBSSHA256 && r.EmbeddedSCTs != 2 {
				t.Errorf("SCTs %d", r.EmbeddedSCTs)
			}
		}
		if n != 3 {
			t.Fatalf("%d series with a parse error, want 3", n)
		}
	}
	check()
	if err := s.SetPolicy(Unchanged(168*time.Hour, 1000)); err != nil {
		t.Fatal(err)
	}
	check()
}

func maxIssuers(t *testing.T, f Factory) {
	c := NewClock()
	policy := Unchanged(time.Hour, 1000)
	policy.MaxIssuersPerWatch = 30
	s, reopen := openWith(t, f, c, policy)
	m := state.Match{Watch: "example.com", Verdict: watch.IssuerUnexpected}
	n := 0
	next := func(issuer int) *state.Issuance {
		is := Issuance(n, c.Now())
		n++
		is.Issuer = watch.Issuer{CN: fmt.Sprintf("CA %d", issuer), DN: fmt.Sprintf("CN=CA %d", issuer)}
		return is
	}
	for i := 0; i < 25; i++ {
		Observe(t, s, next(i), m)
	}
	// 6 more in one commit: the limit holds within a transaction too.
	var obs []state.Observation
	for i := 25; i < 31; i++ {
		obs = append(obs, state.Observation{Issuance: next(i), Matches: []state.Match{m}})
	}
	if _, err := s.Commit(&state.Commit{Source: "log", Observations: obs}); err != nil {
		t.Fatal(err)
	}
	Observe(t, s, next(1000), state.Match{Watch: "example.org", Verdict: watch.Unreviewed})
	Observe(t, s, next(3), m) // a known issuer keeps its series
	check := func(s Store) {
		t.Helper()
		snap := s.Snapshot()
		own := 0
		for _, c := range snap.Counters {
			if c.Name == state.CounterNewCertificates && c.Labels[0] == "example.com" && c.Labels[1] != state.IssuerOther {
				own++
			}
		}
		if own != 30 || NewCertificates(snap, "example.com", state.IssuerOther, "issuer_unexpected") != 1 {
			t.Fatalf("%d own issuers, other %d; want 30, 1", own, NewCertificates(snap, "example.com", state.IssuerOther, "issuer_unexpected"))
		}
		if NewCertificates(snap, "example.com", "CA 3", "issuer_unexpected") != 2 {
			t.Fatal("a known issuer lost its series")
		}
		if NewCertificates(snap, "example.org", "CA 1000", "unreviewed") != 1 {
			t.Fatal("another watch has its own budget")
		}
	}
	check(s)
	s.Close()
	s = reopen()
	defer s.Close()
	check(s)
	Observe(t, s, next(2000), m)
	if got := NewCertificates(s.Snapshot(), "example.com", state.IssuerOther, "issuer_unexpected"); got != 2 {
		t.Fatalf("after reopen: other = %d, want 2", got)
	}
}

// Certificates carry what their issuers put in them: NUL bytes and invalid
// UTF-8 are recorded and read back exactly.
func oddStrings(t *testing.T, f Factory) {
	c := NewClock()
	s, _ := openWith(t, f, c, Unchanged(time.Hour, 100))
	defer s.Close()
	is := Issuance(1, c.Now())
	is.SubjectCN = "nul\x00.example.com"
	is.DNSNames = []string{"bad\xff\xfe.example.com", "example.com"}
	is.Issuer.DN = "CN=\x00\xff"
	is.Serial = "\x00"
	if fresh := Observe(t, s, is, state.Match{Watch: "example.com", Verdict: watch.Unreviewed}); len(fresh) != 1 {
		t.Fatalf("fresh = %v", fresh)
	}
	got, err := s.Issuance(is.TBSSHA256)
	if err != nil || got == nil {
		t.Fatalf("%v, %v", got, err)
	}
	if got.SubjectCN != is.SubjectCN || got.DNSNames[0] != is.DNSNames[0] || got.Issuer.DN != is.Issuer.DN || got.Serial != is.Serial {
		t.Fatalf("read back %+v", got)
	}
}
