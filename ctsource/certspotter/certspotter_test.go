package certspotter

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/crtsh"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/certspotterfake"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// csHarness is a base harness with a Cert Spotter API fake and source.
type csHarness struct {
	*sourcetest.Harness
	api *certspotterfake.Server
	cs  *Source
}

func newCSHarness(t *testing.T, token string, domains ...string) *csHarness {
	t.Helper()
	h := &csHarness{Harness: sourcetest.NewHarness(t, domains...), api: certspotterfake.New()}
	t.Cleanup(h.api.Close)
	h.api.SetToken(token)
	h.cs = h.newSource(token)
	return h
}

func (h *csHarness) newSource(token string) *Source {
	h.T.Helper()
	cs, err := New("certspotter", h.api.URL+"/", token, time.Minute, 5*time.Second, 0, h.CountError)
	if err != nil {
		h.T.Fatal(err)
	}
	cs.http.BackoffBase = 10 * time.Millisecond
	cs.watches.Now = h.Clock.Now
	return cs
}

// issueAPI makes an issuance that Cert Spotter finds: its precertificate,
// then its final certificate (the same issuance to the API).
func (h *csHarness) issueAPI(sans ...string) *testpki.Issued {
	h.T.Helper()
	iss, err := h.CA.Issue(testpki.Leaf{CN: sans[0], DNSNames: sans, SCTs: 2})
	if err != nil {
		h.T.Fatal(err)
	}
	for _, der := range [][]byte{iss.Precert, iss.Final} {
		if _, err := h.api.Add(der); err != nil {
			h.T.Fatal(err)
		}
	}
	return iss
}

func (h *csHarness) pollCS() error { return h.cs.Poll(context.Background(), h.Env) }

func TestCertspotterRecordsPagesAndResumes(t *testing.T) {
	const token = "sekrit-api-key-0001"
	h := newCSHarness(t, token, "example.com", "example.org")
	h.api.SetPageSize(2)
	var issued []*testpki.Issued
	for i := range 5 {
		issued = append(issued, h.issueAPI(fmt.Sprintf("h%d.example.com", i)))
	}
	h.issueAPI("www.example.net") // no watch asks for it
	if err := h.pollCS(); err != nil {
		t.Fatal(err)
	}
	if got := h.NewCertificates(); got != 5 {
		t.Fatalf("recorded %d issuances, want 5", got)
	}
	for _, iss := range issued {
		is := h.Recorded(iss)
		if is == nil || len(is.Watches) != 1 || is.Watches[0].Watch != "example.com" {
			t.Fatalf("issuance not recorded for example.com: %+v", is)
		}
		if is.EmbeddedSCTs != 2 {
			t.Errorf("SCTs = %d, want the final certificate's 2", is.EmbeddedSCTs)
		}
	}
	// Five issuances in pages of two: three pages, and a fourth, empty, that
	// ends the paging; example.org: one empty page.
	var example, after []string
	for _, r := range h.api.Requests() {
		if r.Authorization != "Bearer "+token {
			t.Fatalf("request without the bearer token: %+v", r)
		}
		if r.Domain == "example.com" {
			example = append(example, r.After)
			if !r.IncludeSubdomains {
				t.Errorf("include_subdomains not asked: %+v", r)
			}
		}
	}
	if len(example) != 4 || example[0] != "" {
		t.Fatalf("example.com pages after %q, want 4 pages from the start", example)
	}

	// A restart (a new source on the same state) resumes after the last id:
	// one request, nothing recorded again; a new issuance is found.
	before := len(h.api.Requests())
	h.cs = h.newSource(token)
	late := h.issueAPI("late.example.com")
	if err := h.pollCS(); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.api.Requests()[before:] {
		if r.Domain == "example.com" {
			after = append(after, r.After)
		}
	}
	if len(after) != 2 || after[0] != example[len(example)-1] {
		t.Fatalf("after the restart, pages after %q; want to resume after %q", after, example[len(example)-1])
	}
	if h.NewCertificates() != 6 || h.Recorded(late) == nil {
		t.Fatalf("recorded %d, want 6 with the late issuance", h.NewCertificates())
	}
}

// The same issuance found by crt.sh and by the API is one issuance: the
// API's tbs_sha256 is the common dedup key.
func TestCertspotterJoinsDedup(t *testing.T) {
	h := newCSHarness(t, "", "example.com")
	crtshFake := crtshfake.New()
	defer crtshFake.Close()
	cr, err := crtsh.New("crtsh", crtshFake.URL, time.Minute, 5*time.Second, 0, h.CountError)
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	iss, err := h.CA.Issue(testpki.Leaf{CN: "www.example.com", DNSNames: []string{"www.example.com"}, SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, der := range [][]byte{iss.Precert, iss.Final} {
		crtshFake.Add(der) // crt.sh sees it
		if _, err := h.api.Add(der); err != nil {
			t.Fatal(err)
		}
	}
	if err := cr.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if err := h.pollCS(); err != nil {
		t.Fatal(err)
	}
	if got := h.NewCertificates(); got != 1 {
		t.Fatalf("counted %d issuances across crt.sh and Cert Spotter, want 1", got)
	}
	c, _ := cert.Parse(iss.Final)
	var apiTBS string
	for _, r := range h.api.Requests() {
		if r.Status != http.StatusOK {
			t.Fatalf("request failed: %+v", r)
		}
	}
	// The fake computes tbs_sha256 with certificate-transparency-go; ours must agree.
	res, err := http.Get(h.api.URL + "/v1/issuances?domain=example.com&include_subdomains=true")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var page []csIssuance
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil || len(page) != 1 {
		t.Fatalf("page %v: %v", page, err)
	}
	apiTBS = page[0].TBSSHA256
	if apiTBS != hex.EncodeToString(c.TBSSHA256[:]) {
		t.Fatalf("the API's tbs_sha256 %s differs from ours %x", apiTBS, c.TBSSHA256)
	}
}

func TestCertspotterFaults(t *testing.T) {
	for _, tc := range []struct {
		name        string
		n, status   int
		retryAfter  string
		ctype, body string
		reason      string
		fails       bool
	}{
		{"429 with Retry-After retried", 1, 429, "1", "application/json", `{"code":"rate_limited","message":"slow down"}`, ctsource.ReasonHTTP429, false},
		// Not retried inside the poll: the watch is, on its own schedule.
		{"503", 1, 503, "", "text/plain", "unavailable", ctsource.ReasonHTTP5xx, true},
		{"429 persistent", 100, 429, "", "application/json", `{"code":"rate_limited"}`, ctsource.ReasonHTTP429, true},
		{"HTML with 200", 1, 200, "", "text/html", "<html>maintenance</html>", ctsource.ReasonBadResponse, true},
		{"truncated JSON", 1, 200, "", "application/json", `[{"id":"1","tbs_sha256":"ab`, ctsource.ReasonBadResponse, true},
		{"not an array", 1, 200, "", "application/json", `{"code":"oops"}`, ctsource.ReasonBadResponse, true},
		{"ids going back", 1, 200, "", "application/json", `[{"id":"5"},{"id":"4"}]`, ctsource.ReasonBadResponse, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newCSHarness(t, "", "example.com")
			h.issueAPI("www.example.com")
			h.api.Fail(tc.n, tc.status, tc.retryAfter, tc.ctype, tc.body)
			err := h.pollCS()
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
				if h.NewCertificates() != 0 {
					t.Fatal("recorded something from a failed answer")
				}
				h.cs = h.newSource("")
				for range tc.n {
					// Drain the remaining faults: each attempt takes one.
					if h.pollCS() == nil {
						break
					}
				}
			}
			if h.NewCertificates() != 1 {
				t.Fatalf("counted %d issuances, want exactly 1", h.NewCertificates())
			}
		})
	}
}

// A wrong key is a failure that says what to check, and the key itself is
// never logged, not even at debug level.
func TestCertspotterTokenRefusedAndNeverLogged(t *testing.T) {
	const real, wrong = "the-real-key-123", "a-wrong-key-456"
	h := newCSHarness(t, real, "example.com")
	h.issueAPI("www.example.com")
	var logged bytes.Buffer
	h.Env.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.cs = h.newSource(wrong)
	err := h.pollCS()
	if ctsource.ReasonOf(err) != ctsource.ReasonHTTP4xx || !strings.Contains(err.Error(), "token_file") {
		t.Fatalf("poll with a wrong key = %v, want an http_4xx error that names token_file", err)
	}
	h.cs = h.newSource(real)
	if err := h.pollCS(); err != nil {
		t.Fatal(err)
	}
	if h.NewCertificates() != 1 {
		t.Fatalf("recorded %d, want 1", h.NewCertificates())
	}
	for _, k := range []string{real, wrong} {
		if strings.Contains(logged.String(), k) || strings.Contains(err.Error(), k) {
			t.Fatalf("the key %q was logged:\n%s\n%v", k, logged.String(), err)
		}
	}
	if !strings.Contains(logged.String(), "new certificate") {
		t.Fatalf("nothing logged at all, so the check above proves nothing:\n%s", logged.String())
	}
}

// The free tier's limit: requests are spaced by request_interval, and a 429
// from a limit reached anyway is waited out (Retry-After), not hammered.
func TestCertspotterRateLimit(t *testing.T) {
	h := newCSHarness(t, "", "example.com", "example.org", "example.net")
	gap := 150 * time.Millisecond
	cs, err := New("certspotter", h.api.URL, "", time.Minute, 5*time.Second, gap, h.CountError)
	if err != nil {
		t.Fatal(err)
	}
	h.cs = cs
	// When the source sends each request, seen from its side: on a loaded
	// machine one request may reach the server late and the next on time,
	// so spacing measured at the server says nothing about the sender.
	sent := &sendTimes{base: cs.http.Base}
	cs.http.Base = sent
	h.api.SetRateLimit(2, time.Second)
	h.issueAPI("www.example.net")
	if err := h.pollCS(); err != nil {
		t.Fatal(err)
	}
	// Request i is given a slot i gaps after the first one's and sent when
	// its timer fires: only the first send's lateness (a timer fired late
	// on a loaded machine) can make the span shorter, hence the slack.
	starts := sent.times()
	for i := 1; i < len(starts); i++ {
		if d := starts[i].Sub(starts[0]); d < time.Duration(i)*gap-20*time.Millisecond {
			t.Errorf("request %d started %v after the first, under %d request_intervals of %v", i, d, i, gap)
		}
	}
	reqs := h.api.Requests()
	if len(reqs) != len(starts) {
		t.Fatalf("the server saw %d requests, the source sent %d", len(reqs), len(starts))
	}
	var limited int
	for i, r := range reqs {
		if r.Status == http.StatusTooManyRequests {
			limited++
			if i+1 < len(reqs) && reqs[i+1].Time.Sub(r.Time) < 900*time.Millisecond {
				t.Errorf("retried %v after a 429 with Retry-After", reqs[i+1].Time.Sub(r.Time))
			}
		}
	}
	if limited == 0 || h.ErrorCount(ctsource.ReasonHTTP429) != limited {
		t.Fatalf("%d requests limited, %d counted: the limit was never reached, so nothing was shown", limited, h.ErrorCount(ctsource.ReasonHTTP429))
	}
	if h.NewCertificates() != 1 {
		t.Fatalf("recorded %d, want 1", h.NewCertificates())
	}
}

// A certificate the API returns that does not parse is counted and skipped,
// and the cursor passes it, so it does not stall the watch.
func TestCertspotterMalformedSkipped(t *testing.T) {
	h := newCSHarness(t, "", "example.com")
	h.issueAPI("a.example.com")
	h.api.Fail(1, 200, "", "application/json", `[{"id":"1","tbs_sha256":"00","cert_der":"MAA="}]`)
	var logged bytes.Buffer
	h.Env.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	if err := h.pollCS(); err != nil {
		t.Fatal(err)
	}
	if h.ErrorCount(ctsource.ReasonBadResponse) != 1 || !strings.Contains(logged.String(), "cannot be read") {
		t.Fatalf("malformed certificate not counted (%v) or not logged:\n%s", h.Errors, logged.String())
	}
	if h.NewCertificates() != 1 {
		t.Fatalf("recorded %d, want the real issuance after the malformed one", h.NewCertificates())
	}
}

// sendTimes records when each request is handed to the network.
type sendTimes struct {
	base http.RoundTripper
	mu   sync.Mutex
	at   []time.Time
}

func (s *sendTimes) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
	return s.base.RoundTrip(r)
}

func (s *sendTimes) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at...)
}
