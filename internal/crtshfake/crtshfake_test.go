package crtshfake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// testRow mirrors a crt.sh row with the Go types a client would use, so that
// decoding checks the JSON types too (an id written as 9e9 would not decode).
type testRow struct {
	IssuerCAID     int     `json:"issuer_ca_id"`
	IssuerName     string  `json:"issuer_name"`
	CommonName     *string `json:"common_name"`
	NameValue      string  `json:"name_value"`
	ID             int64   `json:"id"`
	EntryTimestamp *string `json:"entry_timestamp"`
	NotBefore      string  `json:"not_before"`
	NotAfter       string  `json:"not_after"`
	SerialNumber   string  `json:"serial_number"`
	ResultCount    int     `json:"result_count"`
}

var rowFields = []string{"issuer_ca_id", "issuer_name", "common_name", "name_value", "id", "entry_timestamp", "not_before", "not_after", "serial_number", "result_count"}

type pki struct {
	root, ca *testpki.CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	// The comma in the organisation makes crt.sh quote it in issuer_name.
	root, ca := testpki.NewChain(t, "Test Root", "Foo, Inc.", "Test Intermediate", "Foo, Inc.")
	return &pki{root: root, ca: ca}
}

func (p *pki) issue(t *testing.T, l testpki.Leaf) *testpki.Issued {
	t.Helper()
	if l.SCTs == 0 {
		l.SCTs = 2
	}
	iss, err := p.ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func newServer(t *testing.T) *Server {
	t.Helper()
	s := New()
	t.Cleanup(s.Close)
	return s
}

func do(t *testing.T, s *Server, rawQuery string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+"/?"+rawQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	res, err := s.Client().Do(req)
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

func mediaType(t *testing.T, res *http.Response) string {
	t.Helper()
	mt, _, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", res.Header.Get("Content-Type"), err)
	}
	return mt
}

func decodeRows(t *testing.T, body []byte) []testRow {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var rows []testRow
	if err := dec.Decode(&rows); err != nil {
		t.Fatalf("decoding %.200q: %v", body, err)
	}
	if rows == nil {
		t.Fatalf("body %q is not an array", body)
	}
	return rows
}

func search(t *testing.T, s *Server, rawQuery string) ([]testRow, []byte) {
	t.Helper()
	res, body := do(t, s, rawQuery, nil)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("?%s: %s, Content-Type %q", rawQuery, res.Status, res.Header.Get("Content-Type"))
	}
	return decodeRows(t, body), body
}

func ids(rows []testRow) []int64 {
	var out []int64
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

func sortedIDs(rows []testRow) []int64 {
	out := ids(rows)
	slices.Sort(out)
	return out
}

func byID(t *testing.T, rows []testRow, id int64) testRow {
	t.Helper()
	for _, r := range rows {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("id %d not among %v", id, ids(rows))
	return testRow{}
}

// rowKeys returns each row's keys in the order they appear in the body.
func rowKeys(t *testing.T, body []byte) [][]string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	expect := func(want json.Delim) {
		t.Helper()
		if tok, err := dec.Token(); err != nil || tok != want {
			t.Fatalf("token %v, %v; want %v", tok, err, want)
		}
	}
	var out [][]string
	expect('[')
	for dec.More() {
		expect('{')
		var keys []string
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, tok.(string))
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
		}
		expect('}')
		out = append(out, keys)
	}
	expect(']')
	return out
}

func TestPlainIdentityReturnsLookalikes(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	apex := s.Add(p.issue(t, testpki.Leaf{CN: "example.com", DNSNames: []string{"example.com", "www.example.com"}}).Final)
	not := s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"notexample.com"}}).Final)
	evil := s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com.evil.net"}}).Final)
	s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"other.org"}}).Final)

	want := []int64{apex, not, evil}
	slices.Sort(want)
	for _, q := range []string{"example.com", "EXAMPLE.com"} {
		rows, _ := search(t, s, "Identity="+url.QueryEscape(q)+"&output=json")
		if got := sortedIDs(rows); !slices.Equal(got, want) {
			t.Errorf("%s: ids %v, want the apex and both look-alikes %v", q, got, want)
		}
		// name_value is what matched, not every identity of the certificate.
		if got := byID(t, rows, apex).NameValue; got != "example.com\nwww.example.com" {
			t.Errorf("%s: apex name_value %q", q, got)
		}
		if got := byID(t, rows, evil).NameValue; got != "example.com.evil.net" {
			t.Errorf("%s: look-alike name_value %q", q, got)
		}
	}
}

func TestSQLWildcards(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	apexOnly := s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}}).Final)
	both := s.Add(p.issue(t, testpki.Leaf{CN: "example.com", DNSNames: []string{"example.com", "www.example.com"}}).Final)
	ip := s.Add(p.issue(t, testpki.Leaf{IPs: []net.IP{net.ParseIP("192.0.2.10")}}).Final)

	rows, _ := search(t, s, "Identity="+url.QueryEscape("%.example.com")+"&output=json")
	if got := ids(rows); !slices.Equal(got, []int64{both}) {
		t.Fatalf("%%.example.com: ids %v, want only %d (not the apex-only %d)", got, both, apexOnly)
	}
	if rows[0].NameValue != "www.example.com" {
		t.Errorf("%%.example.com: name_value %q, want only the subdomain", rows[0].NameValue)
	}
	rows, _ = search(t, s, "q="+url.QueryEscape("192.0.2._0")+"&output=json")
	if got := ids(rows); !slices.Equal(got, []int64{ip}) || rows[0].NameValue != "192.0.2.10" {
		t.Errorf("IP with _: %+v", rows)
	}
}

func TestLike(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"%example.com%", "example.com", true},
		{"%example.com%", "notexample.com", true},
		{"%example.com%", "example.com.evil.net", true},
		{"%example.com%", "example.org", false},
		{"%.example.com%", "example.com", false},
		{"%.example.com%", "a.b.example.com", true},
		{"%EXAMPLE.COM%", "Www.Example.Com", true},
		{"ex_mple.com", "example.com", true},
		{"ex_mple.com", "exmple.com", false},
		{`a\%b`, "a%b", true},
		{`a\%b`, "axb", false},
		{`a\_b`, "axb", false},
		{"a%b%c", "abc", true},
		{"a%b%c", "aXbYc", true},
		{"a%b%c", "acb", false},
		{"%", "", true},
		{"", "", true},
		{"_", "", false},
	} {
		if got := compileLike(tc.pattern).match(tc.s); got != tc.want {
			t.Errorf("%q ILIKE %q = %v, want %v", tc.s, tc.pattern, got, tc.want)
		}
	}
}

func TestParameterNamesAndOutput(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	id := s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}}).Final)
	jsonAccept := http.Header{"Accept": {"application/json"}}
	for _, tc := range []struct {
		query  string
		header http.Header
		json   bool
	}{
		{"Identity=example.com&exclude=expired&output=json", nil, true},
		{"identity=example.com&output=json", nil, true},
		{"IDENTITY=example.com&Output=JSON&EXCLUDE=EXPIRED", nil, true},
		{"q=example.com&output=json", nil, true},
		{"Q=example.com&OUTPUT=json", nil, true},
		{"Identity=example.com", jsonAccept, true},
		{"Identity=example.com", nil, false},
		{"Identity=example.com&output=atom", nil, false},
	} {
		res, body := do(t, s, tc.query, tc.header)
		if res.StatusCode != http.StatusOK {
			t.Errorf("?%s: %s", tc.query, res.Status)
			continue
		}
		if !tc.json {
			if mt := mediaType(t, res); mt != "text/html" {
				t.Errorf("?%s without JSON asked for: %s", tc.query, mt)
			}
			continue
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("?%s: Content-Type %q", tc.query, ct)
			continue
		}
		if got := ids(decodeRows(t, body)); !slices.Equal(got, []int64{id}) {
			t.Errorf("?%s: ids %v, want [%d]", tc.query, got, id)
		}
	}
	for _, q := range []string{"foo=bar", "", "Identity=&output=json"} {
		res, _ := do(t, s, q, nil)
		if res.StatusCode != http.StatusBadRequest || mediaType(t, res) != "text/html" {
			t.Errorf("?%s: %s %s, want 400 HTML", q, res.Status, res.Header.Get("Content-Type"))
		}
	}
}

func TestExcludeExpired(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	live := s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"live.example.com"}}).Final)
	dead := s.Add(p.issue(t, testpki.Leaf{
		DNSNames:  []string{"dead.example.com"},
		NotBefore: time.Now().Add(-100 * 24 * time.Hour).Truncate(time.Second),
		NotAfter:  time.Now().Add(-10 * 24 * time.Hour).Truncate(time.Second),
	}).Final)
	rows, _ := search(t, s, "Identity=example.com&output=json")
	if got, want := sortedIDs(rows), []int64{live, dead}; !slices.Equal(got, want) {
		t.Errorf("without exclude: ids %v, want %v", got, want)
	}
	rows, _ = search(t, s, "Identity=example.com&output=json&exclude=expired")
	if got := ids(rows); !slices.Equal(got, []int64{live}) {
		t.Errorf("exclude=expired: ids %v, want [%d]", got, live)
	}
	if rows[0].ResultCount != 1 {
		t.Errorf("exclude=expired: result_count %d counts the expired one", rows[0].ResultCount)
	}
}

func TestPrecertAndFinalCertificate(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	// The high bit set makes DER prepend a 00 that crt.sh keeps.
	serial := new(big.Int).Lsh(big.NewInt(0x80), 120)
	iss := p.issue(t, testpki.Leaf{CN: "example.com", DNSNames: []string{"example.com"}, Serial: serial})
	preID, finalID := s.Add(iss.Precert), s.Add(iss.Final)
	if preID == finalID {
		t.Fatalf("precertificate and certificate share id %d", preID)
	}
	for _, id := range []int64{preID, finalID} {
		if id <= 1<<31 {
			t.Errorf("id %d fits in an int32", id)
		}
	}
	if d := finalID - preID; d < 1 || d > 50 {
		t.Errorf("ids %d then %d: step %d, want 1..50", preID, finalID, d)
	}
	if s.Len() != 2 {
		t.Errorf("Len = %d, want 2", s.Len())
	}

	rows, _ := search(t, s, "Identity=example.com&output=json")
	if len(rows) != 2 {
		t.Fatalf("%d rows, want the precertificate and the certificate", len(rows))
	}
	pre, final := byID(t, rows, preID), byID(t, rows, finalID)
	want := "0080" + strings.Repeat("00", 15)
	if pre.SerialNumber != want || final.SerialNumber != want {
		t.Errorf("serial_number %q / %q, want %q (big.Int would say %x)", pre.SerialNumber, final.SerialNumber, want, serial)
	}
}

func TestAddingTheSameCertificateTwice(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	der := p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}}).Final
	first := s.Add(der)
	if again := s.AddWith(der, AddOptions{IssuerCAID: -1}); again != first {
		t.Errorf("second Add gave id %d, want %d", again, first)
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
}

func TestCommonNameAndFieldOrder(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	withCN := s.Add(p.issue(t, testpki.Leaf{CN: "www.example.com", DNSNames: []string{"www.example.com"}}).Final)
	withoutCN := s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}}).Final)
	rows, body := search(t, s, "Identity=example.com&output=json")
	if cn := byID(t, rows, withCN).CommonName; cn == nil || *cn != "www.example.com" {
		t.Errorf("common_name %v, want www.example.com", cn)
	}
	noCN := slices.DeleteFunc(slices.Clone(rowFields), func(f string) bool { return f == "common_name" })
	for i, keys := range rowKeys(t, body) {
		want := rowFields
		if rows[i].ID == withoutCN {
			want = noCN
		}
		if !slices.Equal(keys, want) {
			t.Errorf("row %d (id %d) keys %v, want %v", i, rows[i].ID, keys, want)
		}
	}
}

func TestTimestamps(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	nb := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	na := time.Date(2099, 6, 2, 5, 6, 7, 0, time.UTC)
	base := time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC)
	var added []int64
	for i := range 4 {
		added = append(added, s.AddWith(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}, NotBefore: nb, NotAfter: na}).Final,
			AddOptions{EntryTimestamp: base.Add(time.Duration(i) * time.Minute)}))
	}
	// Same entry time as the newest: the larger id comes first.
	tie := s.AddWith(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}, NotBefore: nb, NotAfter: na}).Final,
		AddOptions{EntryTimestamp: base.Add(3 * time.Minute)})
	null := s.AddWith(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}, NotBefore: nb, NotAfter: na}).Final,
		AddOptions{NullEntryTimestamp: true})
	ms := s.AddWith(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}, NotBefore: nb, NotAfter: na}).Final,
		AddOptions{EntryTimestamp: base.Add(-time.Hour + 120*time.Millisecond + 999*time.Microsecond)})

	rows, body := search(t, s, "Identity=example.com&output=json")
	// PostgreSQL sorts NULLs first in descending order.
	want := []int64{null, tie, added[3], added[2], added[1], added[0], ms}
	if got := ids(rows); !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if bytes.Contains(body, []byte(`Z"`)) || bytes.Contains(body, []byte(`+00`)) {
		t.Errorf("a time carries a zone: %s", body)
	}
	fractions := map[int]bool{}
	for _, r := range rows {
		for _, ts := range []string{r.NotBefore, r.NotAfter} {
			if _, err := time.Parse(time.RFC3339, ts); err == nil {
				t.Errorf("%q parses as RFC 3339, so it has a zone", ts)
			}
			_, frac, _ := strings.Cut(ts, ".")
			fractions[len(frac)] = true
		}
		got, err := time.Parse("2006-01-02T15:04:05", r.NotBefore)
		if err != nil || !got.Equal(nb) {
			t.Errorf("not_before %q = %v, %v; want %v", r.NotBefore, got, err, nb)
		}
		if got, err := time.Parse("2006-01-02T15:04:05", r.NotAfter); err != nil || !got.Equal(na) {
			t.Errorf("not_after %q = %v, %v; want %v", r.NotAfter, got, err, na)
		}
	}
	if len(fractions) != 4 {
		t.Errorf("fraction lengths seen %v, want all of 0..3", fractions)
	}

	if r := byID(t, rows, null); r.EntryTimestamp != nil {
		t.Errorf("entry_timestamp %q, want null", *r.EntryTimestamp)
	}
	if !bytes.Contains(body, []byte(`"entry_timestamp":null`)) {
		t.Errorf("no literal null entry_timestamp in %s", body)
	}
	for id, want := range map[int64]string{added[1]: "2025-03-04T06:01:00", ms: "2025-03-04T05:00:00.12"} {
		if r := byID(t, rows, id); r.EntryTimestamp == nil || *r.EntryTimestamp != want {
			t.Errorf("id %d: entry_timestamp %v, want %q", id, r.EntryTimestamp, want)
		}
	}
}

func TestIssuer(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	a := s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"a.example.com"}}).Final)
	b := s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"b.example.com"}}).Final)
	unknown := s.AddWith(p.issue(t, testpki.Leaf{DNSNames: []string{"c.example.com"}}).Final, AddOptions{IssuerCAID: -1})
	rows, body := search(t, s, "Identity=example.com&output=json")

	const want = `C=US, O="Foo, Inc.", CN=Test Intermediate`
	if !bytes.Contains(body, []byte(`"issuer_name":"C=US, O=\"Foo, Inc.\", CN=Test Intermediate"`)) {
		t.Errorf("issuer_name is not JSON-escaped as expected: %s", body)
	}
	for _, r := range rows {
		if r.IssuerName != want {
			t.Errorf("id %d: issuer_name %q, want %q", r.ID, r.IssuerName, want)
		}
	}
	ra, rb := byID(t, rows, a), byID(t, rows, b)
	if ra.IssuerCAID <= 0 || ra.IssuerCAID != rb.IssuerCAID {
		t.Errorf("issuer_ca_id %d and %d, want one positive id per issuer", ra.IssuerCAID, rb.IssuerCAID)
	}
	if got := byID(t, rows, unknown).IssuerCAID; got != -1 {
		t.Errorf("unknown issuer: issuer_ca_id %d, want -1", got)
	}
}

func TestDNString(t *testing.T) {
	for _, tc := range []struct {
		name pkix.Name
		want string
	}{
		{pkix.Name{Country: []string{"US"}, Organization: []string{"Let's Encrypt"}, CommonName: "R11"}, "C=US, O=Let's Encrypt, CN=R11"},
		{pkix.Name{Organization: []string{"Cloudflare, Inc."}}, `O="Cloudflare, Inc."`},
		{pkix.Name{Organization: []string{`Say "Hi"`}}, `O=Say \"Hi\"`},
		{pkix.Name{Organization: []string{`Say "Hi", Inc.`}}, `O="Say \"Hi\", Inc."`},
	} {
		raw, err := asn1.Marshal(tc.name.ToRDNSequence())
		if err != nil {
			t.Fatal(err)
		}
		got, err := dnString(raw)
		if err != nil || got != tc.want {
			t.Errorf("dnString(%v) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
		// What a client decodes must be what crt.sh wrote.
		enc, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		var back string
		if err := json.Unmarshal(enc, &back); err != nil || back != tc.want {
			t.Errorf("%q round-trips as %q, %v", tc.want, back, err)
		}
	}
}

func TestSilentTruncation(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	if s.TruncateAt != DefaultTruncateAt || DefaultTruncateAt != 10000 {
		t.Fatalf("TruncateAt = %d by default", s.TruncateAt)
	}
	s.TruncateAt = 3
	base := time.Now().Add(-time.Hour)
	var added []int64
	for i := range 5 {
		added = append(added, s.AddWith(p.issue(t, testpki.Leaf{DNSNames: []string{"h" + strconv.Itoa(i) + ".example.com"}}).Final,
			AddOptions{EntryTimestamp: base.Add(time.Duration(i) * time.Second)}))
	}
	rows, _ := search(t, s, "Identity=example.com&output=json")
	if got, want := ids(rows), []int64{added[4], added[3], added[2]}; !slices.Equal(got, want) {
		t.Fatalf("ids %v, want the 3 newest %v", got, want)
	}
	for _, r := range rows {
		if r.ResultCount != 5 {
			t.Errorf("id %d: result_count %d, want 5", r.ID, r.ResultCount)
		}
	}
	rows, _ = search(t, s, "Identity=h4.example.com&output=json")
	if len(rows) != 1 || rows[0].ResultCount != 1 {
		t.Errorf("under the limit: %+v", rows)
	}
}

func TestDownload(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	iss := p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}})
	preID := s.Add(iss.Precert)
	finalID := s.Add(iss.Final)
	sum := sha256.Sum256(iss.Final)
	for d, want := range map[string][]byte{
		strconv.FormatInt(preID, 10):                iss.Precert,
		strconv.FormatInt(finalID, 10):              iss.Final,
		hex.EncodeToString(sum[:]):                  iss.Final,
		strings.ToUpper(hex.EncodeToString(sum[:])): iss.Final,
	} {
		res, body := do(t, s, "d="+d, nil)
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/pkix-cert" {
			t.Errorf("?d=%s: %s, Content-Type %q", d, res.Status, res.Header.Get("Content-Type"))
			continue
		}
		block, rest := pem.Decode(body)
		if block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, want) || len(bytes.TrimSpace(rest)) != 0 {
			t.Errorf("?d=%s: body is not the PEM of the certificate: %.100q", d, body)
		}
	}
	other := sha256.Sum256([]byte("no such certificate"))
	for _, d := range []string{"1", strconv.FormatInt(finalID+1, 10), hex.EncodeToString(other[:]), "nonsense"} {
		res, body := do(t, s, "d="+d, nil)
		if res.StatusCode != http.StatusNotFound || len(body) != 0 {
			t.Errorf("?d=%s: %s %q, want 404 and no body", d, res.Status, body)
		}
	}
}

func TestFaults(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	der := p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}}).Final
	id := s.Add(der)
	const q = "Identity=example.com&output=json"
	_, good := search(t, s, q)

	for _, tc := range []struct {
		fault  Fault
		status int
		ctype  string // media type
		check  func(t *testing.T, res *http.Response, body []byte)
	}{
		{Fault429, 429, "text/html", func(t *testing.T, res *http.Response, body []byte) {
			if _, ok := res.Header["Retry-After"]; ok {
				t.Error("Retry-After present")
			}
			if !bytes.Contains(body, []byte("<center>nginx</center>")) {
				t.Errorf("not nginx's page: %q", body)
			}
		}},
		{Fault429RetryAfter, 429, "text/html", func(t *testing.T, res *http.Response, _ []byte) {
			if got := res.Header.Get("Retry-After"); got != "1" {
				t.Errorf("Retry-After %q", got)
			}
		}},
		{Fault502, 502, "text/html", func(t *testing.T, _ *http.Response, body []byte) {
			if !bytes.Contains(body, []byte("502 Bad Gateway")) {
				t.Errorf("body %q", body)
			}
		}},
		{Fault503, 503, "text/plain", func(t *testing.T, _ *http.Response, body []byte) {
			if !bytes.Contains(body, []byte("statement timeout")) {
				t.Errorf("body %q", body)
			}
		}},
		{FaultHTML200, 200, "text/html", func(t *testing.T, _ *http.Response, body []byte) {
			if json.Valid(body) || !bytes.Contains(body, []byte("<HTML>")) {
				t.Errorf("body %q", body)
			}
		}},
		{FaultTruncatedJSON, 200, "application/json", func(t *testing.T, _ *http.Response, body []byte) {
			if json.Valid(body) || len(body) == 0 || !bytes.HasPrefix(good, body) || body[0] != '[' {
				t.Errorf("body %q is not a cut prefix of %q", body, good)
			}
		}},
		{FaultGarbage, 200, "application/json", func(t *testing.T, _ *http.Response, body []byte) {
			if json.Valid(body) || len(body) == 0 {
				t.Errorf("body %q", body)
			}
		}},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			s.ResetRequests()
			s.Fault(KindSearch, 2, tc.fault)
			// A download is not a search: the fault waits.
			if res, _ := do(t, s, "d="+strconv.FormatInt(id, 10), nil); res.StatusCode != http.StatusOK {
				t.Errorf("download took a search fault: %s", res.Status)
			}
			for range 2 {
				res, body := do(t, s, q, nil)
				if res.StatusCode != tc.status || mediaType(t, res) != tc.ctype {
					t.Errorf("%s, %s; want %d, %s", res.Status, res.Header.Get("Content-Type"), tc.status, tc.ctype)
				}
				tc.check(t, res, body)
			}
			if _, body := search(t, s, q); !bytes.Equal(body, good) {
				t.Errorf("no recovery: %q", body)
			}
			reqs := s.Requests()
			var got []Fault
			for _, r := range reqs {
				got = append(got, r.Fault)
			}
			if want := []Fault{FaultNone, tc.fault, tc.fault, FaultNone}; !slices.Equal(got, want) {
				t.Errorf("recorded faults %v, want %v", got, want)
			}
			if len(reqs) == 4 && (reqs[1].Status != tc.status || reqs[1].Kind != KindSearch || reqs[0].Kind != KindDownload) {
				t.Errorf("recorded %+v", reqs)
			}
		})
	}
}

func TestDownloadFaults(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	id := strconv.FormatInt(s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}}).Final), 10)
	for _, f := range []Fault{FaultTruncatedJSON, FaultGarbage} {
		s.Fault(KindDownload, 1, f)
		res, body := do(t, s, "d="+id, nil)
		if block, _ := pem.Decode(body); res.StatusCode != http.StatusOK || block != nil {
			t.Errorf("%v: %s, PEM decodes: %v", f, res.Status, block != nil)
		}
	}
	// KindAny hits both kinds, and n <= 0 drops what is left.
	s.Fault(KindAny, 3, Fault502)
	if res, _ := do(t, s, "d="+id, nil); res.StatusCode != http.StatusBadGateway {
		t.Errorf("download under KindAny: %s", res.Status)
	}
	if res, _ := do(t, s, "Identity=example.com&output=json", nil); res.StatusCode != http.StatusBadGateway {
		t.Errorf("search under KindAny: %s", res.Status)
	}
	s.Fault(KindAny, 0, FaultNone)
	if res, _ := do(t, s, "d="+id, nil); res.StatusCode != http.StatusOK {
		t.Errorf("after clearing: %s", res.Status)
	}
}

func TestDelay(t *testing.T) {
	s := New()
	defer s.Close()
	const d = 30 * time.Millisecond
	s.SetDelay(d)
	start := time.Now()
	if res, _ := do(t, s, "Identity=example.com&output=json", nil); res.StatusCode != http.StatusOK {
		t.Fatal(res.Status)
	}
	if took := time.Since(start); took < d {
		t.Errorf("answered in %v, before the %v delay", took, d)
	}
}

func TestDelayHonoursCancellation(t *testing.T) {
	s := New()
	s.SetDelay(time.Hour)
	s.Fault(KindSearch, 1, Fault502)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/?Identity=gone.example&output=json", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.Client().Do(req); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			res.Body.Close()
		}
		t.Fatalf("Do = %v, want the deadline", err)
	}

	// The abandoned request must not have used up the fault.
	s.SetDelay(0)
	if res, _ := do(t, s, "Identity=example.com&output=json", nil); res.StatusCode != http.StatusBadGateway {
		t.Errorf("after an abandoned request: %s, want the queued 502", res.Status)
	}

	// Close waits for every handler, so it returns only if the delayed one
	// saw its client go away.
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close is stuck: the delayed handler ignored its client going away")
	}
	var found bool
	for _, r := range s.Requests() {
		if r.Query == "gone.example" {
			found = true
			if r.Status != 0 || r.Fault != FaultNone {
				t.Errorf("abandoned request recorded as %+v", r)
			}
		}
	}
	if !found {
		t.Errorf("abandoned request not recorded: %+v", s.Requests())
	}
}

func TestRequests(t *testing.T) {
	s, p := newServer(t), newPKI(t)
	id := s.Add(p.issue(t, testpki.Leaf{DNSNames: []string{"example.com"}}).Final)
	start := time.Now()
	do(t, s, "Identity="+url.QueryEscape("%.Example.com")+"&output=json", nil)
	do(t, s, "d="+strconv.FormatInt(id, 10), nil)
	do(t, s, "d=1", nil)
	do(t, s, "foo=bar", nil)
	got := s.Requests()
	want := []Request{
		{Kind: KindSearch, Query: "%.Example.com", Status: 200},
		{Kind: KindDownload, Query: strconv.FormatInt(id, 10), Status: 200},
		{Kind: KindDownload, Query: "1", Status: 404},
		{Kind: KindOther, Query: "foo=bar", Status: 400},
	}
	if len(got) != len(want) {
		t.Fatalf("requests %+v, want %+v", got, want)
	}
	prev := start
	for i := range got {
		if got[i].Time.Before(prev) || got[i].Time.After(time.Now()) {
			t.Errorf("request %d at %v, outside [%v, now] or out of order", i, got[i].Time, prev)
		}
		prev = got[i].Time
		got[i].Time = time.Time{}
		if got[i] != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// A copy: changing it leaves the server's record alone.
	got[0].Status = 999
	if s.Requests()[0].Status != 200 {
		t.Error("Requests returned the server's own slice")
	}
	s.ResetRequests()
	if n := len(s.Requests()); n != 0 {
		t.Errorf("%d requests after ResetRequests", n)
	}
}

// A fault aimed at one identity leaves the others' searches alone, and
// dropping it lets that identity recover.
func TestFaultForOneIdentity(t *testing.T) {
	s := newServer(t)
	s.FaultFor(KindSearch, "big.example", 100, Fault502)
	for range 3 {
		if res, _ := do(t, s, "Identity=big.example&output=json", nil); res.StatusCode != http.StatusBadGateway {
			t.Errorf("big.example: %s, want 502", res.Status)
		}
		if res, _ := do(t, s, "Identity=small.example&output=json", nil); res.StatusCode != http.StatusOK {
			t.Errorf("small.example took big.example's fault: %s", res.Status)
		}
	}
	if res, _ := do(t, s, "d=big.example", nil); res.StatusCode == http.StatusBadGateway {
		t.Error("a download took a search fault")
	}
	s.FaultFor(KindSearch, "big.example", 0, FaultNone)
	if res, _ := do(t, s, "Identity=big.example&output=json", nil); res.StatusCode != http.StatusOK {
		t.Errorf("after dropping the fault: %s", res.Status)
	}
}

// FaultAfter lets the first requests through: a poll cut at its second search.
func TestFaultAfter(t *testing.T) {
	s := newServer(t)
	s.FaultAfter(KindSearch, 1, 2, Fault429)
	var got []int
	for _, q := range []string{"a.example", "b.example", "c.example", "d.example"} {
		res, _ := do(t, s, "Identity="+q+"&output=json", nil)
		got = append(got, res.StatusCode)
	}
	if want := []int{200, 429, 429, 200}; !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
}

// A delay aimed at one identity makes only its searches slow.
func TestDelayForOneIdentity(t *testing.T) {
	s := newServer(t)
	s.SetDelayFor("slow.example", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/?Identity=slow.example&output=json", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.Client().Do(req); !errors.Is(err, context.DeadlineExceeded) {
		if err == nil {
			res.Body.Close()
		}
		t.Fatalf("slow.example: %v, want the deadline", err)
	}
	// Without a timeout: a delay would hang the test, not fail it quickly,
	// so the other identity is asked with one.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	req, err = http.NewRequestWithContext(ctx2, http.MethodGet, s.URL+"/?Identity=fast.example&output=json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("fast.example was delayed too: %v", err)
	}
	res.Body.Close()
	s.SetDelayFor("slow.example", 0)
	if res, _ := do(t, s, "Identity=slow.example&output=json", nil); res.StatusCode != http.StatusOK {
		t.Errorf("after removing the delay: %s", res.Status)
	}
}
