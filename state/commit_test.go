package state

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/watch"
)

// A commit records its issuances and moves its source's position, cursor
// and ids together; an issuance the state cannot record is left out alone;
// a watch added since an issuance was recorded is added to the stored one,
// and to nothing when it is gone.
func TestCommit(t *testing.T) {
	c := newClock()
	const limit = 2048
	s, err := Open(filepath.Join(t.TempDir(), "s.state"), Options{Now: c.Now, MaxValueSize: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPolicy(unchanged(time.Hour, 100)); err != nil {
		t.Fatal(err)
	}
	m := Match{"example.com", watch.Unreviewed}
	huge := issuance(2, c.Now())
	for i := 0; len(EncodeIssuance(huge)) <= limit; i++ {
		huge.DNSNames = append(huge.DNSNames, fmt.Sprintf("name%d.example.com", i))
	}
	res, err := s.Commit(&Commit{
		Source:       "log",
		Observations: []Observation{{Issuance: issuance(1, c.Now()), Matches: []Match{m}}, {Issuance: huge, Matches: []Match{m}}, {Issuance: issuance(3, c.Now())}},
		LogPosition:  []byte("position"), Processed: 10, Malformed: 1,
		Cursor: []byte("cursor"),
		IDs:    []ProcessedID{{ID: 7, TBSSHA256: [32]byte{7}, NotAfter: c.Now().Add(time.Hour)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || len(res[0].Fresh) != 1 || res[0].Stored == nil || res[0].Stored.FirstSeen.IsZero() ||
		!errors.Is(res[1].Err, ErrUnrecordable) || res[1].Fresh != nil || res[2].Fresh != nil || res[2].Stored != nil || res[2].Err != nil {
		t.Fatalf("observed %+v", res)
	}
	pos, err := s.LogPosition("log")
	if err != nil || string(pos) != "position" {
		t.Fatalf("position %q, %v", pos, err)
	}
	cur, err := s.Cursor("log")
	if err != nil || string(cur) != "cursor" {
		t.Fatalf("cursor %q, %v", cur, err)
	}
	if tbs, seen, err := s.SeenID("log", 7); err != nil || !seen || tbs != [32]byte{7} {
		t.Fatalf("id 7: %x %v %v", tbs, seen, err)
	}
	snap := s.Snapshot()
	var processed, malformed uint64
	for _, c := range snap.Counters {
		switch c.Name {
		case CounterLogProcessed:
			processed = c.Value
		case CounterLogMalformed:
			malformed = c.Value
		}
	}
	// Issuances 1 and 3 (which concerns no watch) are stored, the huge one not.
	if snap.Certificates != 2 || counter(snap, "example.com", "R11", "unreviewed") != 1 || processed != 10 || malformed != 1 {
		t.Fatalf("%d issuances, counted %d, processed %d, malformed %d", snap.Certificates, counter(snap, "example.com", "R11", "unreviewed"), processed, malformed)
	}

	// Known: the stored issuance gets the new watch; a gone one gets nothing.
	org := Match{"example.org", watch.Unreviewed}
	known, err := s.Issuance(issuance(1, c.Now()).TBSSHA256)
	if err != nil || known == nil {
		t.Fatalf("issuance 1: %v, %v", known, err)
	}
	res, err = s.Commit(&Commit{Source: "crtsh", Observations: []Observation{
		{Issuance: &Issuance{TBSSHA256: known.TBSSHA256}, Matches: []Match{m, org}, Known: true},
		{Issuance: issuance(4, c.Now()), Matches: []Match{org}, Known: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res[0].Fresh) != 1 || res[0].Fresh[0] != org || len(res[0].Stored.Watches) != 2 || res[0].Stored.Serial != known.Serial || res[1].Fresh != nil {
		t.Fatalf("known: %+v", res)
	}
	if is, err := s.Issuance(issuance(4, c.Now()).TBSSHA256); err != nil || is != nil {
		t.Fatalf("an issuance observed as known was stored: %+v, %v", is, err)
	}
	if pos, _ := s.LogPosition("crtsh"); pos != nil {
		t.Fatalf("a commit without a position stored one: %q", pos)
	}
}
