// Package statuspage renders the exporter's page at /: what it watches, how
// its sources and CT logs are doing, and the recent issuances, most urgent
// first. It reads the same in-memory snapshots as the collector, so a page
// view never waits on the network or the disk.
//
// Certificate fields are attacker-controlled: they reach the page only as
// text through html/template's contextual escaping, never as template.HTML.
package statuspage

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// DefaultMaxRecent bounds the recent-issuance rows of one page: a watch
// may hold thousands of recent series, which no one reads in a browser.
const DefaultMaxRecent = 500

// Sources of what the page shows; the store (monitor.Store) and *monitor.Monitor in the
// exporter.
type (
	StateSnapshotter interface {
		Snapshot() state.Snapshot
	}
	HealthReporter interface {
		Health() []monitor.SourceHealth
		Logs() []monitor.LogStatus
		WatchSet() *watch.Set
		// Elsewhere: the sources other replicas run (leases).
		Elsewhere() []string
	}
)

// Options configure the page; the zero value is usable.
type Options struct {
	Version     string // shown in the header, e.g. version.Info()
	MetricsPath string // where the metrics are served; "/metrics" when empty
	MaxRecent   int    // recent-issuance rows shown; DefaultMaxRecent when 0
	Logger      *slog.Logger
	Now         func() time.Time // for tests
}

// Handler serves the status page.
type Handler struct {
	state  StateSnapshotter
	health HealthReporter
	opts   Options
	tmpl   *template.Template
}

//go:embed page.html
var files embed.FS

var pageTemplate = template.Must(template.ParseFS(files, "page.html"))

// New returns the status page handler.
func New(st StateSnapshotter, h HealthReporter, opts Options) *Handler {
	if opts.MetricsPath == "" {
		opts.MetricsPath = "/metrics"
	}
	if opts.MaxRecent <= 0 {
		opts.MaxRecent = DefaultMaxRecent
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{state: st, health: h, opts: opts, tmpl: pageTemplate}
}

// The page loads nothing and runs nothing: a policy that forbids it all
// costs nothing and contains any escaping mistake.
const contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ServeHTTP renders the page. The mux routes every unknown path to "/", so
// anything else is a 404 rather than a copy of the page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Use GET.", http.StatusMethodNotAllowed)
		return
	}
	// Rendered into a buffer first, so that a failure is a clean 500 and
	// not half a page.
	var buf bytes.Buffer
	if err := h.tmpl.Execute(&buf, h.page()); err != nil {
		h.opts.Logger.Error("rendering the status page failed", "err", err)
		http.Error(w, "The status page could not be rendered; see the exporter's log.", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	// The crt.sh links must not tell crt.sh where the exporter runs.
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

type page struct {
	Version     string
	MetricsPath string
	Generated   string

	Certificates uint64
	WriteErrors  uint64
	Verdicts     []verdictCount // recent issuances by verdict, most urgent first

	Watches   []watchRow
	Sources   []sourceRow
	Elsewhere []string // sources that other replicas sharing the state run
	Logs      []logRow

	Recent       []recentRow
	RecentTotal  int
	RecentHidden int
}

type verdictCount struct {
	Verdict string
	N       int
}

type watchRow struct {
	Domain     string
	Scope      string
	Accepts    []string
	Keys       int
	Reviewed   int
	Recent     int
	Urgent     int // issuer_unexpected and unreviewed among Recent
	Dropped    uint64
	Subdomains bool
}

type sourceRow struct {
	Name, Type  string
	Status      string // up, down, pending
	LastSuccess string
	LastAge     string
	Errors      string
	Polls       uint64
	MeanPoll    string
}

type logRow struct {
	Name      string
	Known     bool
	TreeSize  int64
	Position  int64
	Behind    int64
	STHTime   string
	STHAge    string
	Stale     bool // older than the MMD, and not a readonly log
	MMD       string
	Readonly  bool
	Verifying bool
	Failures  string
}

type recentRow struct {
	Verdict   string
	Watch     string
	Names     []string // the dns_names label split at its commas, so that lines break between names
	CN        string   // shown when the names do not include it
	Issuer    string
	Serial    string
	SCTs      string
	FewSCTs   bool
	NotBefore string
	NotAfter  string
	// Dates alone keep the table narrow; the times are in a tooltip.
	NotBeforeDate string
	NotAfterDate  string
	FirstSeen     string
	FirstAge      string
	TBS           string
	CertURL       string // empty when no certificate is tied to the issuance
	SerialURL     string
	// ParseError is why a strict X.509 parser refuses a certificate of
	// the issuance: more suspicious, so shown.
	ParseError string
}

func (h *Handler) page() *page {
	now := h.opts.Now()
	snap := h.state.Snapshot()
	p := &page{
		Version:      h.opts.Version,
		MetricsPath:  h.opts.MetricsPath,
		Generated:    formatTime(now),
		Certificates: snap.Certificates,
		WriteErrors:  snap.WriteErrors,
	}

	type tally struct{ all, urgent int }
	perWatch := map[string]tally{}
	perVerdict := map[watch.Verdict]int{}
	for _, r := range snap.Recent {
		t := perWatch[r.Watch]
		t.all++
		if r.Verdict >= watch.Unreviewed {
			t.urgent++
		}
		perWatch[r.Watch] = t
		perVerdict[r.Verdict]++
	}
	for _, v := range []watch.Verdict{watch.IssuerUnexpected, watch.Unreviewed, watch.IssuerAllowed, watch.Authorized} {
		p.Verdicts = append(p.Verdicts, verdictCount{v.String(), perVerdict[v]})
	}

	if set := h.health.WatchSet(); set != nil {
		for _, w := range set.Watches() {
			p.Watches = append(p.Watches, newWatchRow(&w, perWatch[w.Domain].all, perWatch[w.Domain].urgent, snap.Dropped[w.Domain]))
		}
	}

	for _, s := range h.health.Health() {
		p.Sources = append(p.Sources, newSourceRow(s, now))
	}
	slices.SortFunc(p.Sources, func(a, b sourceRow) int { return strings.Compare(a.Name, b.Name) })
	p.Elsewhere = h.health.Elsewhere()

	for _, l := range h.health.Logs() {
		p.Logs = append(p.Logs, newLogRow(l, now))
	}
	slices.SortFunc(p.Logs, func(a, b logRow) int { return strings.Compare(a.Name, b.Name) })

	// Snapshot already copied the recent series (O(series), no disk); one
	// sort of that copy is the page's only other cost.
	recent := snap.Recent
	slices.SortFunc(recent, urgentFirst)
	p.RecentTotal = len(recent)
	if len(recent) > h.opts.MaxRecent {
		p.RecentHidden = len(recent) - h.opts.MaxRecent
		recent = recent[:h.opts.MaxRecent]
	}
	p.Recent = make([]recentRow, len(recent))
	for i, r := range recent {
		p.Recent[i] = newRecentRow(r, now)
	}
	return p
}

// urgentFirst orders issuances as on-call reads them: issuer_unexpected,
// unreviewed, issuer_allowed, authorized (watch.Verdict is declared in that
// order of urgency), newest first within a verdict.
func urgentFirst(a, b state.Recent) int {
	if c := cmp.Compare(b.Verdict, a.Verdict); c != 0 {
		return c
	}
	if c := b.FirstSeen.Compare(a.FirstSeen); c != 0 {
		return c
	}
	if c := strings.Compare(a.Watch, b.Watch); c != 0 {
		return c
	}
	return bytes.Compare(a.TBSSHA256[:], b.TBSSHA256[:])
}

func newWatchRow(w *watch.Watch, recent, urgent int, dropped uint64) watchRow {
	row := watchRow{
		Domain:     w.Domain,
		Subdomains: w.IncludeSubdomains,
		Keys:       len(w.AuthorizedKeys),
		Reviewed:   len(w.AuthorizedCerts),
		Recent:     recent,
		Urgent:     urgent,
		Dropped:    dropped,
	}
	switch {
	case w.IsIP():
		row.Scope = "IP address SANs in " + w.Domain
	case w.IncludeSubdomains:
		row.Scope = w.Domain + " and *." + w.Domain
	default:
		row.Scope = "only " + w.Domain
	}
	for _, m := range w.ExpectedIssuers {
		row.Accepts = append(row.Accepts, m.Describe())
	}
	return row
}

func newSourceRow(s monitor.SourceHealth, now time.Time) sourceRow {
	row := sourceRow{Name: s.Name, Type: s.Type, Status: "pending", Polls: s.DurationCount, LastSuccess: "never"}
	if s.Polled {
		row.Status = "down"
		if s.Up {
			row.Status = "up"
		}
	}
	if !s.LastSuccess.IsZero() {
		row.LastSuccess = formatTime(s.LastSuccess)
		row.LastAge = ago(now.Sub(s.LastSuccess))
	}
	if s.DurationCount > 0 {
		row.MeanPoll = formatDuration(time.Duration(s.DurationSum / float64(s.DurationCount) * float64(time.Second)))
	}
	row.Errors = nonZero(s.Errors)
	return row
}

func newLogRow(l monitor.LogStatus, now time.Time) logRow {
	row := logRow{
		Name:      l.Log,
		Known:     l.Known,
		TreeSize:  l.TreeSize,
		Position:  l.Position,
		MMD:       formatDuration(l.MMD),
		Readonly:  l.Readonly,
		Verifying: l.Verifying,
		Failures:  nonZero(l.Failures),
	}
	if l.Known {
		row.Behind = max(l.TreeSize-l.Position, 0)
		row.STHTime = formatTime(l.STHTime)
		lag := now.Sub(l.STHTime)
		row.STHAge = formatDuration(lag)
		// As CTLogSTHStale says: a readonly log's tree head stops for good.
		row.Stale = !l.Readonly && l.MMD > 0 && lag > l.MMD
	}
	return row
}

func newRecentRow(r state.Recent, now time.Time) recentRow {
	serial := display(r.Serial)
	cert := state.CertHex(r.CertSHA256)
	row := recentRow{
		Verdict:       r.Verdict.String(),
		Watch:         display(r.Watch),
		Names:         strings.Split(display(r.DNSNames), ","),
		Issuer:        display(r.Issuer),
		Serial:        serial,
		NotBefore:     formatTime(r.NotBefore),
		NotAfter:      formatTime(r.NotAfter),
		NotBeforeDate: formatDate(r.NotBefore),
		NotAfterDate:  formatDate(r.NotAfter),
		FirstSeen:     formatTime(r.FirstSeen),
		FirstAge:      ago(now.Sub(r.FirstSeen)),
		TBS:           hex.EncodeToString(r.TBSSHA256[:]),
		// crt.sh finds a certificate by the SHA-256 of the whole
		// certificate (its sha256 parameter; q tries an id, then SHA-1 or
		// SHA-256 of the certificate, then an identity). It knows nothing
		// of tbs_sha256, which is ct_exporter's and Cert Spotter's issuance
		// id: given to q it is read as a certificate hash and finds
		// nothing. cert_sha256 is the first certificate seen, often the
		// precertificate, which crt.sh holds as well (the alerts carry the
		// same link). The serial search also finds the final certificate,
		// and works where a log gave only the TBSCertificate.
		SerialURL:  "https://crt.sh/?serial=" + url.QueryEscape(r.Serial),
		ParseError: display(r.ParseError),
	}
	if cert != "" {
		row.CertURL = "https://crt.sh/?sha256=" + url.QueryEscape(cert)
	}
	if cn := display(r.SubjectCN); cn != "" && !slices.Contains(row.Names, cn) {
		row.CN = cn
	}
	switch {
	case r.EmbeddedSCTs < 0:
		row.SCTs = "precert"
	default:
		row.SCTs = fmt.Sprint(r.EmbeddedSCTs)
		// As CTCertificateTooFewSCTs: browsers want at least two.
		row.FewSCTs = r.EmbeddedSCTs < 2
	}
	return row
}

// display makes a certificate field printable ASCII. The state already
// escapes names, CN and issuer with watch.Escape, whose output passes
// through unchanged; anything else that is not printable ASCII (a caller
// that did not escape) is escaped here, so that invalid UTF-8 and control
// characters are shown as \x.. escapes, never as look-alikes. Markup stays
// as it is: html/template turns it into text.
func display(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return watch.Escape(s)
		}
	}
	return s
}

func nonZero(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k, n := range m {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02")
}

// ago says how long ago something was; a time in the future (clock skew
// between a log and this host) says so rather than showing a negative age.
func ago(d time.Duration) string {
	if d < 0 {
		return "in " + formatDuration(-d)
	}
	return formatDuration(d) + " ago"
}

// formatDuration is a short, human duration: 850ms, 42s, 5m10s, 3h12m, 2d4h.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
