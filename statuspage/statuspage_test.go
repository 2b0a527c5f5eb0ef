package statuspage

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

// Names an attacker can put in a certificate: markup, an attribute
// break-out, invalid UTF-8.
const (
	sanScript  = "<script>alert(1)</script>.example.com"
	sanImg     = `"><img src=x onerror=alert(1)>.example.com`
	sanInvalid = "bad\xff\xfe.example.com"
)

type fakeState struct{ snap state.Snapshot }

// Snapshot copies Recent, as state.Store does: the page sorts it.
func (f *fakeState) Snapshot() state.Snapshot {
	s := f.snap
	s.Recent = slices.Clone(f.snap.Recent)
	return s
}

type fakeHealth struct {
	sources   []monitor.SourceHealth
	logs      []monitor.LogStatus
	set       *watch.Set
	elsewhere []string
}

func (f *fakeHealth) Health() []monitor.SourceHealth { return f.sources }
func (f *fakeHealth) Logs() []monitor.LogStatus      { return f.logs }
func (f *fakeHealth) WatchSet() *watch.Set           { return f.set }
func (f *fakeHealth) Elsewhere() []string            { return f.elsewhere }

func get(t *testing.T, h http.Handler, method, path string) (*http.Response, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func watches(t *testing.T) *watch.Set {
	t.Helper()
	le, err := watch.ParseIssuerMatcher("Let's Encrypt")
	if err != nil {
		t.Fatal(err)
	}
	com := watch.NewWatch("example.com", true)
	com.ExpectedIssuers = []watch.IssuerMatcher{le}
	com.AuthorizedKeys = map[[32]byte]struct{}{{1}: {}, {2}: {}}
	org := watch.NewWatch("example.org", false)
	org.AuthorizedCerts = map[[32]byte]struct{}{{3}: {}}
	return watch.NewSet([]watch.Watch{com, org, watch.NewWatch("192.0.2.0/24", false)})
}

// recordedState records issuances in a real state file, so that the page
// shows what the state really hands it (escaped names, bounded labels).
func recordedState(t *testing.T, clk *storetest.Clock) *state.Store {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Every watch keeps the verdict it gave when it first saw the issuance.
	err = st.SetPolicy(state.Policy{RecentWindow: 168 * time.Hour, SeriesLimit: 1000, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		for _, m := range is.Watches {
			if m.Watch == w {
				return m.Verdict, true
			}
		}
		return 0, false
	}})
	if err != nil {
		t.Fatal(err)
	}
	add := func(i int, w string, v watch.Verdict, issuer watch.Issuer, scts int, names ...string) {
		is := &state.Issuance{
			TBSSHA256:    sha256.Sum256(fmt.Appendf(nil, "tbs%d", i)),
			CertSHA256:   sha256.Sum256(fmt.Appendf(nil, "cert%d", i)),
			Serial:       fmt.Sprintf("0%d", i),
			Issuer:       issuer,
			DNSNames:     names,
			NotBefore:    clk.Now().Add(-time.Hour),
			NotAfter:     clk.Now().Add(90 * 24 * time.Hour),
			EmbeddedSCTs: scts,
		}
		err := st.Update(func(tx *state.Tx) error {
			_, err := tx.Observe(is, []state.Match{{Watch: w, Verdict: v}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
	}
	le := watch.Issuer{CN: "R11", O: "Let's Encrypt", DN: "CN=R11, O=Let's Encrypt, C=US"}
	add(1, "example.org", watch.Authorized, le, 1, "example.org")
	add(2, "example.com", watch.IssuerUnexpected, watch.Issuer{CN: "Evil <i>CA</i>", O: "Evil"}, -1, sanScript, sanImg, sanInvalid)
	add(3, "example.com", watch.IssuerAllowed, le, 2, "www.example.com")
	add(4, "example.org", watch.Unreviewed, le, 3, "example.org")
	add(5, "example.com", watch.IssuerAllowed, le, 2, "api.example.com")
	return st
}

func health(t *testing.T, now time.Time) *fakeHealth {
	return &fakeHealth{
		set: watches(t),
		sources: []monitor.SourceHealth{
			{Name: "crtsh", Type: "crtsh", Polled: true, Up: true, LastSuccess: now.Add(-90 * time.Second), Errors: map[string]uint64{"timeout": 0}, DurationCount: 4, DurationSum: 2},
			{Name: "certspotter", Type: "crtsh", Polled: true, Up: false, LastSuccess: now.Add(-3 * time.Hour), Errors: map[string]uint64{"timeout": 3, "http_5xx": 2, "network": 0}, DurationCount: 9, DurationSum: 90},
			{Name: "argon", Type: "ctlog", Errors: map[string]uint64{}},
		},
		logs: []monitor.LogStatus{
			{Log: "argon", Known: true, TreeSize: 1000, Position: 900, STHTime: now.Add(-2 * time.Minute), MMD: 24 * time.Hour, Verifying: true, Failures: map[string]uint64{"consistency": 0}},
			{Log: "oldlog", Known: true, TreeSize: 50, Position: 50, STHTime: now.Add(-48 * time.Hour), MMD: 24 * time.Hour, Readonly: true, Verifying: false, Failures: map[string]uint64{"consistency": 1, "rollback": 0}},
			{Log: "newlog", MMD: 24 * time.Hour, Verifying: true},
		},
	}
}

func TestStatusPageRendersEverySection(t *testing.T) {
	clk := storetest.ClockAt(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	st := recordedState(t, clk)
	h := New(st, health(t, clk.Now()), Options{Version: "(version=9.9.9, branch=test)", MetricsPath: "/custom-metrics", Now: clk.Now})

	res, body := get(t, h, "GET", "/")
	if res.StatusCode != 200 {
		t.Fatalf("GET /: %s\n%s", res.Status, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	mustContain(t, body,
		// header
		"(version=9.9.9, branch=test)", `href="/custom-metrics"`, `href="/-/healthy"`, `href="/-/ready"`, "docs/runbook.md",
		`<span class="badge issuer_unexpected">issuer_unexpected 1</span>`, "5 issuance(s) in the state file",
		// watches
		`<section id="watches">`, "<code>example.com</code>", "example.com and *.example.com",
		"issuer O or CN equal to &#34;Let&#39;s Encrypt&#34; (any case)", "only example.org", "IP address SANs in 192.0.2.0/24",
		"no expected_issuers: every issuance not authorized is unreviewed",
		// sources
		`<section id="sources">`, `<td class="up">up</td>`, `<td class="down">down</td>`, `<td class="pending">not yet polled</td>`,
		"http_5xx: 2, timeout: 3", "2026-05-01 12:03:30Z <span class=\"muted\">(1m30s ago)</span>", "10s", // mean poll of certspotter
		// logs
		`<section id="logs">`, "<code>argon</code>", `<td class="n">1000</td>`, `<td class="n">900</td>`, `<td class="n">100</td>`,
		"2m00s", "no verified tree head yet", `<span class="bad">failing</span> <span class="bad">consistency: 1</span>`,
		// recent
		`<section id="recent">`, "www.example.com", "R11", "precert", `<span class="warn">1</span>`,
		fmt.Sprintf(`href="https://crt.sh/?sha256=%x"`, sha256.Sum256([]byte("cert2"))),
		`href="https://crt.sh/?serial=02"`,
		fmt.Sprintf("%x", sha256.Sum256([]byte("tbs2"))),
		"2026-05-01 11:00:00Z", // not before of the first issuance
	)
	if strings.Contains(body, "rollback") || strings.Contains(body, "network") {
		t.Error("reasons and checks with no failures are shown")
	}
	// Most urgent first, then newest first.
	order := []string{"r-issuer_unexpected", "r-unreviewed", "api.example.com", "www.example.com", "r-authorized"}
	last := -1
	for _, s := range order {
		i := strings.Index(body, s)
		if i <= last {
			t.Fatalf("%q is out of order (at %d, previous at %d)", s, i, last)
		}
		last = i
	}
	assertInert(t, body)
}

// mustContain fails for each string the body lacks.
func mustContain(t *testing.T, body string, want ...string) {
	t.Helper()
	missing := false
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("the page lacks %q", w)
			missing = true
		}
	}
	if missing {
		t.Logf("page:\n%s", body)
	}
}

// assertInert checks that the certificate fields came out as text: their
// markup is escaped, invalid UTF-8 is a visible escape, and parsing the
// page yields only the elements and attributes the template writes.
func assertInert(t *testing.T, body string) {
	t.Helper()
	mustContain(t, body,
		"&lt;script&gt;alert(1)&lt;/script&gt;.example.com",
		"&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.example.com",
		`bad\xff\xfe.example.com`,
		"Evil &lt;i&gt;CA&lt;/i&gt;",
	)
	if !utf8.ValidString(body) {
		t.Error("the page is not valid UTF-8")
	}
	for _, bad := range []string{"<script", "<img", "<i>", "onerror=alert(1)>"} {
		if strings.Contains(strings.ToLower(body), bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	allowed := map[string]bool{}
	for _, e := range strings.Fields("html head meta title style body header h1 span nav a p section h2 small div table thead tbody tr th td code br wbr footer") {
		allowed[e] = true
	}
	z := html.NewTokenizer(strings.NewReader(body))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if z.Err() != io.EOF {
				t.Fatal(z.Err())
			}
			return
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		if !allowed[tok.Data] {
			t.Errorf("unexpected element <%s> in the page", tok.Data)
		}
		for _, a := range tok.Attr {
			if strings.HasPrefix(a.Key, "on") || a.Key == "src" {
				t.Errorf("unexpected attribute %s=%q on <%s>", a.Key, a.Val, tok.Data)
			}
		}
	}
}

// A snapshotter that hands over fields nobody escaped (not the state,
// which does) still gets a page of printable text.
func TestStatusPageEscapesUnescapedFields(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	st := &fakeState{snap: state.Snapshot{Recent: []state.Recent{{
		Watch: "example.com", Verdict: watch.IssuerUnexpected, FirstSeen: now,
		DNSNames:  strings.Join([]string{sanScript, sanImg, sanInvalid}, ","),
		SubjectCN: "cn\x00\u202e<b>x</b>", Issuer: "Evil <i>CA</i>", Serial: "01", EmbeddedSCTs: 0,
	}}}}
	h := New(st, &fakeHealth{set: watch.NewSet(nil)}, Options{Now: func() time.Time { return now }})
	_, body := get(t, h, "GET", "/")
	assertInert(t, body)
	mustContain(t, body, `cn\u{0}\u{202e}&lt;b&gt;x&lt;/b&gt;`)
}

// A certificate the strict parser refuses says so, escaped; an issuance
// with no certificate tied to it links crt.sh by serial only.
func TestStatusPageShowsParseErrors(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	st := &fakeState{snap: state.Snapshot{Recent: []state.Recent{{
		Watch: "example.com", Verdict: watch.IssuerAllowed, FirstSeen: now, DNSNames: "odd.example.com",
		Issuer: "Odd CA", Serial: "0badc0de", EmbeddedSCTs: -1, CertSHA256: [32]byte{1},
		ParseError: state.ParseErrorLabel(`x509: cannot parse URI "<script>": bad`),
	}, {
		Watch: "example.com", Verdict: watch.IssuerAllowed, FirstSeen: now, DNSNames: "plain.example.com",
		Issuer: "Odd CA", Serial: "c0ffee", EmbeddedSCTs: -1,
	}}}}
	h := New(st, &fakeHealth{set: watch.NewSet(nil)}, Options{Now: func() time.Time { return now }})
	_, body := get(t, h, "GET", "/")
	if strings.Contains(body, "<script>") {
		t.Fatal("the parse error was not escaped")
	}
	mustContain(t, body, `does not parse:`, `x509: cannot parse URI &#34;&lt;script&gt;&#34;: bad`,
		`https://crt.sh/?sha256=01000000`, `https://crt.sh/?serial=c0ffee`)
	if n := strings.Count(body, "does not parse:"); n != 1 {
		t.Fatalf("%d rows say they do not parse, want 1", n)
	}
	if n := strings.Count(body, ">certificate</a>"); n != 1 {
		t.Fatalf("%d certificate links, want 1 (none without cert_sha256)", n)
	}
}

func TestStatusPageCapsRecentRows(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var recent []state.Recent
	for i := range 1200 {
		v := watch.Authorized
		if i%400 == 7 {
			v = watch.IssuerUnexpected
		}
		recent = append(recent, state.Recent{
			Watch: "example.com", Verdict: v, FirstSeen: now.Add(-time.Duration(i) * time.Second),
			TBSSHA256: sha256.Sum256(fmt.Append(nil, i)), DNSNames: fmt.Sprintf("h%d.example.com", i), EmbeddedSCTs: 2,
		})
	}
	h := New(&fakeState{snap: state.Snapshot{Recent: recent}}, &fakeHealth{set: watch.NewSet(nil)}, Options{Now: func() time.Time { return now }})
	_, body := get(t, h, "GET", "/")
	if n := strings.Count(body, `<tr class="r-`); n != DefaultMaxRecent {
		t.Errorf("%d rows, want %d", n, DefaultMaxRecent)
	}
	mustContain(t, body, "Showing 500 of 1200: 700 more", "(1200; most urgent first")
	// The three unexpected ones lead, newest first; the oldest authorized
	// ones are those left out.
	for i, name := range []string{"h7.example.com", "h407.example.com", "h807.example.com", "h0.example.com"} {
		if j := strings.Index(body, ">"+name+"<"); j < 0 || (i > 0 && j < strings.Index(body, ">h7.example.com<")) {
			t.Errorf("%s missing or out of order", name)
		}
	}
	if strings.Contains(body, ">h1199.example.com<") {
		t.Error("the oldest authorized issuance is shown although rows are capped")
	}

	h = New(&fakeState{snap: state.Snapshot{Recent: recent}}, &fakeHealth{set: watch.NewSet(nil)}, Options{MaxRecent: 10})
	if _, body := get(t, h, "GET", "/"); strings.Count(body, `<tr class="r-`) != 10 {
		t.Error("MaxRecent is not applied")
	}
}

func TestStatusPageEmpty(t *testing.T) {
	h := New(&fakeState{}, &fakeHealth{}, Options{})
	res, body := get(t, h, "GET", "/")
	if res.StatusCode != 200 {
		t.Fatal(res.Status)
	}
	mustContain(t, body, "No watches configured.", "No sources running.", "No CT logs followed.",
		"No issuance first seen within the recent window.", `href="/metrics"`)
}

// A replica sharing the state by leases names the sources the other
// replicas run, escaped; without leases, nothing is said of them.
func TestStatusPageElsewhere(t *testing.T) {
	h := New(&fakeState{}, &fakeHealth{elsewhere: []string{"crtsh", "<log>"}}, Options{})
	_, body := get(t, h, "GET", "/")
	mustContain(t, body, "No sources running on this replica.", `id="elsewhere"`,
		"<code>crtsh</code>, <code>&lt;log&gt;</code>. Their status pages show them.")
	_, body = get(t, New(&fakeState{}, &fakeHealth{}, Options{}), "GET", "/")
	if strings.Contains(body, `id="elsewhere"`) || strings.Contains(body, "on this replica") {
		t.Error("a page without leases speaks of other replicas")
	}
}

func TestStatusPageOnlyAtRoot(t *testing.T) {
	h := New(&fakeState{}, &fakeHealth{}, Options{})
	if res, _ := get(t, h, "GET", "/favicon.ico"); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /favicon.ico: %s", res.Status)
	}
	if res, _ := get(t, h, "POST", "/"); res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %s, Allow %q", res.Status, res.Header.Get("Allow"))
	}
	if res, body := get(t, h, "HEAD", "/"); res.StatusCode != 200 || body != "" {
		t.Errorf("HEAD /: %s, %d bytes", res.Status, len(body))
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond:             "850ms",
		1500 * time.Microsecond:            "2ms",
		42 * time.Second:                   "42s",
		time.Minute + 500*time.Millisecond: "1m00s",
		5*time.Minute + 10*time.Second:     "5m10s",
		3*time.Hour + 12*time.Minute:       "3h12m",
		24*time.Hour - time.Nanosecond:     "23h59m",
		52*time.Hour + 30*time.Minute:      "2d04h",
		10*24*time.Hour + 23*time.Hour:     "10d23h",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	if got := ago(90 * time.Second); got != "1m30s ago" {
		t.Errorf("ago(90s) = %q", got)
	}
	// A tree head from a log whose clock is ahead of ours.
	if got := ago(-90 * time.Second); got != "in 1m30s" {
		t.Errorf("ago(-90s) = %q", got)
	}
}

// The page with many recent series: Snapshot's copy and one sort.
func BenchmarkStatusPage10000Recent(b *testing.B) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var recent []state.Recent
	for i := range 10000 {
		recent = append(recent, state.Recent{
			Watch: fmt.Sprintf("w%d.example.com", i%10), Verdict: watch.Verdict(1 + i%4), FirstSeen: now.Add(-time.Duration(i) * time.Second),
			TBSSHA256: sha256.Sum256(fmt.Append(nil, i)), DNSNames: fmt.Sprintf("h%d.example.com", i), Issuer: "R11", Serial: "0123", EmbeddedSCTs: 2,
		})
	}
	h := New(&fakeState{snap: state.Snapshot{Recent: recent}}, &fakeHealth{set: watch.NewSet(nil)}, Options{Now: func() time.Time { return now }})
	req := httptest.NewRequest("GET", "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
