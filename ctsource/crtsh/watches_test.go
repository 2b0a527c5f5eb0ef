package crtsh

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// One watch that crt.sh fails on (a 502, or a search that hangs past the
// timeout: crt.sh does both for a big domain) does not keep the two others
// from being searched at every poll and their new issuances recorded. The
// failing watch is retried on its own, with a backoff that grows up to the
// interval, and once crt.sh answers it again its issuances are recorded
// too.
func TestCrtshWatchIsolation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason string
		fail   func(h *harness)
		heal   func(h *harness)
	}{
		{"502", ctsource.ReasonHTTP5xx,
			func(h *harness) { h.fake.FaultFor(crtshfake.KindSearch, "example.com", 1<<30, crtshfake.Fault502) },
			func(h *harness) { h.fake.FaultFor(crtshfake.KindSearch, "example.com", 0, crtshfake.FaultNone) }},
		{"hang", ctsource.ReasonTimeout,
			func(h *harness) {
				// Long enough for the other searches on a loaded machine.
				h.src.http.Timeout = time.Second // a healthy answer under -race on a loaded machine stays well inside it
				h.fake.SetDelayFor("example.com", time.Hour)
			},
			func(h *harness) { h.fake.SetDelayFor("example.com", 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "example.com", "example.org", "example.net")
			tc.fail(h)
			requests := sourcetest.RecordSearches(h.src.http)
			var failing []*testpki.Issued
			base, interval := h.src.watches.Base, h.src.watches.Interval
			failures := 0
			var delays []time.Duration
			for poll := 1; poll <= 5; poll++ {
				failing = append(failing, h.issue(fmt.Sprintf("p%d.example.com", poll)))
				org := h.issue(fmt.Sprintf("p%d.example.org", poll))
				net := h.issue(fmt.Sprintf("p%d.example.net", poll))
				mark := requests.Mark()
				err := h.poll()
				if err == nil || !strings.Contains(err.Error(), "watch example.com") || ctsource.ReasonOf(err) != tc.reason {
					t.Fatalf("poll %d = %v, want the %s failure of example.com", poll, err, tc.reason)
				}
				if strings.Contains(err.Error(), "watch example.org") || strings.Contains(err.Error(), "watch example.net") {
					t.Fatalf("poll %d: the healthy watches reported failing: %v", poll, err)
				}
				searched := requests.Counts(mark)
				if searched["example.org"] != 1 || searched["example.net"] != 1 {
					t.Fatalf("poll %d: searches %v; want example.org and example.net searched once each", poll, searched)
				}
				for _, iss := range []*testpki.Issued{org, net} {
					if h.Recorded(iss) == nil {
						t.Fatalf("poll %d: a new issuance of a healthy watch was not recorded", poll)
					}
				}
				for _, w := range []string{"example.org", "example.net"} {
					if at, ok := h.LastSearched(w); !ok || !at.Equal(h.Clock.Now()) {
						t.Fatalf("poll %d: last search of %s = %v (%v), want now", poll, w, at, ok)
					}
				}
				// Searched at the first poll only: afterwards its retries
				// come when due, between the polls.
				want := map[bool]int{true: 1, false: 0}[poll == 1] // one attempt: no retry inside the request
				if searched["example.com"] != want {
					t.Fatalf("poll %d: example.com asked for %d times, want %d", poll, searched["example.com"], want)
				}
				if poll == 1 {
					failures++
				}

				// Its retry: when due, and nothing else is searched.
				next := h.src.NextRetry()
				d := next.Sub(h.Clock.Now())
				if lo, hi := sourcetest.BackoffWindow(failures, base, interval); d < lo || d > hi {
					t.Fatalf("after %d failures, retried in %v; want within [%v, %v]", failures, d, lo, hi)
				}
				delays = append(delays, d)
				h.Clock.Advance(d - time.Millisecond)
				mark = requests.Mark()
				if err := h.src.RetryWatches(context.Background(), h.Env); err == nil {
					t.Fatal("a retry pass before the retry is due succeeded")
				}
				if got := requests.Since(mark); len(got) != 0 {
					t.Fatalf("a retry pass before the retry is due searched %v", got)
				}
				h.Clock.Advance(time.Millisecond)
				if err := h.src.RetryWatches(context.Background(), h.Env); ctsource.ReasonOf(err) != tc.reason {
					t.Fatalf("retry pass = %v, want the %s failure", err, tc.reason)
				}
				failures++
				if got := requests.Counts(mark); got["example.com"] != 1 || len(got) != 1 {
					t.Fatalf("the retry pass searched %v; want example.com alone, once", got)
				}
				for _, iss := range failing {
					if h.Recorded(iss) != nil {
						t.Fatal("an issuance of the failing watch recorded while crt.sh fails on it")
					}
				}
				if _, ok := h.LastSearched("example.com"); ok {
					t.Fatal("a last successful search of the failing watch")
				}
			}
			if delays[len(delays)-1] <= delays[0] {
				t.Fatalf("the backoff does not grow: %v", delays)
			}
			// Every failed attempt is counted, under its reason (a slow
			// search of another watch may add a timeout).
			if got, want := h.ErrorCount(tc.reason), requests.Counts(0)["example.com"]; got < want || tc.reason == ctsource.ReasonHTTP5xx && got != want {
				t.Fatalf("%d %s errors counted, want one per attempt: %d", got, tc.reason, want)
			}

			// crt.sh answers again: the watch's next retry finds everything
			// issued meanwhile, and the source is whole again.
			tc.heal(h)
			h.Clock.Advance(h.src.NextRetry().Sub(h.Clock.Now()))
			if err := h.poll(); err != nil {
				t.Fatalf("poll after recovery: %v", err)
			}
			for _, iss := range failing {
				if is := h.Recorded(iss); is == nil || is.Watches[0].Watch != "example.com" {
					t.Fatalf("after recovery, an issuance of example.com is not recorded: %+v", is)
				}
			}
			if at, ok := h.LastSearched("example.com"); !ok || !at.Equal(h.Clock.Now()) {
				t.Fatalf("last search of example.com = %v (%v), want now", at, ok)
			}
			if next := h.src.NextRetry(); !next.IsZero() {
				t.Fatalf("a retry is still scheduled at %v", next)
			}
		})
	}
}

// A watch removed while it fails is forgotten: its retry is not kept, and
// the source is whole without it.
func TestCrtshFailingWatchRemoved(t *testing.T) {
	h := newHarness(t, "example.com", "example.org")
	h.fake.FaultFor(crtshfake.KindSearch, "example.com", 1<<30, crtshfake.Fault502)
	if err := h.poll(); err == nil {
		t.Fatal("poll succeeded")
	}
	h.SetWatches("example.org")
	if err := h.poll(); err != nil {
		t.Fatalf("poll without the failing watch: %v", err)
	}
	if next := h.src.NextRetry(); !next.IsZero() {
		t.Fatalf("the removed watch's retry is kept (%v)", next)
	}
}

// A 429 is the API's limit, shared by every watch: the poll ends, the
// caller is told to pause the whole source (for the Retry-After given), and
// no watch is held responsible for it.
func TestCrtsh429PausesTheSource(t *testing.T) {
	h := newHarness(t, "example.com", "example.org", "example.net")
	h.src.http.Attempts = 1
	requests := sourcetest.RecordSearches(h.src.http)
	h.fake.Fault(crtshfake.KindSearch, 1, crtshfake.Fault429RetryAfter)
	err := h.poll()
	after, paused := ctsource.Paused(err)
	if !paused || after != time.Second || ctsource.ReasonOf(err) != ctsource.ReasonHTTP429 {
		t.Fatalf("poll = %v: paused %v for %v; want a pause of 1s (Retry-After)", err, paused, after)
	}
	if got := requests.Since(0); len(got) != 1 {
		t.Fatalf("searched %v; want nothing after the 429", got)
	}
	if next := h.src.NextRetry(); !next.IsZero() {
		t.Fatalf("a watch is retried on its own (%v) after a 429", next)
	}
	if h.ErrorCount(ctsource.ReasonHTTP429) != 1 {
		t.Fatalf("%d 429s counted, want 1", h.ErrorCount(ctsource.ReasonHTTP429))
	}
	mark := requests.Mark()
	if err := h.poll(); err != nil {
		t.Fatalf("the next poll: %v", err)
	}
	if got := requests.Counts(mark); len(got) != 3 {
		t.Fatalf("after the pause, searched %v; want every watch", got)
	}
}

// Every poll cut short by a 429 at its second search still searches one
// watch, and the order rotates: no watch is starved, each is searched in
// turn, and every watch's issuance is recorded.
func TestCrtshRotationUnder429(t *testing.T) {
	domains := []string{"example.com", "example.org", "example.net", "example.edu"}
	h := newHarness(t, domains...)
	h.src.http.Attempts = 1
	requests := sourcetest.RecordSearches(h.src.http)
	var issued []*testpki.Issued
	for _, d := range domains {
		issued = append(issued, h.issue("www."+d))
	}
	var firsts []string
	for poll := 1; poll <= 3*len(domains); poll++ {
		h.fake.Fault(crtshfake.KindAny, 0, crtshfake.FaultNone)
		h.fake.FaultAfter(crtshfake.KindSearch, 1, 1, crtshfake.Fault429)
		mark := requests.Mark()
		if _, paused := ctsource.Paused(h.poll()); !paused {
			t.Fatalf("poll %d was not cut short by the 429", poll)
		}
		searched := requests.Since(mark)
		if len(searched) != 2 {
			t.Fatalf("poll %d searched %v; want one search, then the 429", poll, searched)
		}
		firsts = append(firsts, searched[0])
	}
	for i, d := range domains {
		if n := strings.Count(strings.Join(firsts, " ")+" ", d+" "); n != 3 {
			t.Errorf("%s searched first (and only) in %d of %d polls, want 3: %v", d, n, len(firsts), firsts)
		}
		if h.Recorded(issued[i]) == nil {
			t.Errorf("the issuance of %s was never recorded", d)
		}
	}
	// In turn: each window of len(domains) polls searches every watch.
	for i := 0; i+len(domains) <= len(firsts); i++ {
		w := slices.Clone(firsts[i : i+len(domains)])
		slices.Sort(w)
		if len(slices.Compact(w)) != len(domains) {
			t.Fatalf("polls %d to %d searched %v: not every watch in turn", i+1, i+len(domains), firsts[i:i+len(domains)])
		}
	}
}
