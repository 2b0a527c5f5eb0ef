package state

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Mirror is the in-memory copy of what the metrics show: the persisted
// counters, the number of issuances, and the recent series. A store keeps
// it up to date (Apply, Rebuild) so that a scrape reads no database. Every
// store shares it, so that the series are the same whatever the store.
type Mirror struct {
	now func() time.Time

	mu          sync.RWMutex // guards what follows
	policy      Policy
	refreshed   bool
	counters    map[string]uint64
	issuers     Issuers // of the counters' keys: see IssuerLabel
	count       uint64
	exposed     map[string][]Recent // watch → recent series
	dropped     map[string]uint64
	writeErrors uint64
	readErrors  uint64
	// generation counts changes to the recent series, so that their
	// exposition can be cached between changes.
	generation uint64
}

// NewMirror returns an empty mirror with the default policy; now is
// time.Now when nil.
func NewMirror(now func() time.Time) *Mirror {
	if now == nil {
		now = time.Now
	}
	return &Mirror{
		now:      now,
		counters: map[string]uint64{},
		issuers:  Issuers{},
		exposed:  map[string][]Recent{},
		dropped:  map[string]uint64{},
		policy:   Policy{RecentWindow: 168 * time.Hour, SeriesLimit: 1000, MaxIssuersPerWatch: DefaultMaxIssuersPerWatch},
	}
}

// Now is the mirror's clock.
func (s *Mirror) Now() time.Time { return s.now() }

// Policy is the policy last installed by Rebuild.
func (s *Mirror) Policy() Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.policy
}

// Change is what a committed transaction changes in the mirror.
type Change struct {
	Counters    map[string]uint64 // counter key (CounterKey) → delta
	SetCounters map[string]uint64 // counter key → value
	CountDelta  int64
	SetCount    *uint64
	Recent      []Recent // new series, in the order they were found
	SCTs        map[[32]byte]int
	ParseErrors map[[32]byte]string
}

// Apply applies a committed change.
func (s *Mirror) Apply(c Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, d := range c.Counters {
		s.setCounter(k, s.counters[k]+d)
	}
	for k, v := range c.SetCounters {
		s.setCounter(k, v)
	}
	s.count = uint64(int64(s.count) + c.CountDelta)
	if c.SetCount != nil {
		s.count = *c.SetCount
	}
	if len(c.Recent) > 0 || len(c.SCTs) > 0 || len(c.ParseErrors) > 0 {
		s.generation++
	}
	// New series first: a final certificate recorded in the same
	// transaction as its precertificate updates the series just added.
	for _, r := range c.Recent {
		s.expose(r)
	}
	for tbs, n := range c.SCTs {
		s.eachExposed(tbs, func(r *Recent) { r.EmbeddedSCTs = n })
	}
	for tbs, e := range c.ParseErrors {
		s.eachExposed(tbs, func(r *Recent) { r.ParseError = ParseErrorLabel(e) })
	}
}

// setCounter sets a counter, under mu. A ct_new_certificates_total key
// seen for the first time adds its issuer to its watch's issuers.
func (s *Mirror) setCounter(k string, v uint64) {
	if _, ok := s.counters[k]; !ok {
		if name, labels := ParseCounterKey(k); name == CounterNewCertificates && len(labels) == 3 && labels[1] != IssuerOther {
			s.issuers.Add(labels[0], labels[1])
		}
	}
	s.counters[k] = v
}

// IssuerLabel is the issuer label of ct_new_certificates_total for a new
// issuance of watch w, given the issuers a transaction added for it
// before: the issuer's own, unless the watch has reached the policy's
// MaxIssuersPerWatch without it (IssuerOther). isNew says that the issuer
// is counted for the watch for the first time. The issuers counted so far
// are the mirror's, an index of its counters' keys: a store's commit
// decides on them without scanning the counters.
func (s *Mirror) IssuerLabel(p Policy, w string, added Issuers, issuer string) (label string, isNew bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return issuerLabel(p, s.issuers[w], added[w], issuer)
}

// Issuers are issuer labels (IssuerOther aside) by watch.
type Issuers map[string]map[string]struct{}

// Add adds issuer to w's.
func (is Issuers) Add(w, issuer string) {
	set := is[w]
	if set == nil {
		set = map[string]struct{}{}
		is[w] = set
	}
	set[issuer] = struct{}{}
}

// AddReadError counts a failed read of a shared state (PostgreSQL) that
// keeps the mirror from following the other replicas' commits.
func (s *Mirror) AddReadError() {
	s.mu.Lock()
	s.readErrors++
	s.mu.Unlock()
}

// AddWriteError counts a failed write.
func (s *Mirror) AddWriteError() {
	s.mu.Lock()
	s.writeErrors++
	s.mu.Unlock()
}

// eachExposed calls f with every exposed series of an issuance.
func (s *Mirror) eachExposed(tbs [32]byte, f func(*Recent)) {
	for _, items := range s.exposed {
		for i := range items {
			if items[i].TBSSHA256 == tbs {
				f(&items[i])
			}
		}
	}
}

// expose adds a new recent series for its watch, evicting under the cap the
// least urgent, oldest series first — so that 1000 authorized certificates
// never push an unexpected one out.
func (s *Mirror) expose(r Recent) {
	horizon := s.now().Add(-s.policy.RecentWindow)
	items := slices.DeleteFunc(s.exposed[r.Watch], func(x Recent) bool { return x.FirstSeen.Before(horizon) })
	if len(items) < s.policy.SeriesLimit {
		s.exposed[r.Watch] = append(items, r)
		return
	}
	s.dropped[r.Watch]++
	if len(items) == 0 {
		s.exposed[r.Watch] = items
		return
	}
	victim := 0
	for i := range items {
		if lessUrgent(items[i], items[victim]) {
			victim = i
		}
	}
	if lessUrgent(items[victim], r) {
		items[victim] = r
	}
	s.exposed[r.Watch] = items
}

func lessUrgent(a, b Recent) bool {
	if a.Verdict != b.Verdict {
		return a.Verdict < b.Verdict
	}
	return a.FirstSeen.Before(b.FirstSeen)
}

// Rebuild installs a policy and the recent series judged by it (those of
// the issuances first seen within its window), applying its cap.
func (s *Mirror) Rebuild(p Policy, byWatch map[string][]Recent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policy = p
	for w, items := range byWatch {
		if len(items) > p.SeriesLimit {
			slices.SortFunc(items, func(a, b Recent) int {
				switch {
				case lessUrgent(b, a):
					return -1
				case lessUrgent(a, b):
					return 1
				}
				return 0
			})
			if !s.refreshed {
				// Counted at start only: a reload re-selects the same
				// issuances and must not count them again.
				s.dropped[w] += uint64(len(items) - p.SeriesLimit)
			}
			items = items[:p.SeriesLimit]
		}
		byWatch[w] = items
	}
	s.exposed = byWatch
	s.refreshed = true
	s.generation++
}

// Snapshot copies the in-memory mirror.
func (s *Mirror) Snapshot() Snapshot { return s.snapshot(true) }

// SnapshotWithoutRecent is Snapshot without the recent series, for callers
// that cache those (see RecentVersion).
func (s *Mirror) SnapshotWithoutRecent() Snapshot { return s.snapshot(false) }

// RecentVersion identifies the recent series Snapshot would return: they
// are the same while the generation is and until the time returned, when
// the oldest leaves the recent window.
func (s *Mirror) RecentVersion() (generation uint64, until time.Time) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	horizon := s.now().Add(-s.policy.RecentWindow)
	for _, items := range s.exposed {
		for _, r := range items {
			if r.FirstSeen.Before(horizon) {
				continue
			}
			if t := r.FirstSeen.Add(s.policy.RecentWindow); until.IsZero() || t.Before(until) {
				until = t
			}
		}
	}
	return s.generation, until
}

func (s *Mirror) snapshot(withRecent bool) Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	horizon := s.now().Add(-s.policy.RecentWindow)
	snap := Snapshot{
		Counters:     make([]Counter, 0, len(s.counters)),
		Dropped:      make(map[string]uint64, len(s.dropped)),
		Certificates: s.count,
		WriteErrors:  s.writeErrors,
		ReadErrors:   s.readErrors,
	}
	for k, v := range s.counters {
		name, labels := ParseCounterKey(k)
		snap.Counters = append(snap.Counters, Counter{Name: name, Labels: labels, Value: v})
	}
	for w, d := range s.dropped {
		snap.Dropped[w] = d
	}
	if !withRecent {
		return snap
	}
	for _, items := range s.exposed {
		for _, r := range items {
			if !r.FirstSeen.Before(horizon) {
				snap.Recent = append(snap.Recent, r)
			}
		}
	}
	slices.SortFunc(snap.Recent, func(a, b Recent) int {
		if c := strings.Compare(a.Watch, b.Watch); c != 0 {
			return c
		}
		return a.FirstSeen.Compare(b.FirstSeen)
	})
	return snap
}
