package crtshfake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

func get(t *testing.T, u string) (*http.Response, []byte) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

func search(t *testing.T, s *Server, params string) []map[string]any {
	t.Helper()
	res, body := get(t, s.URL+"/?"+params)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("search %s: %s %s", params, res.Status, res.Header.Get("Content-Type"))
	}
	var rows []map[string]any
	if err := json.Unmarshal(body, &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestFakeIsFaithful(t *testing.T) {
	s := New()
	defer s.Close()
	root, err := testpki.NewRoot("Root", `Foo, "Bar" Inc.`)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := root.NewIntermediate("R11", "Let's Encrypt")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(cn string, names ...string) *testpki.Issued {
		iss, err := ca.Issue(testpki.Leaf{CN: cn, DNSNames: names, SCTs: 1})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	pair := issue("www.example.com", "www.example.com", "example.com")
	preID := s.Add(pair.Precert)
	finalID := s.AddWith(pair.Final, AddOptions{NullEntryTimestamp: true})
	s.Add(issue("", "notexample.com").Final)
	s.Add(issue("", "example.com.evil.net").Final)
	rootID := s.AddWith(root.DER, AddOptions{IssuerCAID: -1})
	expired, err := ca.Issue(testpki.Leaf{DNSNames: []string{"old.example.com"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	s.Add(expired.Final)

	rows := search(t, s, "Identity=example.com&exclude=expired&output=json")
	if len(rows) != 4 {
		t.Fatalf("%d rows for example.com, want the pair and two look-alikes", len(rows))
	}
	if got := len(search(t, s, "identity=EXAMPLE.COM&OUTPUT=json")); got != 5 {
		t.Fatalf("case-insensitive names without exclude: %d rows, want 5", got)
	}
	if got := search(t, s, "Identity="+url.QueryEscape("%.example.com")+"&output=json&exclude=expired"); len(got) != 2 {
		t.Fatalf("%%.example.com: %d rows, want the pair only (www.)", len(got))
	}
	byID := map[int64]map[string]any{}
	var fractions = map[int]bool{}
	for _, r := range rows {
		id := int64(r["id"].(float64))
		if id <= 1<<31 {
			t.Errorf("id %d is not beyond 2^31", id)
		}
		byID[id] = r
		nb := r["not_before"].(string)
		if strings.ContainsAny(nb, "Z+") {
			t.Errorf("not_before %q has a zone", nb)
		}
		if _, err := time.Parse("2006-01-02T15:04:05", nb); err != nil {
			t.Errorf("not_before %q: %v", nb, err)
		}
		_, frac, _ := strings.Cut(nb, ".")
		fractions[len(frac)] = true
		if _, ok := r["result_count"]; !ok {
			t.Error("no result_count")
		}
	}
	if len(fractions) < 2 {
		t.Errorf("fraction lengths do not vary: %v", fractions)
	}
	pre, final := byID[preID], byID[finalID]
	if pre["serial_number"] != final["serial_number"] || pre["serial_number"] == "" {
		t.Errorf("precert/final serials %v / %v", pre["serial_number"], final["serial_number"])
	}
	if final["entry_timestamp"] != nil || pre["entry_timestamp"] == nil {
		t.Errorf("entry_timestamp: precert %v, final %v", pre["entry_timestamp"], final["entry_timestamp"])
	}
	if pre["name_value"] != "www.example.com\nexample.com" {
		t.Errorf("name_value = %q", pre["name_value"])
	}
	if pre["issuer_name"] != "C=US, O=Let's Encrypt, CN=R11" {
		t.Errorf("issuer_name = %q", pre["issuer_name"])
	}
	for _, r := range rows {
		if strings.HasPrefix(r["name_value"].(string), "notexample") {
			if _, ok := r["common_name"]; ok {
				t.Error("common_name present without a CN")
			}
		}
	}
	// Newest first.
	if int64(rows[0]["id"].(float64)) < int64(rows[1]["id"].(float64)) && rows[0]["entry_timestamp"] != nil {
		t.Error("rows are not newest first")
	}
	rootRows := search(t, s, "Identity=Root&output=json")
	if len(rootRows) != 1 || rootRows[0]["issuer_ca_id"].(float64) != -1 || rootRows[0]["issuer_name"] != `C=US, O="Foo, \"Bar\" Inc.", CN=Root` {
		t.Errorf("root row = %v (id %d)", rootRows, rootID)
	}

	// Silent truncation: result_count tells, nothing else does.
	s.TruncateAt = 2
	cut := search(t, s, "Identity=example.com&output=json")
	if len(cut) != 2 || cut[0]["result_count"].(float64) != 5 {
		t.Errorf("truncated: %d rows, result_count %v", len(cut), cut[0]["result_count"])
	}

	// Downloads by id and by SHA-256.
	sum := sha256.Sum256(pair.Final)
	for _, d := range []string{strconv.FormatInt(finalID, 10), hex.EncodeToString(sum[:])} {
		res, body := get(t, s.URL+"/?d="+d)
		block, _ := pem.Decode(body)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/pkix-cert" || block == nil || string(block.Bytes) != string(pair.Final) {
			t.Errorf("?d=%s: %s, PEM ok %v", d, res.Status, block != nil)
		}
	}
	if res, body := get(t, s.URL+"/?d=1"); res.StatusCode != 404 || len(body) != 0 {
		t.Errorf("unknown id: %s %q", res.Status, body)
	}
}

func TestFakeFaults(t *testing.T) {
	s := New()
	defer s.Close()
	for _, tc := range []struct {
		f      Fault
		status int
		ctype  string
		check  func(h http.Header, body []byte) bool
	}{
		{Fault429, 429, "text/html", func(h http.Header, _ []byte) bool { return h.Get("Retry-After") == "" }},
		{Fault429RetryAfter, 429, "text/html", func(h http.Header, _ []byte) bool { return h.Get("Retry-After") == "1" }},
		{Fault502, 502, "text/html", nil},
		{Fault503, 503, "text/plain; charset=UTF-8", nil},
		{FaultHTML200, 200, "text/html; charset=UTF-8", func(_ http.Header, b []byte) bool { return strings.Contains(string(b), "<HTML>") }},
		{FaultTruncatedJSON, 200, "application/json", func(_ http.Header, b []byte) bool { return !json.Valid(b) }},
		{FaultGarbage, 200, "application/octet-stream", func(_ http.Header, b []byte) bool { return !json.Valid(b) }},
	} {
		s.Fault(KindSearch, 1, tc.f)
		res, body := get(t, s.URL+"/?Identity=example.com&output=json")
		if res.StatusCode != tc.status || res.Header.Get("Content-Type") != tc.ctype || tc.check != nil && !tc.check(res.Header, body) {
			t.Errorf("fault %d: %s %q %.60q", tc.f, res.Status, res.Header.Get("Content-Type"), body)
		}
		// It recovers.
		if res, body := get(t, s.URL+"/?Identity=example.com&output=json"); res.StatusCode != 200 || string(body) != "[]" {
			t.Errorf("after fault %d: %s %q", tc.f, res.Status, body)
		}
	}
	// A download fault leaves searches alone.
	s.Fault(KindDownload, 1, Fault502)
	if res, _ := get(t, s.URL+"/?Identity=x&output=json"); res.StatusCode != 200 {
		t.Errorf("search hit a download fault: %s", res.Status)
	}
	reqs := s.Requests()
	if len(reqs) != 15 || reqs[0].Kind != KindSearch || reqs[0].Query != "example.com" || reqs[0].Status != 429 {
		t.Errorf("requests = %+v", reqs)
	}
}
