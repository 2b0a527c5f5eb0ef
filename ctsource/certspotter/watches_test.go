package certspotter

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// The same isolation for Cert Spotter: a domain the API fails on (a 502,
// or a query that hangs past the timeout) is retried alone; the others are
// queried at every poll and their issuances recorded; after it recovers its
// issuances are recorded too. A 429 pauses the whole source.
func TestCertspotterWatchIsolation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason string
		fail   func(h *csHarness)
		heal   func(h *csHarness)
	}{
		{"502", ctsource.ReasonHTTP5xx,
			func(h *csHarness) {
				h.api.FailFor("example.com", 1000, http.StatusBadGateway, "", "text/html", "<html>502 Bad Gateway</html>")
			},
			func(h *csHarness) { h.api.FailFor("example.com", 0, 0, "", "", "") }},
		{"hang", ctsource.ReasonTimeout,
			func(h *csHarness) {
				h.cs.http.Timeout = time.Second // a healthy answer under -race on a loaded machine stays well inside it
				h.api.SetDelayFor("example.com", time.Hour)
			},
			func(h *csHarness) { h.api.SetDelayFor("example.com", 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCSHarness(t, "", "example.com", "example.org", "example.net")
			tc.fail(h)
			requests := sourcetest.RecordSearches(h.cs.http)
			var failing []*testpki.Issued
			for poll := 1; poll <= 3; poll++ {
				failing = append(failing, h.issueAPI(fmt.Sprintf("p%d.example.com", poll)))
				org := h.issueAPI(fmt.Sprintf("p%d.example.org", poll))
				net := h.issueAPI(fmt.Sprintf("p%d.example.net", poll))
				mark := requests.Mark()
				err := h.pollCS()
				if ctsource.ReasonOf(err) != tc.reason || !strings.Contains(err.Error(), "watch example.com") {
					t.Fatalf("poll %d = %v, want the %s failure of example.com", poll, err, tc.reason)
				}
				// One page with the new issuance, one empty page.
				q := requests.Counts(mark)
				if q["example.org"] != 2 || q["example.net"] != 2 {
					t.Fatalf("poll %d queried %v; want example.org and example.net", poll, q)
				}
				if h.Recorded(org) == nil || h.Recorded(net) == nil {
					t.Fatalf("poll %d: a new issuance of a healthy domain was not recorded", poll)
				}
				want := map[bool]int{true: 1, false: 0}[poll == 1]
				if q["example.com"] != want {
					t.Fatalf("poll %d: example.com asked for %d times, want %d", poll, q["example.com"], want)
				}
				// Its retry, alone.
				h.Clock.Advance(h.cs.NextRetry().Sub(h.Clock.Now()))
				mark = requests.Mark()
				if err := h.cs.RetryWatches(context.Background(), h.Env); ctsource.ReasonOf(err) != tc.reason {
					t.Fatalf("retry pass = %v", err)
				}
				if q := requests.Counts(mark); q["example.com"] != 1 || len(q) != 1 {
					t.Fatalf("the retry pass queried %v; want example.com alone, once", q)
				}
			}
			if _, ok := h.LastSearched("example.com"); ok {
				t.Fatal("a last successful search of the failing domain")
			}
			tc.heal(h)
			h.Clock.Advance(h.cs.NextRetry().Sub(h.Clock.Now()))
			if err := h.pollCS(); err != nil {
				t.Fatalf("poll after recovery: %v", err)
			}
			for _, iss := range failing {
				if h.Recorded(iss) == nil {
					t.Fatal("after recovery, an issuance of example.com is not recorded")
				}
			}
			if at, ok := h.LastSearched("example.com"); !ok || !at.Equal(h.Clock.Now()) {
				t.Fatalf("last search of example.com = %v (%v), want now", at, ok)
			}
		})
	}

	t.Run("429", func(t *testing.T) {
		h := newCSHarness(t, "", "example.com", "example.org", "example.net")
		h.cs.http.Attempts = 1
		h.api.Fail(1, http.StatusTooManyRequests, "7", "application/json", `{"code":"rate_limited"}`)
		err := h.pollCS()
		if after, paused := ctsource.Paused(err); !paused || after != 7*time.Second {
			t.Fatalf("poll = %v; want a pause of 7s (Retry-After)", err)
		}
		if n := len(h.api.Requests()); n != 1 {
			t.Fatalf("%d queries; want none after the 429", n)
		}
		if !h.cs.NextRetry().IsZero() {
			t.Fatal("a watch is retried on its own after a 429")
		}
	})
}
