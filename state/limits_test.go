package state

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/watch"
)

// An issuance whose record or keys bbolt would refuse is refused whole
// before anything is written, and the transaction goes on: the issuances
// before and after it in the same transaction are recorded and counted.
func TestObserveRefusesUnrecordableWhole(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "s.state")
	const limit = 2048
	s, err := Open(path, Options{Now: c.Now, MaxValueSize: limit, MaxKeySize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPolicy(unchanged(time.Hour, 100)); err != nil {
		t.Fatal(err)
	}
	m := Match{"example.com", watch.IssuerUnexpected}
	huge := issuance(2, c.Now())
	for i := 0; len(EncodeIssuance(huge)) <= limit; i++ {
		huge.DNSNames = append(huge.DNSNames, fmt.Sprintf("name%d.example.com", i))
	}
	// A first-seen key over the (lowered) key limit: a watch name of 70
	// bytes after the 40 bytes of time and tbs_sha256.
	longWatch := Match{strings.Repeat("a", 60) + ".example.com", watch.Unreviewed}
	err = s.Update(func(tx *Tx) error {
		if _, err := tx.Observe(issuance(1, c.Now()), []Match{m}); err != nil {
			return err
		}
		fresh, err := tx.Observe(huge, []Match{m})
		if !errors.Is(err, ErrUnrecordable) || fresh != nil || !strings.Contains(err.Error(), "record is") {
			t.Errorf("huge record: fresh %v, err %v; want ErrUnrecordable", fresh, err)
		}
		// The key of the second watch is refused: the first watch's
		// keys, checked before it, must not be written either.
		fresh, err = tx.Observe(issuance(4, c.Now()), []Match{m, longWatch})
		if !errors.Is(err, ErrUnrecordable) || fresh != nil || !strings.Contains(err.Error(), "first-seen key") {
			t.Errorf("long key: fresh %v, err %v; want ErrUnrecordable", fresh, err)
		}
		_, err = tx.Observe(issuance(3, c.Now()), []Match{m})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if snap.Certificates != 2 || counter(snap, "example.com", "R11", "issuer_unexpected") != 2 || len(snap.Recent) != 2 {
		t.Fatalf("certificates %d, counted %d, recent %d; want the 2 ordinary ones",
			snap.Certificates, counter(snap, "example.com", "R11", "issuer_unexpected"), len(snap.Recent))
	}
	err = s.View(func(tx *Tx) error {
		for _, is := range []*Issuance{huge, issuance(4, c.Now())} {
			if got, err := tx.Issuance(is.TBSSHA256); got != nil || err != nil {
				t.Errorf("refused issuance %x stored: %v %v", is.TBSSHA256[:4], got, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing of them in the indexes either (a stray first_seen or expiry
	// entry would name an issuance that does not exist).
	checkConsistent(t, path, s)
	if err := s.SetPolicy(unchanged(time.Hour, 100)); err != nil {
		t.Fatalf("the recent series cannot be rebuilt: %v", err)
	}

	// A known issuance that a new watch would make too large keeps its
	// record as it was.
	known := issuance(5, c.Now())
	known.DNSNames = huge.DNSNames
	for {
		withWatch := *known
		withWatch.Watches = []WatchMatch{{Watch: m.Watch, FirstSeen: c.Now()}}
		if len(EncodeIssuance(&withWatch)) <= limit-30 {
			break
		}
		known.DNSNames = known.DNSNames[:len(known.DNSNames)-1]
	}
	observe(t, s, known, m)
	err = s.Update(func(tx *Tx) error {
		// 40 bytes more in the record; its first-seen key (92 bytes) fits.
		_, err := tx.Observe(known, []Match{m, {strings.Repeat("b", 40) + ".example.com", watch.Unreviewed}})
		if !errors.Is(err, ErrUnrecordable) {
			t.Errorf("growing record: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		is, err := tx.Issuance(known.TBSSHA256)
		if err != nil || is == nil || len(is.Watches) != 1 {
			t.Errorf("known issuance changed: %+v %v", is, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, path, s)
}

// A store failure is not ErrUnrecordable: Observe in a read-only
// transaction fails with bbolt's error.
func TestObserveStoreFailureIsNotUnrecordable(t *testing.T) {
	c := newClock()
	s := openTest(t, filepath.Join(t.TempDir(), "s.state"), c)
	defer s.Close()
	err := s.View(func(tx *Tx) error {
		_, err := tx.Observe(issuance(1, c.Now()), []Match{{"example.com", watch.Unreviewed}})
		return err
	})
	if err == nil || errors.Is(err, ErrUnrecordable) {
		t.Fatalf("observe in a read-only transaction: %v", err)
	}
}

func issuerOf(i int) watch.Issuer {
	return watch.Issuer{CN: fmt.Sprintf("CA %d", i), DN: fmt.Sprintf("CN=CA %d", i)}
}

// issuerSeries returns the issuer label values of ct_new_certificates_total
// for a watch, with their counts.
func issuerSeries(snap Snapshot, w string) map[string]uint64 {
	got := map[string]uint64{}
	for _, c := range snap.Counters {
		if c.Name == CounterNewCertificates && c.Labels[0] == w {
			got[c.Labels[1]] += c.Value
		}
	}
	return got
}

// Beyond max_issuers_per_watch, a watch's further issuers are counted as
// "other"; the issuers already counted keep their series, across restarts.
func TestMaxIssuersPerWatch(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "s.state")
	policy := unchanged(time.Hour, 1000)
	policy.MaxIssuersPerWatch = 300
	open := func() *Store {
		s, err := Open(path, Options{Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetPolicy(policy); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	m := Match{"example.com", watch.IssuerUnexpected}
	n := 0
	add := func(s *Store, issuer watch.Issuer, matches ...Match) {
		t.Helper()
		is := issuance(n, c.Now())
		n++
		is.Issuer = issuer
		observe(t, s, is, matches...)
	}
	// 250 issuers one transaction each, then 51 in one transaction: the
	// limit holds within a transaction too.
	for i := 0; i < 250; i++ {
		add(s, issuerOf(i), m)
	}
	err := s.Update(func(tx *Tx) error {
		for i := 250; i < 301; i++ {
			is := issuance(n, c.Now())
			n++
			is.Issuer = issuerOf(i)
			if _, err := tx.Observe(is, []Match{m}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another watch has its own budget.
	add(s, issuerOf(1000), Match{"example.org", watch.Unreviewed})
	check := func(s *Store, own int, other uint64) {
		t.Helper()
		got := issuerSeries(s.Snapshot(), "example.com")
		if len(got) != own+1 || got[IssuerOther] != other {
			t.Fatalf("%d issuer series (want %d and other), other = %d (want %d)", len(got), own+1, got[IssuerOther], other)
		}
		for issuer := range got {
			if issuer != IssuerOther && len(issuer) > watch.MaxLabel {
				t.Fatalf("issuer label of %d bytes", len(issuer))
			}
		}
		if got := issuerSeries(s.Snapshot(), "example.org"); len(got) != 1 || got["CA 1000"] != 1 {
			t.Fatalf("example.org: %v", got)
		}
	}
	check(s, 300, 1)
	if len(s.Snapshot().Recent) != 302 {
		t.Fatalf("%d recent series: the first-seen series keep their own issuer", len(s.Snapshot().Recent))
	}
	for _, r := range s.Snapshot().Recent {
		if r.Issuer == IssuerOther {
			t.Fatal("a first-seen series has issuer other")
		}
	}

	// After a restart, the count of issuers comes from the counters: a new
	// issuer is other, a known one keeps its series.
	s.Close()
	s = open()
	defer func() { s.Close() }()
	add(s, issuerOf(301), m)
	add(s, issuerOf(7), m)
	check(s, 300, 2)
	if got := issuerSeries(s.Snapshot(), "example.com")["CA 7"]; got != 2 {
		t.Fatalf("CA 7 counted %d, want 2 in its own series", got)
	}

	// A lower limit keeps the series there are; a higher one gives the
	// next issuers their own.
	policy.MaxIssuersPerWatch = 10
	if err := s.SetPolicy(policy); err != nil {
		t.Fatal(err)
	}
	add(s, issuerOf(8), m)
	add(s, issuerOf(302), m)
	check(s, 300, 3)
	policy.MaxIssuersPerWatch = 301
	if err := s.SetPolicy(policy); err != nil {
		t.Fatal(err)
	}
	add(s, issuerOf(303), m)
	add(s, issuerOf(304), m)
	check(s, 301, 4)
}

// Concurrent transactions never let a watch exceed the limit: Update
// serializes writers, and the issuers counted are applied at commit.
func TestMaxIssuersPerWatchConcurrent(t *testing.T) {
	c := newClock()
	s, err := Open(filepath.Join(t.TempDir(), "s.state"), Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	policy := unchanged(time.Hour, 1000)
	policy.MaxIssuersPerWatch = 50
	if err := s.SetPolicy(policy); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				n := g*1000 + i
				is := issuance(n, c.Now())
				is.Issuer = issuerOf(n)
				if err := s.Update(func(tx *Tx) error {
					_, err := tx.Observe(is, []Match{{"example.com", watch.Unreviewed}})
					return err
				}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := issuerSeries(s.Snapshot(), "example.com")
	if len(got) != 51 || got[IssuerOther] != 160-50 {
		t.Fatalf("%d series, other = %d; want 50 issuers and 110 other", len(got), got[IssuerOther])
	}
}

// A certificate valid until 9999 (RFC 5280's "no well-defined expiration")
// expires last: Unix nanoseconds wrapped it to a date long past, so that it
// was pruned once out of the recent window and then counted again.
func TestFarFutureNotAfter(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "s.state")
	s, err := Open(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPolicy(unchanged(time.Hour, 10)); err != nil {
		t.Fatal(err)
	}
	is := issuance(1, c.Now())
	is.NotAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	m := Match{"example.com", watch.Unreviewed}
	observe(t, s, is, m)
	c.Advance(48 * time.Hour)
	if n, err := s.Prune(); err != nil || n != 0 {
		t.Fatalf("prune = %d, %v: an unexpired issuance was pruned", n, err)
	}
	if fresh := observe(t, s, is, m); len(fresh) != 0 {
		t.Fatal("counted again")
	}
	err = s.View(func(tx *Tx) error {
		got, err := tx.Issuance(is.TBSSHA256)
		if err != nil || got == nil || got.NotAfter.Year() < 2262 {
			t.Errorf("stored %+v, %v: want a NotAfter saturated at 2262", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, path, s)
}
