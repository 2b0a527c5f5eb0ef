package ctsource

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ct-exporter/ct_exporter/watch"
)

// WatchSource is a search source (crt.sh, Cert Spotter): it searches each
// watch on its own, so that one watch the service fails on (a 502 or a
// statement timeout for one big domain) never keeps the others from being
// searched. Poll searches every watch, except those failing whose retry is
// not due yet; RetryWatches searches only the failing watches whose retry
// is due, so that a failing watch is retried on its own backoff without
// searching the others again before their interval.
type WatchSource interface {
	Source
	RetryWatches(ctx context.Context, env *Env) error
	// NextRetry is when the earliest failing watch is due again; zero when
	// no watch is failing.
	NextRetry() time.Time
}

// PausedError is a 429 that ended a search source's poll: the API's limit
// is shared by every watch, so the whole source waits (the caller backs
// off, for at least RetryAfter), and no watch is held responsible.
type PausedError struct {
	RetryAfter time.Duration // from the last Retry-After, 0 when none
	Err        error
}

func (e *PausedError) Error() string { return "rate limited, the source pauses: " + e.Err.Error() }

func (e *PausedError) Unwrap() error { return e.Err }

// Paused reports whether err says the whole source must pause, and for at
// least how long.
func Paused(err error) (time.Duration, bool) {
	var p *PausedError
	if errors.As(err, &p) {
		return p.RetryAfter, true
	}
	return 0, false
}

// WatchSchedule is a search source's schedule by watch: which watches are
// failing, when each is tried again, and where the next poll starts.
//
// The order rotates: each poll starts with the watch after the one the
// previous poll started with, so that when polls are cut short (a 429
// pauses the source at its second search, a restart, a reload) no watch is
// always last and never reached. Failing watches take their turn like the
// others: putting them first would let one watch that always fails take the
// only search a rate-limited poll gets, every time.
type WatchSchedule struct {
	Interval time.Duration // the cap of a watch's backoff
	Base     time.Duration // its first delay
	Now      func() time.Time

	mu    sync.Mutex
	runs  map[string]*watchRun // failing watches, by domain
	start string               // the watch the previous poll started with
	at    int                  // its index then, for when it is gone
}

// watchRun is a failing watch.
type watchRun struct {
	failures int
	retryAt  time.Time
	err      error
}

func NewWatchSchedule(interval time.Duration) *WatchSchedule {
	return &WatchSchedule{
		Interval: interval,
		// As the monitor's backoff after a failed poll.
		Base: min(5*time.Second, interval),
		Now:  time.Now,
		runs: map[string]*watchRun{},
	}
}

// NextRetry implements WatchSource.
func (s *WatchSchedule) NextRetry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for _, r := range s.runs {
		if next.IsZero() || r.retryAt.Before(next) {
			next = r.retryAt
		}
	}
	return next
}

// order returns the watches a pass searches, in order: for a poll, every
// searchable watch from the one after the previous poll's first; for a
// retry pass, the failing ones. Watches no longer configured are forgotten.
func (s *WatchSchedule) order(all []watch.Watch, searchable func(*watch.Watch) bool, retries bool) []watch.Watch {
	ws := make([]watch.Watch, 0, len(all))
	present := make(map[string]bool, len(all))
	for i := range all {
		if searchable(&all[i]) {
			ws = append(ws, all[i])
			present[all[i].Domain] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.runs {
		if !present[d] {
			delete(s.runs, d)
		}
	}
	if retries {
		return slices.DeleteFunc(ws, func(w watch.Watch) bool { return s.runs[w.Domain] == nil })
	}
	if len(ws) == 0 {
		return ws
	}
	i := slices.IndexFunc(ws, func(w watch.Watch) bool { return w.Domain == s.start })
	if i >= 0 {
		i++
	} else {
		// The previous first watch is gone: start where it was.
		i = s.at
	}
	i %= len(ws)
	s.start, s.at = ws[i].Domain, i
	return append(ws[i:], ws[:i]...)
}

// due reports whether a watch is searched now: it is not failing, or its
// retry is due.
func (s *WatchSchedule) due(domain string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[domain]
	return r == nil || !s.Now().Before(r.retryAt)
}

// succeeded records a successful search, and returns how many times in a
// row the watch had failed before it.
func (s *WatchSchedule) succeeded(domain string) (recovered int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.runs[domain]; r != nil {
		recovered = r.failures
		delete(s.runs, domain)
	}
	return recovered
}

// failed records a failed search and returns when the watch is retried.
func (s *WatchSchedule) failed(domain string, err error) (failures int, retryIn time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[domain]
	if r == nil {
		r = &watchRun{}
		s.runs[domain] = r
	}
	r.failures++
	r.err = err
	retryIn = Backoff(r.failures, s.Base, s.Interval)
	if ReasonOf(err) == ReasonTruncated {
		// crt.sh cuts the same search the same way: asking again sooner
		// than the interval only downloads the same 10,000 rows again.
		retryIn = s.Interval
	}
	r.retryAt = s.Now().Add(retryIn)
	return r.failures, retryIn
}

// failing returns the failures of the watches that are failing, each with
// when it is tried again; nil when none is.
func (s *WatchSchedule) failing(source string, ws []watch.Watch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	var errs []error
	for _, w := range ws {
		if r := s.runs[w.Domain]; r != nil {
			errs = append(errs, fmt.Errorf("%s: watch %s (failed %d times, retried in %v): %w",
				source, w.Domain, r.failures, max(r.retryAt.Sub(now), 0).Round(time.Millisecond), r.err))
		}
	}
	return errors.Join(errs...)
}

// Pass searches the watches of a poll (retries false) or of a retry pass.
// A watch that fails is counted (the transport and the source count why as
// it happens), logged the first time, and retried with backoff on its own;
// the next watch is searched all the same. Only a 429 ends the pass early:
// the limit is the API's, shared by every watch. It returns nil when no
// watch is failing, else each failing watch's last failure (the watches
// skipped because their retry is not due included, so that the source is
// not reported healthy while one of its watches is not searched), led by
// the 429 that paused the source if one did.
func (s *WatchSchedule) Pass(ctx context.Context, env *Env, source string, retries bool,
	searchable func(*watch.Watch) bool, search func(*watch.Watch) error) error {
	all := env.Recorder.Policy().Watches()
	for _, w := range s.order(all, searchable, retries) {
		if !s.due(w.Domain) {
			continue
		}
		err := search(&w)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			if n := s.succeeded(w.Domain); n > 0 {
				env.Logger.Info("watch searched again after failures", "watch", w.Domain, "after_failures", n)
			}
			if env.WatchSearched != nil {
				env.WatchSearched(w.Domain, s.Now())
			}
			continue
		}
		if ReasonOf(err) == ReasonHTTP429 {
			var e *Error
			errors.As(err, &e)
			pause := &PausedError{RetryAfter: e.RetryAfter, Err: fmt.Errorf("%s: watch %s: %w", source, w.Domain, err)}
			return errors.Join(pause, s.failing(source, all))
		}
		if n, retryIn := s.failed(w.Domain, err); n == 1 {
			env.Logger.Warn("searching a watch failed; it is retried on its own, and the other watches are searched as usual",
				"watch", w.Domain, "err", err, "retry_in", retryIn.Round(time.Millisecond))
		}
	}
	return s.failing(source, all)
}
