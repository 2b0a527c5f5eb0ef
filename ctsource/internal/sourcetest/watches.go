package sourcetest

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
)

// sent records the searches a source sends, by the identity (crt.sh) or
// domain (Cert Spotter) they ask for, in order, on the client's side: the
// fakes' records can miss an attempt that timed out before it arrived, or
// record it a moment after the client has its answer.
type sent struct {
	base  http.RoundTripper
	mu    sync.Mutex
	order []string
}

func RecordSearches(t *ctsource.Transport) *sent {
	s := &sent{base: t.Base}
	t.Base = s
	return s
}

func (s *sent) RoundTrip(r *http.Request) (*http.Response, error) {
	q := r.URL.Query()
	if key := q.Get("Identity") + q.Get("domain"); key != "" {
		s.mu.Lock()
		s.order = append(s.order, key)
		s.mu.Unlock()
	}
	return s.base.RoundTrip(r)
}

// Mark is where the searches sent from now on start.
func (s *sent) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.order)
}

// Since returns the searches sent since mark, in order.
func (s *sent) Since(mark int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order[mark:])
}

// Counts counts the searches sent since mark, by identity or domain.
func (s *sent) Counts(mark int) map[string]int {
	n := map[string]int{}
	for _, k := range s.Since(mark) {
		n[k]++
	}
	return n
}

// BackoffWindow is where Backoff puts the delay after the nth failure: half
// fixed, half random, from base doubling up to the interval.
func BackoffWindow(n int, base, ceiling time.Duration) (lo, hi time.Duration) {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d / 2, d
}
