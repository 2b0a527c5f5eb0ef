package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/state"
)

type runner struct {
	cfg    spec
	source ctsource.Source
	health *health
	fenced func()        // the store refused a commit: the lease is lost
	delay  time.Duration // before the first poll
	cancel context.CancelFunc
	kicks  chan struct{}
	done   chan struct{}
}

func (r *runner) kick() {
	select {
	case r.kicks <- struct{}{}:
	default:
	}
}

func (r *runner) stop() {
	r.cancel()
	<-r.done
	r.source.Close()
}

// run polls every interval. After a failure the next poll comes sooner,
// backing off from 5s up to the interval: a source that recovers is polled
// again within one interval.
//
// A search source (ctsource.WatchSource) fails by watch: a watch that fails
// is retried on its own backoff between the polls (RetryWatches), while the
// other watches keep their interval, and the source itself backs off only
// when its API limits it (a *ctsource.PausedError, a 429: the limit is
// shared by every watch). Nothing is sent during such a pause, retries and
// kicks included, and the pause lasts at least the Retry-After given.
func (r *runner) run(ctx context.Context, env *ctsource.Env, interval time.Duration, logger *slog.Logger) {
	defer close(r.done)
	env.Logger = logger
	if r.delay > 0 {
		t := time.NewTimer(r.delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	// With a lease, nothing is sent once it is lost or may have lapsed.
	lost := func() bool { return env.Fence != nil && env.Fence() == nil }
	if env.Fence != nil {
		lapsed := fmt.Errorf("%s: %w, or its time ran out since its last renewal", r.cfg.Name, state.ErrFenced)
		ctx = ctsource.WithLease(ctx, func() error {
			if lost() {
				return lapsed
			}
			return nil
		})
	}
	ws, _ := r.source.(ctsource.WatchSource)
	failures := 0 // polls in a row that failed as a whole, or were paused
	next := time.Now()
	var resume time.Time // nothing is sent before, after a pause
	for {
		retry, ok := r.wait(ctx, ws, next, resume)
		if !ok {
			return
		}
		start := time.Now()
		var err error
		if retry {
			err = ws.RetryWatches(ctx, env)
		} else {
			err = r.source.Poll(ctx, env)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, state.ErrFenced) || err != nil && lost() {
			// Another replica holds the source now, or may: nothing more
			// of ours is sent or committed for it until a lease round
			// says it is still ours. (A library between the source and
			// its Transport may not keep the error's chain: the lease is
			// asked again.)
			logger.Warn("the lease on the source was lost or lapsed: it stops here until a lease round gives it back", "err", err)
			if r.fenced != nil {
				r.fenced()
			}
			return
		}
		r.health.observe(err == nil, start, time.Since(start))
		retryAfter, paused := ctsource.Paused(err)
		switch {
		case err != nil && (ws == nil || paused):
			failures++
			wait := max(ctsource.Backoff(failures, min(5*time.Second, interval), interval), retryAfter)
			resume = time.Now().Add(wait)
			if !retry || resume.After(next) {
				next = resume
			}
			logger.Warn("poll failed", "err", err, "failures", failures, "retry_in", wait.Round(time.Millisecond))
		default:
			if failures > 0 {
				logger.Info("source recovered", "after_failures", failures)
			}
			failures = 0
			if !retry {
				next = time.Now().Add(interval)
			}
			if err != nil {
				// Some watches fail; each is retried on its own.
				logger.Warn("poll failed for some watches", "err", err, "next_retry", time.Until(ws.NextRetry()).Round(time.Millisecond))
			} else {
				logger.Debug("poll done", "duration", time.Since(start), "retry", retry)
			}
		}
	}
}

// wait waits for the next poll at next, or for a search source's next
// retry of a failing watch when that comes first, or for a kick (the
// watches changed), which polls at once; never before resume. It reports
// whether what comes is a retry, and false when ctx ends.
func (r *runner) wait(ctx context.Context, ws ctsource.WatchSource, next, resume time.Time) (retry, ok bool) {
	for {
		at := next
		retry = false
		if ws != nil {
			if t := ws.NextRetry(); !t.IsZero() && t.Before(next) {
				at, retry = t, true
			}
		}
		if at.Before(resume) {
			at = resume
			retry = retry && resume.Before(next)
		}
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, false
		case <-t.C:
			return retry, true
		case <-r.kicks:
			t.Stop()
			// Polled at once, unless the source is paused.
			next = time.Now()
		}
	}
}
