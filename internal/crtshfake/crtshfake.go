// Package crtshfake is an httptest fake of crt.sh's JSON API for tests of a
// crt.sh client. It copies the quirks a client has to survive:
//
//   - identity search is NAME_VALUE ILIKE '%q%', so a plain name also finds
//     look-alikes (notexample.com, example.com.evil.net), and % and _ in the
//     query are SQL wildcards;
//   - a precertificate and its final certificate are two rows, two ids, one
//     serial_number, and that serial keeps the DER INTEGER's leading 00;
//   - ids are beyond 2^31, times carry no zone and 0–3 fractional digits,
//     entry_timestamp may be null, issuer_ca_id may be -1, common_name may be
//     absent and issuer_name may hold quotes;
//   - rows come newest first and are silently cut at 10,000;
//   - it keeps any certificate structure a log accepted, reading each field
//     on its own the way crt.sh's OpenSSL-based SQL functions do: a field
//     that does not read is null, or absent, and the others are still there
//     (see fields.go); identities are every subject attribute and SAN that
//     converts to text, escaped as PostgreSQL's bytea 'escape' does;
//   - ?ski=<hex> finds certificates, CA certificates included, by their
//     Subject Key Identifier, with JSON rows whose name_value is the SKI;
//   - it fails as crt.sh does: 429 without Retry-After, gateway 502, 503
//     statement timeouts, HTML with status 200, truncated JSON, garbage and
//     slowness, for every request or for one identity only (see Fault,
//     FaultFor, SetDelay and SetDelayFor).
package crtshfake

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/fnv"
	"html"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/rawcert"
)

// DefaultTruncateAt is where crt.sh silently cuts search results.
const DefaultTruncateAt = 10000

// firstID puts ids beyond 2^31 from the start, as crt.sh's are, so that a
// client storing them in an int32 breaks at once.
const firstID = 9_000_000_000

// RequestKind classifies requests, both to aim faults and in Requests.
type RequestKind int

const (
	// KindAny matches every request when aiming a fault; no Request has it.
	KindAny RequestKind = iota
	// KindSearch is ?Identity= or ?q=.
	KindSearch
	// KindDownload is ?d=.
	KindDownload
	// KindOther is anything else; the fake answers it with 400, 404 or 405.
	KindOther
	// KindSKI is ?ski=, the Subject Key Identifier search.
	KindSKI
)

func (k RequestKind) String() string {
	switch k {
	case KindAny:
		return "any"
	case KindSearch:
		return "search"
	case KindDownload:
		return "download"
	case KindOther:
		return "other"
	case KindSKI:
		return "ski"
	}
	return "RequestKind(" + strconv.Itoa(int(k)) + ")"
}

// Fault is a way crt.sh fails.
type Fault int

const (
	// FaultNone is no fault; Request.Fault has it for a normal answer.
	FaultNone Fault = iota
	// Fault429 is nginx's rate limit: 429, a small HTML page and no
	// Retry-After, so the client must pick its own backoff.
	Fault429
	// Fault429RetryAfter is 429 with Retry-After: 1.
	Fault429RetryAfter
	// Fault502 is the gateway's 502 Bad Gateway HTML page.
	Fault502
	// Fault503 is 503 with a text/plain "statement timeout" from PostgreSQL.
	Fault503
	// FaultHTML200 is crt.sh's HTML error page served with status 200.
	FaultHTML200
	// FaultTruncatedJSON is the answer the request would have had, cut in
	// the middle, with its status and Content-Type: for a search a valid
	// prefix of the JSON array labelled application/json, for a download
	// half a PEM block.
	FaultTruncatedJSON
	// FaultGarbage is 200 and bytes that are neither JSON nor PEM, labelled
	// with the Content-Type a good answer would have, so a client has to
	// look at the body to notice.
	FaultGarbage
)

func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case Fault429:
		return "429"
	case Fault429RetryAfter:
		return "429+Retry-After"
	case Fault502:
		return "502"
	case Fault503:
		return "503"
	case FaultHTML200:
		return "HTML-200"
	case FaultTruncatedJSON:
		return "truncated-JSON"
	case FaultGarbage:
		return "garbage"
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// Request is one request the fake answered (or gave up on).
type Request struct {
	Kind RequestKind
	// Query is the decoded identity searched, or the d= or ski= value; for
	// KindOther it is the raw query string.
	Query string
	// Status is the HTTP status sent, or 0 when the client went away during
	// the delay and nothing was sent.
	Status int
	// Time is when the request arrived.
	Time time.Time
	// Fault is the fault injected into the answer, FaultNone if none.
	Fault Fault
}

// AddOptions set the quirks of one certificate.
type AddOptions struct {
	// IssuerCAID is the issuer_ca_id; 0 derives a positive id from the
	// issuer DN (-1 when the issuer does not read as a name), -1 is
	// crt.sh's "issuer CA unknown".
	IssuerCAID int
	// NullEntryTimestamp makes entry_timestamp null.
	NullEntryTimestamp bool
	// EntryTimestamp is when a log ingested the certificate; zero is now.
	EntryTimestamp time.Time
}

// Server is the fake crt.sh. Its URL is the base: a client asks for
// URL+"/?Identity=..." and URL+"/?d=...".
type Server struct {
	*httptest.Server
	// TruncateAt is how many rows a search returns at most; 0 or less means
	// DefaultTruncateAt. Set it before making requests: it is read without
	// the lock.
	TruncateAt int

	mu       sync.Mutex
	certs    []*cert
	byID     map[int64]*cert
	bySHA256 map[[sha256.Size]byte]*cert
	nextID   int64
	rng      *rand.Rand
	faults   []pendingFault
	delay    time.Duration
	delays   map[string]time.Duration // by Query: one slow identity
	requests []Request
}

type cert struct {
	id  int64
	seq int // order of addition; picks the number of fraction digits
	der []byte
	// identities are crt.sh's NAME_VALUEs for the certificate: lower-cased,
	// distinct and sorted, which is what array_agg(DISTINCT) yields.
	identities []string
	commonName *string
	issuerName string
	issuerCAID int
	entry      *time.Time // millisecond precision, like a log's timestamp
	notBefore  *time.Time // nil: crt.sh could not read it (SQL NULL)
	notAfter   *time.Time
	serial     *string
	ski        []byte
}

type pendingFault struct {
	kind  RequestKind
	query string // "" for any
	skip  int    // requests it lets through before failing
	left  int
	fault Fault
}

// New starts a fake crt.sh. The caller Closes it.
func New() *Server {
	s := &Server{
		TruncateAt: DefaultTruncateAt,
		byID:       map[int64]*cert{},
		bySHA256:   map[[sha256.Size]byte]*cert{},
		nextID:     firstID,
		// Fixed seed: ids have gaps, as crt.sh's do because it ingests
		// other certificates in between, yet runs are reproducible.
		rng: rand.New(rand.NewPCG(0x637274, 0x7368)),
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Add records a certificate (DER, a precertificate or a final certificate)
// as crt.sh would after ingesting it from a log, and returns its crt.sh id.
// Any certificate structure is taken, however malformed its contents (see
// the package comment). crt.sh keys certificates by their SHA-256, so adding
// the same DER again returns the first id and changes nothing. Add panics if
// der is not even a SEQUENCE starting with a TBSCertificate SEQUENCE.
func (s *Server) Add(der []byte) int64 {
	return s.AddWith(der, AddOptions{})
}

// AddWith is Add with quirks for this certificate.
func (s *Server) AddWith(der []byte, o AddOptions) int64 {
	parsed, err := rawcert.Parse(der)
	if err != nil {
		panic(fmt.Sprintf("crtshfake: Add: %v", err))
	}
	f := readFields(parsed)
	c := &cert{
		der:        bytes.Clone(der),
		commonName: f.commonName,
		issuerName: f.issuerName,
		issuerCAID: o.IssuerCAID,
		notBefore:  f.notBefore,
		notAfter:   f.notAfter,
		serial:     f.serial,
		ski:        f.ski,
	}
	ids := f.identities
	slices.Sort(ids)
	c.identities = slices.Compact(ids)
	switch {
	case c.issuerCAID != 0:
	case !f.issuerOK:
		// No issuer name to look the CA up by.
		c.issuerCAID = -1
	default:
		h := fnv.New32a()
		h.Write([]byte(c.issuerName))
		c.issuerCAID = int(h.Sum32()%1_000_000) + 1
	}
	if !o.NullEntryTimestamp {
		t := o.EntryTimestamp
		if t.IsZero() {
			t = time.Now()
		}
		t = t.UTC().Truncate(time.Millisecond)
		c.entry = &t
	}

	sum := sha256.Sum256(der)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.bySHA256[sum]; ok {
		return old.id
	}
	s.nextID += 1 + s.rng.Int64N(50)
	c.id = s.nextID
	c.seq = len(s.certs)
	s.certs = append(s.certs, c)
	s.byID[c.id] = c
	s.bySHA256[sum] = c
	return c.id
}

// Len is the number of certificates held.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.certs)
}

// Fault makes the next n requests of the given kind (KindAny: of any kind)
// fail with f. Faults queue: each request takes the oldest one aimed at it.
// n <= 0 drops every queued fault, so a test can let the server recover.
func (s *Server) Fault(kind RequestKind, n int, f Fault) {
	s.FaultAfter(kind, 0, n, f)
}

// FaultAfter is Fault that first lets skip requests of the kind through,
// unharmed: a poll cut short at its second search, say. A request that a
// queued fault lets through takes no later fault.
func (s *Server) FaultAfter(kind RequestKind, skip, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		s.faults = nil
		return
	}
	s.faults = append(s.faults, pendingFault{kind: kind, skip: skip, left: n, fault: f})
}

// FaultFor is Fault aimed at the requests of the kind whose Query is query
// only: crt.sh answers 502 or a statement timeout for one big identity while
// it answers the others. n <= 0 drops the faults aimed at query.
func (s *Server) FaultFor(kind RequestKind, query string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		s.faults = slices.DeleteFunc(s.faults, func(pf pendingFault) bool { return pf.query == query })
		return
	}
	s.faults = append(s.faults, pendingFault{kind: kind, query: query, left: n, fault: f})
}

// SetDelay makes every response, faults included, wait d first (0: none).
// A client that goes away during the wait gets nothing, and no fault is
// used up on it.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetDelayFor is SetDelay for the requests whose Query is query only (a
// search that hangs for one identity); it replaces SetDelay's for them. 0
// removes it.
func (s *Server) SetDelayFor(query string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.delays == nil {
		s.delays = map[string]time.Duration{}
	}
	if d <= 0 {
		delete(s.delays, query)
		return
	}
	s.delays[query] = d
}

// Requests returns a copy of every request served, in the order the
// answers were finished.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ResetRequests forgets the requests served so far.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// takeFault must be called with s.mu held.
func (s *Server) takeFault(kind RequestKind, query string) Fault {
	for i := range s.faults {
		pf := &s.faults[i]
		if pf.kind != KindAny && pf.kind != kind || pf.query != "" && pf.query != query {
			continue
		}
		if pf.skip > 0 {
			pf.skip--
			return FaultNone
		}
		f := pf.fault
		if pf.left--; pf.left == 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		return f
	}
	return FaultNone
}

// response is built whole before writing so that faults can rework it.
type response struct {
	status      int
	contentType string
	header      map[string]string
	body        []byte
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	req := Request{Kind: KindOther, Query: r.URL.RawQuery, Time: time.Now()}
	params, perr := parseParams(r.URL.RawQuery)
	if perr == nil && r.URL.Path == "/" {
		// crt.sh takes the first parameter it knows in its own order,
		// which puts d before ski before identity before q.
		if d, ok := params["d"]; ok {
			req.Kind, req.Query = KindDownload, d
		} else if v, ok := params["ski"]; ok {
			req.Kind, req.Query = KindSKI, v
		} else if q, ok := params["identity"]; ok {
			req.Kind, req.Query = KindSearch, q
		} else if q, ok := params["q"]; ok {
			req.Kind, req.Query = KindSearch, q
		}
	}

	s.mu.Lock()
	delay, ok := s.delays[req.Query]
	if !ok || req.Kind == KindOther {
		delay = s.delay
	}
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.record(req)
			return
		}
	}

	s.mu.Lock()
	req.Fault = s.takeFault(req.Kind, req.Query)
	s.mu.Unlock()

	var resp response
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		resp = htmlPage(http.StatusMethodNotAllowed, "405 Method Not Allowed")
	case r.URL.Path != "/":
		resp = htmlPage(http.StatusNotFound, "404 Not Found")
	case req.Kind == KindDownload:
		resp = s.download(req.Query)
	case req.Kind == KindSearch:
		resp = s.search(req.Query, params, r.Header.Get("Accept"))
	case req.Kind == KindSKI:
		resp = s.skiSearch(req.Query, params, r.Header.Get("Accept"))
	default:
		resp = crtshError(http.StatusBadRequest, "Unsupported use")
	}
	resp = applyFault(req.Fault, resp)

	h := w.Header()
	if resp.contentType != "" {
		h.Set("Content-Type", resp.contentType)
	}
	for k, v := range resp.header {
		h.Set(k, v)
	}
	w.WriteHeader(resp.status)
	w.Write(resp.body)
	req.Status = resp.status
	s.record(req)
}

func (s *Server) record(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
}

// parseParams lower-cases parameter names, as crt.sh treats them
// case-insensitively. The first occurrence wins, so that the answer does not
// depend on map order.
func parseParams(raw string) (map[string]string, error) {
	params := map[string]string{}
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			return nil, err
		}
		v, err = url.QueryUnescape(v)
		if err != nil {
			return nil, err
		}
		k = strings.ToLower(k)
		if _, ok := params[k]; !ok {
			params[k] = v
		}
	}
	return params, nil
}

func (s *Server) download(d string) response {
	var c *cert
	s.mu.Lock()
	if id, err := strconv.ParseInt(d, 10, 64); err == nil {
		c = s.byID[id]
	} else if sum, err := hex.DecodeString(d); err == nil && len(sum) == sha256.Size {
		c = s.bySHA256[[sha256.Size]byte(sum)]
	}
	s.mu.Unlock()
	if c == nil {
		return response{status: http.StatusNotFound}
	}
	return response{
		status:      http.StatusOK,
		contentType: "application/pkix-cert",
		header:      map[string]string{"Content-Disposition": fmt.Sprintf("attachment; filename=%q", strconv.FormatInt(c.id, 10)+".crt")},
		body:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}),
	}
}

// row is one JSON result; the field order is crt.sh's. Nullable columns
// are pointers: row_to_json writes null for them.
type row struct {
	IssuerCAID     int     `json:"issuer_ca_id"`
	IssuerName     string  `json:"issuer_name"`
	CommonName     *string `json:"common_name,omitempty"`
	NameValue      string  `json:"name_value"`
	ID             int64   `json:"id"`
	EntryTimestamp *string `json:"entry_timestamp"`
	NotBefore      *string `json:"not_before"`
	NotAfter       *string `json:"not_after"`
	SerialNumber   *string `json:"serial_number"`
	ResultCount    int     `json:"result_count"`
}

func wantsJSON(params map[string]string, accept string) bool {
	if strings.EqualFold(params["output"], "json") {
		return true
	}
	for part := range strings.SplitSeq(accept, ",") {
		if mt, _, err := mime.ParseMediaType(part); err == nil && mt == "application/json" {
			return true
		}
	}
	return false
}

func htmlResults(q string) response {
	return response{
		status:      http.StatusOK,
		contentType: "text/html; charset=UTF-8",
		body:        []byte("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\">\n<HTML>\n<HEAD><TITLE>crt.sh | " + html.EscapeString(q) + "</TITLE></HEAD>\n<BODY>Certificates matching " + html.EscapeString(q) + "</BODY>\n</HTML>\n"),
	}
}

// expired is crt.sh's exclude=expired test, x509_notAfter(c) >= now() in
// SQL: a NULL not_after compares as NULL, so a certificate whose not_after
// crt.sh cannot read is left out as if expired.
func (c *cert) expired(now time.Time) bool {
	return c.notAfter == nil || c.notAfter.Before(now)
}

type match struct {
	c     *cert
	names []string
}

func (s *Server) search(q string, params map[string]string, accept string) response {
	if q == "" {
		return crtshError(http.StatusBadRequest, "Unsupported use")
	}
	if !wantsJSON(params, accept) {
		return htmlResults(q)
	}
	excludeExpired := strings.EqualFold(params["exclude"], "expired")
	pattern := compileLike("%" + q + "%")
	now := time.Now()

	var matches []match
	s.mu.Lock()
	for _, c := range s.certs {
		if excludeExpired && c.expired(now) {
			continue
		}
		var names []string
		for _, id := range c.identities {
			if pattern.match(id) {
				names = append(names, id)
			}
		}
		if names != nil {
			matches = append(matches, match{c, names})
		}
	}
	s.mu.Unlock()

	total := len(matches)
	limit := s.TruncateAt
	if limit <= 0 {
		limit = DefaultTruncateAt
	}
	return jsonRows(matches, limit, func(c *cert, names []string) row {
		r := c.row(strings.Join(names, "\n"))
		r.CommonName = c.commonName
		r.ResultCount = total
		return r
	})
}

// skiSearch is crt.sh's Subject Key Identifier search: the value is hex,
// colons and whitespace allowed, an odd digit count read as if a 0 led;
// rows are every certificate whose SKI is those bytes, with name_value the
// SKI in lower-case hex. Unlike an identity search it has no common_name
// column, no result count (0) and no 10,000-row cut.
func (s *Server) skiSearch(v string, params map[string]string, accept string) response {
	v = strings.Trim(v, " ")
	if v == "" {
		return crtshError(http.StatusBadRequest, "Unsupported use")
	}
	ski, ok := pgHexDecode(strings.ReplaceAll(v, ":", ""))
	if !ok {
		return crtshError(http.StatusBadRequest, "Invalid value: '"+v+"'")
	}
	if !wantsJSON(params, accept) {
		return htmlResults("SKI#" + hex.EncodeToString(ski))
	}
	excludeExpired := strings.EqualFold(params["exclude"], "expired")
	now := time.Now()
	var matches []match
	s.mu.Lock()
	for _, c := range s.certs {
		if c.ski == nil || !bytes.Equal(c.ski, ski) || excludeExpired && c.expired(now) {
			continue
		}
		matches = append(matches, match{c: c})
	}
	s.mu.Unlock()
	return jsonRows(matches, len(matches), func(c *cert, _ []string) row {
		return c.row(hex.EncodeToString(c.ski))
	})
}

// pgHexDecode is crt.sh's decode(v, 'hex'), retried with a 0 in front when
// it fails (an odd digit count).
func pgHexDecode(v string) ([]byte, bool) {
	if b, ok := pgHex(v); ok {
		return b, true
	}
	return pgHex("0" + v)
}

// pgHex is PostgreSQL's hex decoding: pairs of hex digits, whitespace
// skipped between pairs but not inside one.
func pgHex(v string) ([]byte, bool) {
	var out []byte
	for i := 0; i < len(v); {
		if strings.IndexByte(" \t\n\r", v[i]) >= 0 {
			i++
			continue
		}
		if i+2 > len(v) {
			return nil, false
		}
		b, err := hex.DecodeString(v[i : i+2])
		if err != nil {
			return nil, false
		}
		out = append(out, b[0])
		i += 2
	}
	return out, true
}

func (c *cert) row(nameValue string) row {
	r := row{
		IssuerCAID: c.issuerCAID,
		IssuerName: c.issuerName,
		NameValue:  nameValue,
		ID:         c.id,
		// Certificate times are whole seconds; the fraction digits vary
		// from row to row (see formatTime).
		NotBefore:    formatNullTime(c.notBefore, c.seq%4),
		NotAfter:     formatNullTime(c.notAfter, (c.seq+1)%4),
		SerialNumber: c.serial,
	}
	if c.entry != nil {
		ts := formatTime(*c.entry, 0)
		r.EntryTimestamp = &ts
	}
	return r
}

// jsonRows sorts matches as crt.sh does, keeps the first limit and renders
// them with mk.
func jsonRows(matches []match, limit int, mk func(c *cert, names []string) row) response {
	// ORDER BY entry_timestamp DESC, id DESC: PostgreSQL puts NULLs first
	// when sorting descending.
	slices.SortFunc(matches, func(a, b match) int {
		ea, eb := a.c.entry, b.c.entry
		switch {
		case ea == nil && eb != nil:
			return -1
		case ea != nil && eb == nil:
			return 1
		case ea != nil && eb != nil:
			if c := eb.Compare(*ea); c != 0 {
				return c
			}
		}
		if a.c.id > b.c.id {
			return -1
		}
		if a.c.id < b.c.id {
			return 1
		}
		return 0
	})
	if len(matches) > limit {
		matches = matches[:limit]
	}
	rows := make([]row, 0, len(matches))
	for _, m := range matches {
		rows = append(rows, mk(m.c, m.names))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// PostgreSQL's JSON leaves <, > and & alone.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rows); err != nil {
		panic(err) // rows hold only strings and numbers
	}
	return response{
		status:      http.StatusOK,
		contentType: "application/json",
		body:        bytes.TrimSuffix(buf.Bytes(), []byte("\n")),
	}
}

func formatNullTime(t *time.Time, minDigits int) *string {
	if t == nil {
		return nil
	}
	s := formatTime(*t, minDigits)
	return &s
}

// formatTime renders t the way PostgreSQL renders a timestamp without time
// zone in JSON: UTC, no zone, and trailing fractional zeros dropped. Padding
// the fraction with zeros to minDigits keeps the value while varying the
// shape across rows, since certificate times are whole seconds and would
// otherwise never show a fraction.
func formatTime(t time.Time, minDigits int) string {
	t = t.UTC()
	s := t.Format("2006-01-02T15:04:05")
	frac := strings.TrimRight(fmt.Sprintf("%03d", t.Nanosecond()/int(time.Millisecond)), "0")
	for len(frac) < minDigits {
		frac += "0"
	}
	if frac != "" {
		s += "." + frac
	}
	return s
}

func applyFault(f Fault, resp response) response {
	switch f {
	case Fault429:
		return nginxPage(http.StatusTooManyRequests, "429 Too Many Requests")
	case Fault429RetryAfter:
		p := nginxPage(http.StatusTooManyRequests, "429 Too Many Requests")
		p.header = map[string]string{"Retry-After": "1"}
		return p
	case Fault502:
		return nginxPage(http.StatusBadGateway, "502 Bad Gateway")
	case Fault503:
		return response{
			status:      http.StatusServiceUnavailable,
			contentType: "text/plain; charset=UTF-8",
			body:        []byte("ERROR: canceling statement due to statement timeout\n"),
		}
	case FaultHTML200:
		return crtshError(http.StatusOK, "ERROR: canceling statement due to conflict with recovery")
	case FaultTruncatedJSON:
		// Cut strictly inside the body, so that even "[]" becomes "[".
		if len(resp.body) >= 2 {
			resp.body = resp.body[:len(resp.body)/2]
		}
		return resp
	case FaultGarbage:
		ct := resp.contentType
		if ct == "" {
			ct = "application/json"
		}
		// A gzip header and binary junk: what a mislabelled compressed
		// or corrupted answer looks like.
		return response{
			status:      http.StatusOK,
			contentType: ct,
			body:        []byte{0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xff, 0xfe, 0x00, '{', 0x80, '[', 0xc3},
		}
	}
	return resp
}

func nginxPage(status int, title string) response {
	return response{
		status:      status,
		contentType: "text/html",
		body:        []byte("<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" + title + "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"),
	}
}

func htmlPage(status int, title string) response {
	return response{
		status:      status,
		contentType: "text/html; charset=UTF-8",
		body:        []byte("<HTML><HEAD><TITLE>" + title + "</TITLE></HEAD><BODY>" + title + "</BODY></HTML>\n"),
	}
}

func crtshError(status int, msg string) response {
	return response{
		status:      status,
		contentType: "text/html; charset=UTF-8",
		body: []byte("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\" \"http://www.w3.org/TR/html4/strict.dtd\">\n<HTML>\n<HEAD>\n  <TITLE>crt.sh | ERROR!</TITLE>\n</HEAD>\n<BODY>\n" +
			"  <DIV class=\"error\">" + html.EscapeString(msg) + "</DIV>\n</BODY>\n</HTML>\n"),
	}
}

// likePattern is a compiled SQL ILIKE pattern: % matches any run, _ any one
// character, a backslash makes the next character literal. Matching is on
// lower-cased text, which is how ILIKE ignores case.
type likePattern []likeToken

type likeToken struct {
	kind byte // '%', '_' or 0 for a literal
	r    rune
}

func compileLike(p string) likePattern {
	var toks likePattern
	rs := []rune(strings.ToLower(p))
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '%':
			toks = append(toks, likeToken{kind: '%'})
		case '_':
			toks = append(toks, likeToken{kind: '_'})
		case '\\':
			if i+1 < len(rs) {
				i++
			}
			toks = append(toks, likeToken{r: rs[i]})
		default:
			toks = append(toks, likeToken{r: rs[i]})
		}
	}
	return toks
}

// match is the classic wildcard walk: on a mismatch, go back to the last %
// and let it swallow one more character.
func (p likePattern) match(s string) bool {
	rs := []rune(strings.ToLower(s))
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(rs) {
		switch {
		case pi < len(p) && p[pi].kind == '%':
			star, mark = pi, si
			pi++
		case pi < len(p) && (p[pi].kind == '_' || p[pi].kind == 0 && p[pi].r == rs[si]):
			pi++
			si++
		case star >= 0:
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi].kind == '%' {
		pi++
	}
	return pi == len(p)
}
