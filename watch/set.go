package watch

import (
	"net/netip"
	"slices"
	"strings"
)

// Set is the configured watches, indexed so that matching a name costs a few
// map lookups per label whatever the number of watches.
type Set struct {
	watches  []Watch
	byDomain map[string][]int // watch domain → watches
	byParent map[string][]int // parent of watch domain → watches (for wildcard SANs)
	ipWatch  []int
	byName   map[string]int
	// suffixes holds every label suffix of every watch domain ("com",
	// "example.com"): a name whose suffix is not in it concerns no watch,
	// so most names are dismissed by their last label alone.
	suffixes map[string]struct{}
	// labelNames is every label name of every watch, sorted: each watch
	// has each (empty when it does not set it).
	labelNames []string
}

// NewSet indexes watches. Their order is kept: Match returns indices into it.
func NewSet(watches []Watch) *Set {
	s := &Set{
		watches:  watches,
		byDomain: make(map[string][]int, len(watches)),
		byParent: make(map[string][]int, len(watches)),
		byName:   make(map[string]int, len(watches)),
		suffixes: make(map[string]struct{}, 2*len(watches)),
	}
	names := map[string]struct{}{}
	for i := range watches {
		w := &watches[i]
		for k := range w.Labels {
			if _, ok := names[k]; !ok {
				names[k] = struct{}{}
				s.labelNames = append(s.labelNames, k)
			}
		}
		s.byName[w.Domain] = i
		if w.IsIP() {
			s.ipWatch = append(s.ipWatch, i)
			continue
		}
		s.byDomain[w.Domain] = append(s.byDomain[w.Domain], i)
		for d := w.Domain; ; {
			s.suffixes[d] = struct{}{}
			_, rest, ok := strings.Cut(d, ".")
			if !ok {
				break
			}
			d = rest
		}
		if _, parent, ok := strings.Cut(w.Domain, "."); ok {
			s.byParent[parent] = append(s.byParent[parent], i)
		}
	}
	slices.Sort(s.labelNames)
	return s
}

// LabelNames returns the label names the watches set, sorted: every watch
// has every one of them, empty when it does not set it.
func (s *Set) LabelNames() []string { return s.labelNames }

// Watches returns the watches in configuration order.
func (s *Set) Watches() []Watch { return s.watches }

// Get returns the watch on a (normalized) domain.
func (s *Set) Get(domain string) (*Watch, bool) {
	i, ok := s.byName[domain]
	if !ok {
		return nil, false
	}
	return &s.watches[i], true
}

// Verdict judges an issuance for the watch on a (normalized) domain by its
// current policy; false when no such watch is configured (the state's
// Policy.Verdict).
func (s *Set) Verdict(domain string, c Candidate) (Verdict, bool) {
	w, ok := s.Get(domain)
	if !ok {
		return 0, false
	}
	return w.Verdict(c), true
}

// Len is the number of watches.
func (s *Set) Len() int { return len(s.watches) }

// Match appends to dst the indices of the watches that any of the normalized
// names or IP addresses concerns, each once, in ascending order.
func (s *Set) Match(dst []int, names []string, ips []netip.Addr) []int {
	start := len(dst)
	for _, n := range names {
		dst = s.matchName(dst, start, n)
	}
	for _, a := range ips {
		dst = s.matchIP(dst, start, a)
	}
	slices.Sort(dst[start:])
	return dst
}

func (s *Set) matchIP(dst []int, start int, a netip.Addr) []int {
	for _, i := range s.ipWatch {
		if s.watches[i].MatchesIP(a) {
			dst = addIndex(dst, start, i)
		}
	}
	return dst
}

func (s *Set) matchName(dst []int, start int, n string) []int {
	if len(s.ipWatch) > 0 {
		if a, err := netip.ParseAddr(n); err == nil {
			return s.matchIP(dst, start, a)
		}
	}
	// From the last label up: a.b.example.com is looked up as "com",
	// "example.com", "b.example.com"… until a suffix no watch has.
	for end := len(n); ; {
		dot := strings.LastIndexByte(n[:end], '.')
		suffix := n[dot+1:]
		if _, ok := s.suffixes[suffix]; !ok {
			break
		}
		for _, i := range s.byDomain[suffix] {
			if s.watches[i].MatchesName(n) {
				dst = addIndex(dst, start, i)
			}
		}
		if dot < 0 {
			break
		}
		end = dot
	}
	if rest, ok := strings.CutPrefix(n, "*."); ok {
		for _, i := range s.byParent[rest] {
			dst = addIndex(dst, start, i)
		}
	}
	return dst
}

func addIndex(dst []int, start, i int) []int {
	if slices.Contains(dst[start:], i) {
		return dst
	}
	return append(dst, i)
}
