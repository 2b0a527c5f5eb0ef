package state

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/ct-exporter/ct_exporter/watch"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)} }

func issuance(i int, now time.Time) *Issuance {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], uint64(i))
	is := &Issuance{
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
	return is
}

// unchanged is a policy under which every watch is configured and keeps the
// verdict it gave when it first saw the issuance.
func unchanged(window time.Duration, limit int) Policy {
	return Policy{RecentWindow: window, SeriesLimit: limit, Verdict: func(w string, is *Issuance) (watch.Verdict, bool) {
		return is.Watches[is.watchIndex(w)].Verdict, true
	}}
}

func openTest(t *testing.T, path string, c *clock) *Store {
	t.Helper()
	s, err := Open(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy(unchanged(168*time.Hour, 1000)); err != nil {
		t.Fatal(err)
	}
	return s
}

func observe(t *testing.T, s *Store, is *Issuance, matches ...Match) []Match {
	t.Helper()
	var fresh []Match
	err := s.Update(func(tx *Tx) error {
		var err error
		fresh, err = tx.Observe(is, matches)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return fresh
}

func counter(snap Snapshot, labels ...string) uint64 {
	for _, c := range snap.Counters {
		if c.Name == CounterNewCertificates && strings.Join(c.Labels, "|") == strings.Join(labels, "|") {
			return c.Value
		}
	}
	return 0
}

func TestPrune(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "s.state")
	s, err := Open(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPolicy(unchanged(48*time.Hour, 10)); err != nil {
		t.Fatal(err)
	}
	short := issuance(1, c.Now())
	short.NotAfter = c.Now().Add(time.Hour)
	long := issuance(2, c.Now())
	unmatched := issuance(3, c.Now())
	unmatched.NotAfter = short.NotAfter
	observe(t, s, short, Match{"example.com", watch.Unreviewed})
	observe(t, s, long, Match{"example.com", watch.Unreviewed})
	observe(t, s, unmatched)
	if err := s.Update(func(tx *Tx) error {
		if err := tx.MarkID("crtsh", 1, short.TBSSHA256, short.NotAfter); err != nil {
			return err
		}
		return tx.MarkID("crtsh", 2, long.TBSSHA256, long.NotAfter)
	}); err != nil {
		t.Fatal(err)
	}

	// Expired, but still within the recent window: kept.
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
	if got := counter(snap, "example.com", "R11", "unreviewed"); got != 2 {
		t.Errorf("counter went back to %d after pruning", got)
	}
	err = s.View(func(tx *Tx) error {
		if is, _ := tx.Issuance(short.TBSSHA256); is != nil {
			t.Error("short-lived issuance not pruned")
		}
		if is, _ := tx.Issuance(long.TBSSHA256); is == nil {
			t.Error("unexpired issuance pruned")
		}
		if _, ok := tx.SeenID("crtsh", 1); ok {
			t.Error("id of an expired certificate not pruned")
		}
		if _, ok := tx.SeenID("crtsh", 2); !ok {
			t.Error("id of a valid certificate pruned")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, path+"", s)
}

func TestCursorsIDsAndPositions(t *testing.T) {
	c := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.state"), c)
	defer s.Close()
	tbs := sha256.Sum256([]byte("x"))
	err := s.Update(func(tx *Tx) error {
		if err := tx.SetCursor("crtsh", []byte("42")); err != nil {
			return err
		}
		if err := tx.SetLogPosition("argon", []byte{1, 2}); err != nil {
			return err
		}
		return tx.MarkID("crtsh", 9000000001, tbs, c.Now().Add(time.Hour))
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		if got := string(tx.Cursor("crtsh")); got != "42" {
			t.Errorf("cursor = %q", got)
		}
		if got := tx.LogPosition("argon"); len(got) != 2 {
			t.Errorf("log position = %v", got)
		}
		if got, ok := tx.SeenID("crtsh", 9000000001); !ok || got != tbs {
			t.Errorf("SeenID = %x, %v", got, ok)
		}
		if _, ok := tx.SeenID("other", 9000000001); ok {
			t.Error("ids leak between sources")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFailedUpdateChangesNothing(t *testing.T) {
	c := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.state"), c)
	defer s.Close()
	boom := fmt.Errorf("boom")
	err := s.Update(func(tx *Tx) error {
		if _, err := tx.Observe(issuance(1, c.Now()), []Match{{"example.com", watch.Unreviewed}}); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Update = %v, want the caller's error", err)
	}
	snap := s.Snapshot()
	if snap.Certificates != 0 || len(snap.Recent) != 0 || len(snap.Counters) != 0 || snap.WriteErrors != 0 {
		t.Fatalf("a rolled-back transaction left effects: %+v", snap)
	}
}

func TestDamagedFilesAreRefusedAndKept(t *testing.T) {
	dir := t.TempDir()
	wrongVersion := filepath.Join(dir, "future.state")
	s, err := Open(wrongVersion, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bbolt.Open(wrongVersion, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyVersion, u64(99)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for name, content := range map[string][]byte{
		"empty.state":   {},
		"garbage.state": []byte(strings.Repeat("not a database\n", 1000)),
		"future.state":  nil,
	} {
		path := filepath.Join(dir, name)
		if content != nil {
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		before, _ := os.ReadFile(path)
		_, err := Open(path, Options{})
		if err == nil {
			t.Errorf("%s: opened", name)
			continue
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it aside") {
			t.Errorf("%s: error does not name the file and what to do: %v", name, err)
		}
		after, _ := os.ReadFile(path)
		if string(before) != string(after) {
			t.Errorf("%s: the damaged file was modified", name)
		}
	}
}

func TestLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.state")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Open = %v, want a lock error", err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	now := time.Now().UTC()
	is := issuance(7, now)
	is.IPs = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	is.OtherCNs = []string{"first.example.com", "\xff"}
	is.ParseError = "x509: malformed certificate policies"
	is.FirstSeen = now
	is.Watches = []WatchMatch{{Watch: "example.com", FirstSeen: now, Verdict: watch.IssuerAllowed}}
	enc := EncodeIssuance(is)
	got, err := DecodeIssuance(is.TBSSHA256[:], enc)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(is) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, is)
	}
	for i := range enc {
		if _, err := DecodeIssuance(is.TBSSHA256[:], enc[:i]); err == nil {
			t.Fatalf("truncated record (%d of %d bytes) decoded", i, len(enc))
		}
	}
}

// Records written before OtherCNs and ParseError existed are still read.
func TestRecordVersion1IsRead(t *testing.T) {
	now := time.Now().UTC()
	is := issuance(8, now)
	is.FirstSeen = now
	is.Watches = []WatchMatch{{Watch: "example.com", FirstSeen: now, Verdict: watch.Unreviewed}}
	enc := EncodeIssuance(is)
	// Version 2 ends with an empty OtherCNs count and an empty ParseError.
	if enc[0] != 2 || enc[len(enc)-2] != 0 || enc[len(enc)-1] != 0 {
		t.Fatalf("unexpected version 2 encoding %x", enc)
	}
	v1 := append([]byte{1}, enc[1:len(enc)-2]...)
	got, err := DecodeIssuance(is.TBSSHA256[:], v1)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(is) {
		t.Fatalf("version 1:\n got %+v\nwant %+v", got, is)
	}
	if _, err := DecodeIssuance(is.TBSSHA256[:], append([]byte{3}, enc[1:]...)); err == nil {
		t.Fatal("a record of a newer version was read")
	}
}

// An issuance with a certificate the strict parser refuses is counted per
// watch, once, whether the first certificate seen is that one or a later
// one; its series carry the error.
func TestParseErrorsCounted(t *testing.T) {
	c := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s"), c)
	parseErrors := func(w string) uint64 {
		for _, ctr := range s.Snapshot().Counters {
			if ctr.Name == CounterParseErrors && len(ctr.Labels) == 1 && ctr.Labels[0] == w {
				return ctr.Value
			}
		}
		return 0
	}
	bad := issuance(1, c.Now())
	bad.ParseError = "x509: cannot parse URI"
	observe(t, s, bad, Match{Watch: "example.com", Verdict: watch.Unreviewed}, Match{Watch: "example.org", Verdict: watch.Unreviewed})
	observe(t, s, bad, Match{Watch: "example.com", Verdict: watch.Unreviewed})
	if parseErrors("example.com") != 1 || parseErrors("example.org") != 1 {
		t.Fatalf("parse errors %d, %d, want 1, 1", parseErrors("example.com"), parseErrors("example.org"))
	}
	// A precertificate that parses, then its final certificate that does not.
	pre := issuance(2, c.Now())
	observe(t, s, pre, Match{Watch: "example.com", Verdict: watch.Unreviewed})
	if parseErrors("example.com") != 1 {
		t.Fatalf("a certificate that parses was counted")
	}
	gen, _ := s.RecentVersion()
	final := issuance(2, c.Now())
	final.EmbeddedSCTs, final.ParseError = 2, "x509: malformed extension"
	observe(t, s, final, Match{Watch: "example.com", Verdict: watch.Unreviewed})
	observe(t, s, final, Match{Watch: "example.com", Verdict: watch.Unreviewed})
	if parseErrors("example.com") != 2 {
		t.Fatalf("parse errors %d, want 2 once the final certificate did not parse", parseErrors("example.com"))
	}
	if g, _ := s.RecentVersion(); g == gen {
		t.Fatal("the recent series did not change")
	}
	for _, r := range s.Snapshot().Recent {
		want := ""
		switch r.TBSSHA256 {
		case bad.TBSSHA256:
			want = bad.ParseError
		case final.TBSSHA256:
			want = final.ParseError
		}
		if r.ParseError != want {
			t.Errorf("series %s/%x: parse error %q, want %q", r.Watch, r.TBSSHA256[:4], r.ParseError, want)
		}
	}
	// After a restart the series are rebuilt from the file, errors included.
	if err := s.SetPolicy(unchanged(168*time.Hour, 1000)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range s.Snapshot().Recent {
		if r.ParseError != "" {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d series with a parse error after SetPolicy, want 3", n)
	}
}

func TestNamesLabelIsBounded(t *testing.T) {
	is := &Issuance{}
	for i := 0; i < 100; i++ {
		is.DNSNames = append(is.DNSNames, fmt.Sprintf("name-%03d.example.com", i))
	}
	got := namesLabel(is)
	if len(got) > MaxDNSNamesLabel || !strings.HasPrefix(got, "name-000.example.com,name-001") || !strings.HasSuffix(got, " more") {
		t.Fatalf("namesLabel = %q (%d bytes)", got, len(got))
	}
	is.DNSNames = []string{"<script>.example.com"}
	is.IPs = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	if got := namesLabel(is); got != "<script>.example.com,192.0.2.1" {
		t.Fatalf("namesLabel = %q", got)
	}
}

// checkConsistent verifies the invariants that a crash must never break:
// the stored count equals the issuances, every index entry points to an
// issuance, and every counted match is indexed.
func checkConsistent(t *testing.T, path string, s *Store) {
	t.Helper()
	err := s.db.View(func(tx *bbolt.Tx) error {
		n := 0
		matches := 0
		err := tx.Bucket(bucketIssuances).ForEach(func(k, v []byte) error {
			is, err := DecodeIssuance(k, v)
			if err != nil {
				return err
			}
			n++
			for _, w := range is.Watches {
				matches++
				if tx.Bucket(bucketFirstSeen).Get(firstSeenKey(w.FirstSeen, is.TBSSHA256, w.Watch)) == nil {
					t.Errorf("match %x/%s is not indexed", k[:4], w.Watch)
				}
			}
			if tx.Bucket(bucketExpiry).Get(expiryKey(is.NotAfter, is.TBSSHA256)) == nil {
				t.Errorf("issuance %x has no expiry entry", k[:4])
			}
			return nil
		})
		if err != nil {
			return err
		}
		stored, _ := readU64(tx.Bucket(bucketMeta).Get(keyCount))
		if stored != uint64(n) {
			t.Errorf("%s: stored count %d, %d issuances", path, stored, n)
		}
		if got := tx.Bucket(bucketFirstSeen).Stats().KeyN; got != matches {
			t.Errorf("%s: %d first_seen entries, %d matches", path, got, matches)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A truncated state file (a partial copy, a disk that filled up during a
// restore) is refused with a message; bbolt alone would panic or fault.
func TestTruncatedFileIsRefused(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "s.state")
	s := openTest(t, path, c)
	for i := 0; i < 2000; i++ {
		observe(t, s, issuance(i, c.Now()), Match{"example.com", watch.Unreviewed})
	}
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{len(data) / 2, len(data) / 8, 5000, 100} {
		p := filepath.Join(t.TempDir(), "cut.state")
		if err := os.WriteFile(p, data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(p, Options{})
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "move it aside") {
			t.Errorf("cut to %d of %d bytes: %v", cut, len(data), err)
		}
	}
	// A directory where the file should be.
	if _, err := Open(t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
	// The intact file still opens.
	if s, err := Open(path, Options{}); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
}
