package crtsh

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/watch"
)

type harness struct {
	*sourcetest.Harness
	fake *crtshfake.Server
	src  *Source
}

func newHarness(t *testing.T, domains ...string) *harness {
	t.Helper()
	h := &harness{Harness: sourcetest.NewHarness(t, domains...), fake: crtshfake.New()}
	t.Cleanup(h.fake.Close)
	var err error
	h.src, err = New("crtsh", h.fake.URL, time.Minute, 5*time.Second, 0, h.CountError)
	if err != nil {
		t.Fatal(err)
	}
	h.src.http.BackoffBase = 10 * time.Millisecond
	h.src.watches.Now = h.Clock.Now
	return h
}

// issue makes an issuance and lets crt.sh ingest its precertificate and
// final certificate, as it does from the logs.
func (h *harness) issue(sans ...string) *testpki.Issued {
	h.T.Helper()
	iss, err := h.CA.Issue(testpki.Leaf{CN: sans[0], DNSNames: sans, SCTs: 2})
	if err != nil {
		h.T.Fatal(err)
	}
	h.fake.Add(iss.Precert)
	h.fake.Add(iss.Final)
	return iss
}

func (h *harness) poll() error {
	return h.src.Poll(context.Background(), h.Env)
}

func (h *harness) requests() (searches, downloads int) {
	for _, r := range h.fake.Requests() {
		switch r.Kind {
		case crtshfake.KindSearch:
			searches++
		case crtshfake.KindDownload:
			downloads++
		}
	}
	return
}

func TestCrtshRecordsOnceAndFiltersDecoys(t *testing.T) {
	h := newHarness(t, "example.com", "example.org")
	iss := h.issue("www.example.com", "example.com")
	h.issue("notexample.com")
	h.issue("example.com.evil.net")

	if err := h.poll(); err != nil {
		t.Fatal(err)
	}
	searches, downloads := h.requests()
	if searches != 2 || downloads != 2 {
		t.Fatalf("first poll: %d searches, %d downloads; want 2 and 2 (precert and final, decoys not downloaded)", searches, downloads)
	}
	snap := h.Store.Snapshot()
	if snap.Certificates != 1 || h.NewCertificates() != 1 || len(snap.Recent) != 1 {
		t.Fatalf("after the first poll: %d issuances, %d counted, %d recent; want 1", snap.Certificates, h.NewCertificates(), len(snap.Recent))
	}
	pre, err := cert.Parse(iss.Precert)
	if err != nil {
		t.Fatal(err)
	}
	r := snap.Recent[0]
	if r.TBSSHA256 != pre.TBSSHA256 || r.EmbeddedSCTs != 2 || r.Verdict != watch.Unreviewed || r.Watch != "example.com" {
		t.Fatalf("recent = %+v", r)
	}

	h.fake.ResetRequests()
	if err := h.poll(); err != nil {
		t.Fatal(err)
	}
	if searches, downloads := h.requests(); searches != 2 || downloads != 0 {
		t.Fatalf("second poll: %d searches, %d downloads; want 2 and 0", searches, downloads)
	}
	if h.NewCertificates() != 1 {
		t.Fatalf("counted again: %d", h.NewCertificates())
	}
}

// A watch added after a certificate was downloaded counts it without a
// second download.
func TestCrtshNewWatchUsesKnownCertificates(t *testing.T) {
	h := newHarness(t, "example.com")
	h.issue("api.shop.example.com")
	if err := h.poll(); err != nil {
		t.Fatal(err)
	}
	h.SetWatches("example.com", "shop.example.com")
	h.fake.ResetRequests()
	if err := h.poll(); err != nil {
		t.Fatal(err)
	}
	if _, downloads := h.requests(); downloads != 0 {
		t.Fatalf("%d downloads of known certificates", downloads)
	}
	watches := map[string]bool{}
	for _, r := range h.Store.Snapshot().Recent {
		watches[r.Watch] = true
	}
	if !watches["example.com"] || !watches["shop.example.com"] || h.NewCertificates() != 2 {
		t.Fatalf("recent watches %v, %d counted; want both watches, 2", watches, h.NewCertificates())
	}
}

// The figures for the note: requests for 3 watches over 10 polls, with new
// certificates arriving between polls.
func TestCrtshRequestsPerPoll(t *testing.T) {
	h := newHarness(t, "example.com", "example.org", "example.net")
	var lines []string
	totalNew := 0
	for poll := 1; poll <= 10; poll++ {
		newIssuances := poll % 3 // 1, 2, 0, 1, ...
		for i := 0; i < newIssuances; i++ {
			h.issue(fmt.Sprintf("host%d-%d.example.org", poll, i))
		}
		totalNew += newIssuances
		h.fake.ResetRequests()
		if err := h.poll(); err != nil {
			t.Fatal(err)
		}
		searches, downloads := h.requests()
		if searches != 3 || downloads != 2*newIssuances {
			t.Errorf("poll %d: %d searches, %d downloads; want 3 and %d", poll, searches, downloads, 2*newIssuances)
		}
		lines = append(lines, fmt.Sprintf("poll %2d: %d new issuances (%d crt.sh ids), %d searches, %d downloads", poll, newIssuances, 2*newIssuances, searches, downloads))
	}
	if got := h.NewCertificates(); got != uint64(totalNew) {
		t.Errorf("counted %d, issued %d", got, totalNew)
	}
	t.Logf("3 watches, 10 polls:\n%s", strings.Join(lines, "\n"))
}

func TestCrtshFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  crtshfake.Fault
		kind   crtshfake.RequestKind
		n      int
		reason string
		fails  bool // the poll fails (after retries, or at once for non-transient faults)
	}{
		{"429 retried", crtshfake.Fault429, crtshfake.KindSearch, 2, ctsource.ReasonHTTP429, false},
		// A search is not retried inside the poll: the watch is, on its
		// own schedule (see TestCrtshWatchIsolation).
		{"502 on a search", crtshfake.Fault502, crtshfake.KindSearch, 1, ctsource.ReasonHTTP5xx, true},
		{"503 retried", crtshfake.Fault503, crtshfake.KindDownload, 1, ctsource.ReasonHTTP5xx, false},
		{"429 persistent", crtshfake.Fault429, crtshfake.KindAny, 100, ctsource.ReasonHTTP429, true},
		{"HTML with 200", crtshfake.FaultHTML200, crtshfake.KindSearch, 1, ctsource.ReasonBadResponse, true},
		{"truncated JSON", crtshfake.FaultTruncatedJSON, crtshfake.KindSearch, 1, ctsource.ReasonBadResponse, true},
		{"garbage", crtshfake.FaultGarbage, crtshfake.KindSearch, 1, ctsource.ReasonBadResponse, true},
		{"garbage PEM", crtshfake.FaultGarbage, crtshfake.KindDownload, 1, ctsource.ReasonBadResponse, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "example.com")
			h.issue("www.example.com")
			h.fake.Fault(tc.kind, tc.n, tc.fault)
			err := h.poll()
			if tc.fails != (err != nil) {
				t.Fatalf("poll error = %v, want failure %v", err, tc.fails)
			}
			if err != nil && ctsource.ReasonOf(err) != tc.reason {
				t.Errorf("reason of %v = %q, want %q", err, ctsource.ReasonOf(err), tc.reason)
			}
			if h.ErrorCount(tc.reason) == 0 {
				t.Errorf("no %s error counted: %v", tc.reason, h.Errors)
			}
			if tc.fails {
				// A failure is never "no certificates": the next poll, once
				// the watch's retry is due, finds it.
				h.fake.Fault(crtshfake.KindAny, 0, 0)
				if h.Store.Snapshot().Certificates > 1 {
					t.Fatal("invented issuances")
				}
				h.Clock.Advance(time.Minute)
				if err := h.poll(); err != nil {
					t.Fatalf("poll after recovery: %v", err)
				}
			}
			if h.NewCertificates() != 1 {
				t.Fatalf("counted %d issuances, want exactly 1", h.NewCertificates())
			}
		})
	}
}

func TestCrtshHonoursRetryAfter(t *testing.T) {
	h := newHarness(t, "example.com")
	h.fake.Fault(crtshfake.KindSearch, 1, crtshfake.Fault429RetryAfter)
	if err := h.poll(); err != nil {
		t.Fatal(err)
	}
	reqs := h.fake.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	// Retry-After: 1 asks for a second; backoff alone would retry in ~10ms.
	if gap := reqs[1].Time.Sub(reqs[0].Time); gap < time.Second {
		t.Fatalf("retried after %v, before the Retry-After of 1s", gap)
	}
}

func TestCrtshTimeout(t *testing.T) {
	h := newHarness(t, "example.com")
	h.src.http.Timeout = 50 * time.Millisecond
	h.fake.SetDelay(time.Second)
	err := h.poll()
	if ctsource.ReasonOf(err) != ctsource.ReasonTimeout {
		t.Fatalf("poll = %v, want a timeout", err)
	}
	// One attempt: the watch is retried on its own schedule, not inside
	// the request, so that it holds the other watches back one timeout only.
	if got := h.ErrorCount(ctsource.ReasonTimeout); got != 1 {
		t.Fatalf("%d timeouts counted, want 1", got)
	}
}

// crt.sh's silent cut at 10,000 rows is reported, and what was returned is
// still recorded.
func TestCrtshTruncation(t *testing.T) {
	h := newHarness(t, "example.com")
	h.fake.TruncateAt = 3
	for i := 0; i < 3; i++ {
		h.issue(fmt.Sprintf("h%d.example.com", i))
	}
	var logged strings.Builder
	h.Env.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	err := h.poll()
	if ctsource.ReasonOf(err) != ctsource.ReasonTruncated {
		t.Fatalf("poll = %v, want truncated_results", err)
	}
	if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "Narrow the watch") || !strings.Contains(logged.String(), "watch=example.com") {
		t.Errorf("the log does not tell the user what to do:\n%s", logged.String())
	}
	if h.ErrorCount(ctsource.ReasonTruncated) != 1 {
		t.Fatalf("truncated_results counted %d times", h.ErrorCount(ctsource.ReasonTruncated))
	}
	if got := h.Store.Snapshot().Certificates; got == 0 {
		t.Fatal("the rows crt.sh did return were not recorded")
	}
}

func TestDecodeCrtshRowsRejectsNonArrays(t *testing.T) {
	for _, body := range []string{`{}`, `null`, `[{"id": "x"}]`, `[] []`, `[{"issuer_ca_id": 1}]`} {
		if _, err := decodeCrtshRows(&ctsource.Response{Status: 200, ContentType: "application/json", Body: []byte(body)}); err == nil {
			t.Errorf("%s decoded", body)
		}
	}
	rows, err := decodeCrtshRows(&ctsource.Response{Status: 200, ContentType: "application/json", Body: []byte(
		`[{"issuer_ca_id":-1,"issuer_name":"C=US, O=\"Foo, Inc.\"","name_value":"a.example.com\nb.example.com","id":9000000001,"entry_timestamp":null,"not_before":"2026-11-01T00:00:00.5","not_after":"2027-01-30T23:59:59","serial_number":"00ab","result_count":1}]`)})
	if err != nil || len(rows) != 1 || rows[0].IssuerCAID != -1 || rows[0].CommonName != nil || rows[0].EntryTimestamp != nil {
		t.Fatalf("rows = %+v, %v", rows, err)
	}
	if got := parseCrtshTime(rows[0].NotBefore); got.Nanosecond() != 5e8 || got.Day() != 1 {
		t.Fatalf("not_before = %v", got)
	}
}
