// Package crtshfake is a fake of crt.sh's JSON API for tests, faithful to the
// real one's quirks: substring identity matching that returns look-alikes,
// zone-less times with 0–3 fractional digits, null entry timestamps, issuer
// id -1, quotes in issuer names, "\n"-joined name_value, precertificate and
// final certificate as two rows with one serial, newest-first order, a silent
// cut at 10,000 rows, and the ways it fails: 429 without Retry-After, 502,
// 503, HTML with HTTP 200, truncated JSON.
package crtshfake

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// RequestKind tells searches from downloads.
type RequestKind int

// Request kinds.
const (
	KindAny RequestKind = iota
	KindSearch
	KindDownload
	KindOther
)

// Fault is a way crt.sh fails.
type Fault int

// Faults.
const (
	FaultNone          Fault = iota
	Fault429                 // nginx rate limit: no Retry-After
	Fault429RetryAfter       // with Retry-After: 1
	Fault502                 // the gateway
	Fault503                 // statement timeout, text/plain
	FaultHTML200             // an HTML error page with HTTP 200
	FaultTruncatedJSON       // a cut connection: a valid prefix of the array
	FaultGarbage             // bytes that are neither
)

// Request is one request served.
type Request struct {
	Kind   RequestKind
	Query  string // the identity searched or the d= value
	Status int
	Time   time.Time
}

// AddOptions set the quirks of one certificate.
type AddOptions struct {
	IssuerCAID         int // 0: derived from the issuer; -1: unknown issuer
	NullEntryTimestamp bool
	EntryTimestamp     time.Time // default: when added
}

type entry struct {
	id         int64
	der        []byte
	sha256     string
	identities []string
	cn         *string
	issuer     string
	issuerCAID int
	entryTime  *time.Time
	notBefore  time.Time
	notAfter   time.Time
	serial     string
}

type fault struct {
	kind  RequestKind
	n     int
	fault Fault
}

// Server is the fake. Add certificates, inject faults, read Requests.
type Server struct {
	*httptest.Server
	// TruncateAt is where search results are silently cut.
	TruncateAt int

	mu       sync.Mutex
	entries  []*entry
	nextID   int64
	faults   []fault
	delay    time.Duration
	requests []Request
}

// New starts a fake crt.sh; Close it when done.
func New() *Server {
	s := &Server{TruncateAt: 10000, nextID: 9000000000}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Add records a certificate as crt.sh does after ingesting it from a log, and
// returns its id.
func (s *Server) Add(der []byte) int64 { return s.AddWith(der, AddOptions{}) }

// AddWith is Add with quirks.
func (s *Server) AddWith(der []byte, o AddOptions) int64 {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(fmt.Sprintf("crtshfake: %v", err))
	}
	sum := sha256.Sum256(der)
	e := &entry{
		der:       der,
		sha256:    hex.EncodeToString(sum[:]),
		issuer:    crtshDN(cert.RawIssuer),
		notBefore: cert.NotBefore.UTC(),
		notAfter:  cert.NotAfter.UTC(),
		serial:    serialHex(cert.RawTBSCertificate),
	}
	if cert.Subject.CommonName != "" {
		cn := cert.Subject.CommonName
		e.cn = &cn
		e.identities = append(e.identities, cn)
	}
	e.identities = append(e.identities, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		e.identities = append(e.identities, ip.String())
	}
	e.identities = append(e.identities, cert.EmailAddresses...)
	e.issuerCAID = o.IssuerCAID
	if e.issuerCAID == 0 {
		h := sha256.Sum256([]byte(e.issuer))
		e.issuerCAID = 1 + int(h[0])<<8 | int(h[1])
	}
	if !o.NullEntryTimestamp {
		t := o.EntryTimestamp
		if t.IsZero() {
			t = time.Now().UTC()
		}
		e.entryTime = &t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Ids grow, with gaps: crt.sh ingests other certificates in between.
	s.nextID += 1 + int64(sum[0]%50)
	e.id = s.nextID
	s.entries = append(s.entries, e)
	return e.id
}

// Len is the number of certificates held.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Fault makes the next n requests of a kind fail with f. n = 0 clears the
// faults.
func (s *Server) Fault(kind RequestKind, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n == 0 {
		s.faults = nil
		return
	}
	s.faults = append(s.faults, fault{kind: kind, n: n, fault: f})
}

// SetDelay makes every response wait d first.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Requests returns every request served, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ResetRequests forgets the requests served.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	q := map[string]string{}
	for k, v := range r.URL.Query() {
		q[strings.ToLower(k)] = v[0]
	}
	kind, query := KindOther, ""
	switch {
	case q["d"] != "":
		kind, query = KindDownload, q["d"]
	case q["identity"] != "":
		kind, query = KindSearch, q["identity"]
	case q["q"] != "":
		kind, query = KindSearch, q["q"]
	}
	s.mu.Lock()
	delay := s.delay
	f := s.takeFault(kind)
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-r.Context().Done():
			t.Stop()
			s.record(kind, query, 0)
			return
		case <-t.C:
		}
	}
	status := s.respond(w, r, kind, query, q, f)
	s.record(kind, query, status)
}

func (s *Server) takeFault(kind RequestKind) Fault {
	for i := range s.faults {
		f := &s.faults[i]
		if f.n > 0 && (f.kind == KindAny || f.kind == kind) {
			f.n--
			return f.fault
		}
	}
	return FaultNone
}

func (s *Server) record(kind RequestKind, query string, status int) {
	s.mu.Lock()
	s.requests = append(s.requests, Request{Kind: kind, Query: query, Status: status, Time: time.Now()})
	s.mu.Unlock()
}

const nginx429 = "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

func (s *Server) respond(w http.ResponseWriter, r *http.Request, kind RequestKind, query string, q map[string]string, f Fault) int {
	switch f {
	case Fault429, Fault429RetryAfter:
		if f == Fault429RetryAfter {
			w.Header().Set("Retry-After", "1")
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, nginx429)
		return http.StatusTooManyRequests
	case Fault502:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>")
		return http.StatusBadGateway
	case Fault503:
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "ERROR: canceling statement due to statement timeout")
		return http.StatusServiceUnavailable
	case FaultHTML200:
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		fmt.Fprint(w, `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN"><HTML><HEAD><TITLE>crt.sh | ERROR!</TITLE></HEAD><BODY><DIV>Sorry, something went wrong... ERROR: canceling statement due to conflict with recovery</DIV></BODY></HTML>`)
		return http.StatusOK
	case FaultGarbage:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte{0x1f, 0x8b, 0x00, 0xff, 'g', 'a', 'r', 'b', 'a', 'g', 'e'})
		return http.StatusOK
	}

	switch kind {
	case KindDownload:
		e := s.find(query)
		if e == nil {
			w.WriteHeader(http.StatusNotFound)
			return http.StatusNotFound
		}
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%d.crt", e.id))
		w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.der}))
		return http.StatusOK
	case KindSearch:
		if q["output"] != "json" && !strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "text/html; charset=UTF-8")
			fmt.Fprintf(w, "<HTML><BODY>crt.sh results for %s</BODY></HTML>", htmlEscape(query))
			return http.StatusOK
		}
		body := s.search(query, q["exclude"] == "expired")
		if f == FaultTruncatedJSON {
			body = body[:len(body)*2/3]
			if len(body) < 2 {
				body = []byte(`[{"issuer_ca_id":1`)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
		return http.StatusOK
	}
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprint(w, "<HTML><BODY>Unsupported query</BODY></HTML>")
	return http.StatusBadRequest
}

func (s *Server) find(d string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		if strconv.FormatInt(e.id, 10) == d || strings.EqualFold(e.sha256, d) {
			return e
		}
	}
	return nil
}

// row is a JSON result row, fields in crt.sh's order.
type row struct {
	IssuerCAID     int     `json:"issuer_ca_id"`
	IssuerName     string  `json:"issuer_name"`
	CommonName     *string `json:"common_name,omitempty"`
	NameValue      string  `json:"name_value"`
	ID             int64   `json:"id"`
	EntryTimestamp *string `json:"entry_timestamp"`
	NotBefore      string  `json:"not_before"`
	NotAfter       string  `json:"not_after"`
	SerialNumber   string  `json:"serial_number"`
	ResultCount    int     `json:"result_count"`
}

func (s *Server) search(identity string, excludeExpired bool) []byte {
	re := ilike(identity)
	now := time.Now()
	s.mu.Lock()
	var matched []*entry
	var names [][]string
	for _, e := range s.entries {
		if excludeExpired && e.notAfter.Before(now) {
			continue
		}
		var hit []string
		for _, id := range e.identities {
			if re.MatchString(id) && !slices.Contains(hit, id) {
				hit = append(hit, id)
			}
		}
		if len(hit) > 0 {
			matched = append(matched, e)
			names = append(names, hit)
		}
	}
	limit := s.TruncateAt
	s.mu.Unlock()

	rows := make([]row, len(matched))
	for i, e := range matched {
		rows[i] = row{
			IssuerCAID:   e.issuerCAID,
			IssuerName:   e.issuer,
			CommonName:   e.cn,
			NameValue:    strings.Join(names[i], "\n"),
			ID:           e.id,
			NotBefore:    crtshTime(e.notBefore, e.id),
			NotAfter:     crtshTime(e.notAfter, e.id+1),
			SerialNumber: e.serial,
			ResultCount:  len(matched),
		}
		if e.entryTime != nil {
			t := crtshTime(*e.entryTime, e.id+2)
			rows[i].EntryTimestamp = &t
		}
	}
	// Newest first, as crt.sh sorts by entry_timestamp descending.
	slices.SortStableFunc(rows, func(a, b row) int {
		ta, tb := "", ""
		if a.EntryTimestamp != nil {
			ta = *a.EntryTimestamp
		}
		if b.EntryTimestamp != nil {
			tb = *b.EntryTimestamp
		}
		if c := strings.Compare(tb, ta); c != 0 {
			return c
		}
		return int(b.ID - a.ID)
	})
	if len(rows) > limit {
		rows = rows[:limit]
	}
	body, err := json.Marshal(rows)
	if err != nil {
		panic(err)
	}
	return body
}

// ilike compiles an SQL ILIKE pattern wrapped in %…%, as crt.sh's identity
// search does.
func ilike(q string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?is)^.*")
	for _, r := range q {
		switch r {
		case '%':
			b.WriteString(".*")
		case '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(".*$")
	return regexp.MustCompile(b.String())
}

// crtshTime formats like crt.sh: UTC, no zone, 0–3 fractional digits (chosen
// by seed so that rows differ).
func crtshTime(t time.Time, seed int64) string {
	base := t.UTC().Format("2006-01-02T15:04:05")
	ms := t.Nanosecond() / 1e6
	switch seed % 4 {
	case 1:
		return fmt.Sprintf("%s.%d", base, ms/100)
	case 2:
		return fmt.Sprintf("%s.%02d", base, ms/10)
	case 3:
		return fmt.Sprintf("%s.%03d", base, ms)
	}
	return base
}

var attrNames = map[string]string{"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.7": "L", "2.5.4.8": "ST"}

// crtshDN writes a DN as crt.sh does: in certificate order (C first), values
// with a comma or a quote in double quotes.
func crtshDN(raw []byte) string {
	var seq pkix.RDNSequence
	if _, err := asn1.Unmarshal(raw, &seq); err != nil {
		return ""
	}
	var parts []string
	for _, rdn := range seq {
		for _, atv := range rdn {
			name, ok := attrNames[atv.Type.String()]
			if !ok {
				name = atv.Type.String()
			}
			v := fmt.Sprint(atv.Value)
			if strings.ContainsAny(v, `,"+`) {
				v = `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
			}
			parts = append(parts, name+"="+v)
		}
	}
	return strings.Join(parts, ", ")
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// serialHex is the hex of the serial INTEGER's content bytes, leading zero
// included, as crt.sh's serial_number.
func serialHex(tbs []byte) string {
	in := cryptobyte.String(tbs)
	var body, serial cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) {
		return ""
	}
	if body.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		body.SkipASN1(cbasn1.Tag(0).Constructed().ContextSpecific())
	}
	if !body.ReadASN1(&serial, cbasn1.INTEGER) {
		return ""
	}
	return hex.EncodeToString(serial)
}
