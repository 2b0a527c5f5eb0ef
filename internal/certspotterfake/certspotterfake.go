// Package certspotterfake is an httptest fake of SSLMate's Cert Spotter API
// v1 (/v1/issuances) for tests of a client. It copies what a client has to
// get right:
//
//   - one issuance per TBSCertificate as RFC 6962 §3.2 defines it: a
//     precertificate and its final certificate share one id and one
//     tbs_sha256, even when a precertificate signing certificate signed the
//     precertificate (AddPrecertWithPSC); the TBS is spliced from the raw
//     bytes here, independently of the code under test;
//   - any certificate structure a log accepted is taken, read as tolerantly
//     as SSLMate reads it: dns_names are the DNS SANs of every SAN extension
//     and the subject CNs, lower-cased, IDNs in Punycode (see read.go);
//   - ids are decimal strings, increasing in discovery order, with gaps;
//     the answer is a JSON array, oldest discovered first, one page at a
//     time: a client pages with after=<last id> until it gets [];
//   - dns_names, issuer and cert_der are only present when asked for with
//     expand=; include_subdomains and match_wildcards mean what they mean
//     in the API (a query for www.example.com with match_wildcards also
//     finds *.example.com);
//   - a bearer token is required when one is set; a wrong one gets 401 with
//     a JSON error;
//   - the free tier's limit: at most Limit include_subdomains queries per
//     Window, then 429 with Retry-After and a JSON error;
//   - a domain that is not a registrable-looking name gets 400;
//   - it fails as told, for every request or for one domain only (Fail,
//     FailFor, SetDelayFor).
package certspotterfake

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

// DefaultPageSize is how many issuances one answer holds at most.
const DefaultPageSize = 100

// Request is a request the fake received.
type Request struct {
	Time              time.Time
	Domain            string
	IncludeSubdomains bool
	After             string
	Authorization     string
	Status            int // 0 when the client went away during a delay
}

// Server is the fake API. Its fields may be set before the first request.
type Server struct {
	*httptest.Server

	mu        sync.Mutex
	token     string
	pageSize  int
	limit     int
	window    time.Duration
	issuances []*issuance
	byTBS     map[[32]byte]*issuance
	nextID    uint64
	requests  []Request
	limited   []time.Time // include_subdomains queries within the window
	faults    []fault
	delays    map[string]time.Duration // by domain
}

type issuance struct {
	id        uint64
	tbs       [32]byte
	certDER   []byte
	certSHA   [32]byte
	spkiSHA   *[32]byte // nil when the certificate has no public key field
	dnsNames  []string
	issuer    string
	issuerKey [32]byte
	notBefore *time.Time // nil when it does not read
	notAfter  *time.Time
}

type fault struct {
	domain     string // "" for any
	status     int
	retryAfter string
	body       string
	ctype      string
}

// New starts a fake with no token required, DefaultPageSize and no rate limit.
func New() *Server {
	s := &Server{pageSize: DefaultPageSize, byTBS: map[[32]byte]*issuance{}, nextID: 1_000_000_000}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// SetToken requires Authorization: Bearer token.
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	s.token = token
	s.mu.Unlock()
}

// SetPageSize sets how many issuances an answer holds at most.
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	s.pageSize = n
	s.mu.Unlock()
}

// SetRateLimit allows at most n include_subdomains queries per window (the
// free tier: about 10 an hour); 0 removes the limit.
func (s *Server) SetRateLimit(n int, window time.Duration) {
	s.mu.Lock()
	s.limit, s.window, s.limited = n, window, nil
	s.mu.Unlock()
}

// Fail makes the next n requests fail with this status, Retry-After header
// (when not empty), content type and body.
func (s *Server) Fail(n, status int, retryAfter, contentType, body string) {
	s.FailFor("", n, status, retryAfter, contentType, body)
}

// FailFor is Fail for the next n queries of one domain only (the API
// failing or timing out on one large domain while it answers the others);
// "" is any request. Faults queue: a request takes the oldest one aimed at
// it. n <= 0 drops the faults aimed at domain.
func (s *Server) FailFor(domain string, n, status int, retryAfter, contentType, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		s.faults = slices.DeleteFunc(s.faults, func(f fault) bool { return f.domain == domain })
		return
	}
	for range n {
		s.faults = append(s.faults, fault{domain: domain, status: status, retryAfter: retryAfter, body: body, ctype: contentType})
	}
}

// SetDelayFor makes the answers to queries of domain wait d first (0:
// none); a client that goes away meanwhile gets nothing.
func (s *Server) SetDelayFor(domain string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.delays == nil {
		s.delays = map[string]time.Duration{}
	}
	if d <= 0 {
		delete(s.delays, domain)
		return
	}
	s.delays[domain] = d
}

// Add records a certificate or precertificate (DER) as Cert Spotter would
// on finding it in a log, and returns its issuance id. Any certificate
// structure is taken, however malformed its contents (see read.go); only
// bytes that are not a SEQUENCE starting with a TBSCertificate SEQUENCE are
// refused. A certificate whose TBSCertificate, as RFC 6962 §3.2 defines it,
// is already known joins that issuance: same id, and a final certificate's
// DER replaces a precertificate's. Add cannot know that a precertificate was
// signed by a precertificate signing certificate: use AddPrecertWithPSC.
func (s *Server) Add(der []byte) (string, error) {
	c, err := rawcert.Parse(der)
	if err != nil {
		return "", fmt.Errorf("certspotterfake: %w", err)
	}
	tbs, precert := precertTBS(c, nil)
	return s.add(der, c, tbs, precert, c.TBS.Field(rawcert.Issuer))
}

// AddPrecertWithPSC records a precertificate signed by psc, a precertificate
// signing certificate (a CA certificate with the CT extended key usage
// 1.3.6.1.4.1.11129.2.4.4 that signs precertificates for its own issuer,
// RFC 6962 §3.1). As the API keys issuances by the TBSCertificate of RFC
// 6962 §3.2, the issuance's tbs_sha256 is that of the precertificate's TBS
// with the poison removed, the issuer replaced by psc's issuer and the
// authority key identifier by psc's (x509.BuildPrecertTBS of
// certificate-transparency-go does the same on what it can parse), and its
// issuer is psc's issuer, not psc: the final certificate, signed by that
// issuer, joins the same issuance.
func (s *Server) AddPrecertWithPSC(precert, psc []byte) (string, error) {
	c, err := rawcert.Parse(precert)
	if err != nil {
		return "", fmt.Errorf("certspotterfake: precertificate: %w", err)
	}
	p, err := rawcert.Parse(psc)
	if err != nil {
		return "", fmt.Errorf("certspotterfake: precertificate signing certificate: %w", err)
	}
	if !isPSC(p) {
		return "", errors.New("certspotterfake: the issuer has no CT extended key usage: not a precertificate signing certificate")
	}
	tbs, isPre := precertTBS(c, p)
	if !isPre {
		return "", errors.New("certspotterfake: AddPrecertWithPSC: no CT poison extension: not a precertificate")
	}
	return s.add(precert, c, tbs, true, p.TBS.Field(rawcert.Issuer))
}

func (s *Server) add(der []byte, c *rawcert.Certificate, tbs []byte, precert bool, issuer rawcert.Element) (string, error) {
	key := sha256.Sum256(tbs)
	der = bytes.Clone(der)
	s.mu.Lock()
	defer s.mu.Unlock()
	if is, ok := s.byTBS[key]; ok {
		if !precert {
			is.certDER, is.certSHA = der, sha256.Sum256(der)
		}
		return strconv.FormatUint(is.id, 10), nil
	}
	s.nextID += 1 + uint64(len(s.issuances)%3) // gaps, as real ids have
	is := &issuance{
		id:       s.nextID,
		tbs:      key,
		certDER:  der,
		certSHA:  sha256.Sum256(der),
		dnsNames: dnsNames(c),
		issuer:   issuerName(issuer),
		// The fake does not see the issuer's key: the SHA-256 of its name
		// stands in, the same for every certificate of one issuer.
		issuerKey: sha256.Sum256(issuer.Full),
	}
	if spki := c.TBS.Field(rawcert.PublicKey); spki.Present() {
		sum := sha256.Sum256(spki.Full)
		is.spkiSHA = &sum
	}
	if v := c.TBS.Field(rawcert.Validity); v.Is(rawcert.ClassUniversal, rawcert.TagSequence) {
		times, _ := rawcert.Elements(v.Content)
		if len(times) > 0 {
			is.notBefore = parseTime(times[0])
		}
		if len(times) > 1 {
			is.notAfter = parseTime(times[1])
		}
	}
	s.issuances = append(s.issuances, is)
	s.byTBS[key] = is
	return strconv.FormatUint(is.id, 10), nil
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := Request{
		Time:              time.Now(),
		Domain:            q.Get("domain"),
		IncludeSubdomains: q.Get("include_subdomains") == "true",
		After:             q.Get("after"),
		Authorization:     r.Header.Get("Authorization"),
	}
	s.mu.Lock()
	delay := s.delays[req.Domain]
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.mu.Lock()
			s.requests = append(s.requests, req) // Status 0: nothing was sent
			s.mu.Unlock()
			return
		}
	}
	status, header, body := s.answer(r, q, req)
	req.Status = status
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	for k, v := range header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
	w.Write(body)
}

func jsonError(status int, code, msg string) (int, map[string]string, []byte) {
	b, _ := json.Marshal(apiError{Code: code, Message: msg})
	return status, map[string]string{"Content-Type": "application/json"}, b
}

func (s *Server) answer(r *http.Request, q url.Values, req Request) (int, map[string]string, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.IndexFunc(s.faults, func(f fault) bool { return f.domain == "" || f.domain == req.Domain }); i >= 0 {
		f := s.faults[i]
		s.faults = slices.Delete(s.faults, i, i+1)
		h := map[string]string{"Content-Type": f.ctype}
		if f.retryAfter != "" {
			h["Retry-After"] = f.retryAfter
		}
		return f.status, h, []byte(f.body)
	}
	if r.URL.Path != "/v1/issuances" {
		return jsonError(http.StatusNotFound, "not_found", "Not found")
	}
	if r.Method != http.MethodGet {
		return jsonError(http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed")
	}
	if s.token != "" && req.Authorization != "Bearer "+s.token {
		return jsonError(http.StatusUnauthorized, "unauthorized", "The API key you provided is not valid.")
	}
	domain := strings.ToLower(req.Domain)
	if domain == "" || !strings.Contains(strings.Trim(domain, "."), ".") || strings.ContainsAny(domain, "/: ") {
		return jsonError(http.StatusBadRequest, "invalid_domain", "The domain parameter is not a valid domain name.")
	}
	if req.IncludeSubdomains && s.limit > 0 {
		now := time.Now()
		kept := s.limited[:0]
		for _, t := range s.limited {
			if now.Sub(t) < s.window {
				kept = append(kept, t)
			}
		}
		s.limited = kept
		if len(s.limited) >= s.limit {
			wait := s.window - now.Sub(s.limited[0])
			code, h, b := jsonError(http.StatusTooManyRequests, "rate_limited",
				"You have exceeded the rate limit for include_subdomains queries.")
			h["Retry-After"] = strconv.Itoa(int(wait.Seconds()) + 1)
			return code, h, b
		}
		s.limited = append(s.limited, now)
	}
	var after uint64
	if a := q.Get("after"); a != "" {
		var err error
		if after, err = strconv.ParseUint(a, 10, 64); err != nil {
			return jsonError(http.StatusBadRequest, "invalid_after", "The after parameter is not a valid issuance id.")
		}
	}
	expand := map[string]bool{}
	for _, e := range q["expand"] {
		expand[e] = true
	}
	wildcards := q.Get("match_wildcards") == "true"
	page := []map[string]any{}
	for _, is := range s.issuances {
		if is.id <= after || !matches(is.dnsNames, domain, req.IncludeSubdomains, wildcards) {
			continue
		}
		page = append(page, render(is, expand))
		if len(page) == s.pageSize {
			break
		}
	}
	b, _ := json.Marshal(page)
	return http.StatusOK, map[string]string{"Content-Type": "application/json"}, b
}

func matches(names []string, domain string, subdomains, wildcards bool) bool {
	for _, n := range names {
		n = strings.ToLower(n)
		switch {
		case n == domain:
			return true
		case subdomains && strings.HasSuffix(n, "."+domain):
			return true
		case wildcards && strings.HasPrefix(n, "*.") && (n[2:] == domain[strings.Index(domain, ".")+1:]):
			return true
		}
	}
	return false
}

func render(is *issuance, expand map[string]bool) map[string]any {
	hexOf := func(b [32]byte) string { return hex.EncodeToString(b[:]) }
	m := map[string]any{
		"id":          strconv.FormatUint(is.id, 10),
		"tbs_sha256":  hexOf(is.tbs),
		"cert_sha256": hexOf(is.certSHA),
		"revoked":     false,
	}
	// The API documents no answer for what the fake cannot read: it
	// leaves the field out.
	if is.spkiSHA != nil {
		m["pubkey_sha256"] = hexOf(*is.spkiSHA)
	}
	if is.notBefore != nil {
		m["not_before"] = is.notBefore.UTC().Format(time.RFC3339)
	}
	if is.notAfter != nil {
		m["not_after"] = is.notAfter.UTC().Format(time.RFC3339)
	}
	if expand["dns_names"] {
		m["dns_names"] = append([]string{}, is.dnsNames...) // [] rather than null
	}
	if expand["issuer"] {
		m["issuer"] = map[string]any{
			"name":          is.issuer,
			"friendly_name": is.issuer,
			"pubkey_sha256": hexOf(is.issuerKey),
		}
	}
	if expand["cert_der"] {
		m["cert_der"] = is.certDER // []byte marshals as standard base64
	}
	return m
}
