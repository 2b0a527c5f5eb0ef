package ctlogfake_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ct "github.com/google/certificate-transparency-go"
	ctasn1 "github.com/google/certificate-transparency-go/asn1"
	"github.com/google/certificate-transparency-go/client"
	"github.com/google/certificate-transparency-go/jsonclient"
	ctls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

var oidCTPoison = ctasn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}

// recorder is a RoundTripper that remembers the headers of the last response,
// which ct-go's client does not expose for GETs.
type recorder struct {
	mu     sync.Mutex
	header http.Header
	status int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	rsp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.header, r.status = rsp.Header.Clone(), rsp.StatusCode
		r.mu.Unlock()
	}
	return rsp, err
}

func (r *recorder) last() (http.Header, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.header, r.status
}

func newClient(t *testing.T, l *ctlogfake.Log, hc *http.Client, withKey bool) *client.LogClient {
	t.Helper()
	if hc == nil {
		hc = &http.Client{}
	}
	opts := jsonclient.Options{}
	if withKey {
		opts.PublicKeyDER = l.PublicKeyDER()
	}
	c, err := client.New(l.URL+"/", hc, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// leafHash is RFC 6962's SHA-256(0x00 || leaf_input), computed here without
// the merkle library.
func leafHash(input []byte) [32]byte {
	return sha256.Sum256(append([]byte{0}, input...))
}

// mth is RFC 6962 §2.1's Merkle Tree Hash, written out recursively,
// independently of the fake's tree code.
func mth(leaves [][32]byte) [32]byte {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := mth(leaves[:k]), mth(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func statusOf(err error) int {
	var re jsonclient.RspError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

func rawGet(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	rsp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	body, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rsp.StatusCode, rsp.Header, body
}

// fetchAll reads entries [0, size) through the client, batch by batch.
func fetchAll(t *testing.T, c *client.LogClient, size int64) []ct.LeafEntry {
	t.Helper()
	var out []ct.LeafEntry
	for int64(len(out)) < size {
		rsp, err := c.GetRawEntries(ctx(t), int64(len(out)), size-1)
		if err != nil {
			t.Fatalf("GetRawEntries(%d, %d): %v", len(out), size-1, err)
		}
		if len(rsp.Entries) == 0 {
			t.Fatalf("GetRawEntries(%d, %d): no entries", len(out), size-1)
		}
		out = append(out, rsp.Entries...)
	}
	if int64(len(out)) != size {
		t.Fatalf("fetched %d entries, want %d", len(out), size)
	}
	return out
}

func hashes(entries []ct.LeafEntry) [][32]byte {
	out := make([][32]byte, len(entries))
	for i, e := range entries {
		out[i] = leafHash(e.LeafInput)
	}
	return out
}

func issue(t *testing.T, ca *testpki.CA, name string) *testpki.Issued {
	t.Helper()
	is, err := ca.Issue(testpki.Leaf{CN: name, DNSNames: []string{name}, SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// populate adds n entries, alternating certificates, precertificates and a
// malformed one every fifth.
func populate(t *testing.T, l *ctlogfake.Log, ca *testpki.CA, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		switch i % 5 {
		case 4:
			l.AddRaw(ct.X509LogEntryType, []byte(fmt.Sprintf("not DER %d", i)))
		case 1, 3:
			is := issue(t, ca, fmt.Sprintf("p%d.example.com", i))
			l.AddPrecert(is.Precert, ca.DER)
		default:
			is := issue(t, ca, fmt.Sprintf("c%d.example.com", i))
			l.AddCert(is.Final, ca.DER)
		}
	}
}

func TestSTHSignedAndRootMatchesEntries(t *testing.T) {
	l := ctlogfake.New(t)
	ca := testpki.NewIssuer(t, "Test Issuing CA", "Test PKI")
	c := newClient(t, l, nil, true)

	if got, want := l.LogID(), sha256.Sum256(l.PublicKeyDER()); got != want {
		t.Errorf("LogID = %x, want SHA-256 of the SPKI %x", got, want)
	}

	// Before any entries: an empty, signed tree.
	sth, err := c.GetSTH(ctx(t))
	if err != nil {
		t.Fatalf("GetSTH on empty log: %v", err)
	}
	if sth.TreeSize != 0 || sth.SHA256RootHash != ct.SHA256Hash(mth(nil)) {
		t.Errorf("empty STH = size %d root %x, want 0 and SHA-256(\"\")", sth.TreeSize, sth.SHA256RootHash)
	}

	populate(t, l, ca, 13)
	if l.Size() != 13 {
		t.Fatalf("Size = %d, want 13", l.Size())
	}
	// Unpublished entries are invisible.
	if sth, err := c.GetSTH(ctx(t)); err != nil || sth.TreeSize != 0 {
		t.Fatalf("GetSTH before Publish = %v, %v; want size 0", sth, err)
	}
	if _, err := c.GetRawEntries(ctx(t), 0, 5); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("get-entries beyond the published tree: err %v, want HTTP 400", err)
	}

	fixed := time.UnixMilli(1_700_000_000_123)
	l.SetSTHTimestamp(func() time.Time { return fixed })
	pub := l.Publish()
	if pub.Timestamp != 1_700_000_000_123 {
		t.Errorf("published timestamp = %d, want the clock's 1700000000123", pub.Timestamp)
	}
	v, err := ct.NewSignatureVerifier(mustKey(t, l))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifySTHSignature(*pub); err != nil {
		t.Errorf("Publish's STH does not verify: %v", err)
	}

	sth, err = c.GetSTH(ctx(t))
	if err != nil {
		t.Fatalf("GetSTH: %v", err)
	}
	if sth.TreeSize != 13 || sth.Timestamp != pub.Timestamp || sth.SHA256RootHash != pub.SHA256RootHash ||
		!bytes.Equal(sth.TreeHeadSignature.Signature, pub.TreeHeadSignature.Signature) {
		t.Errorf("served STH %v differs from published %v", sth, pub)
	}
	if a := sth.TreeHeadSignature.Algorithm; a.Hash != ctls.SHA256 || a.Signature != ctls.ECDSA {
		t.Errorf("signature algorithm = %v, want ECDSA/SHA-256", a)
	}

	entries := fetchAll(t, c, int64(sth.TreeSize))
	if got, want := mth(hashes(entries)), [32]byte(sth.SHA256RootHash); got != want {
		t.Errorf("root from entries = %x, STH root = %x", got, want)
	}
	for i, e := range entries {
		if got, want := leafHash(e.LeafInput), l.LeafHash(int64(i)); got != want {
			t.Errorf("entry %d: hash %x, LeafHash %x", i, got, want)
		}
	}
	if got, want := l.RootAt(13), [32]byte(sth.SHA256RootHash); got != want {
		t.Errorf("RootAt(13) = %x, want %x", got, want)
	}

	// Grow, and the root follows.
	populate(t, l, ca, 6)
	sth2 := l.Publish()
	entries = fetchAll(t, c, int64(sth2.TreeSize))
	if sth2.TreeSize != 19 || mth(hashes(entries)) != [32]byte(sth2.SHA256RootHash) {
		t.Errorf("after growing: size %d root %x, entries give %x", sth2.TreeSize, sth2.SHA256RootHash, mth(hashes(entries)))
	}
}

func mustKey(t *testing.T, l *ctlogfake.Log) any {
	t.Helper()
	k, err := ctx509.ParsePKIXPublicKey(l.PublicKeyDER())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWireFormat(t *testing.T) {
	l := ctlogfake.New(t)
	ca := testpki.NewIssuer(t, "Wire CA", "Test PKI")
	populate(t, l, ca, 3)
	l.Publish()
	base := l.URL + "/ct/v1/"

	keys := func(body []byte) []string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks
	}

	status, hdr, body := rawGet(t, base+"get-sth")
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("get-sth: %d %q", status, hdr.Get("Content-Type"))
	}
	if got, want := keys(body), []string{"sha256_root_hash", "timestamp", "tree_head_signature", "tree_size"}; !slices.Equal(got, want) {
		t.Errorf("get-sth keys = %v, want %v", got, want)
	}
	var sth struct {
		TreeHeadSignature string `json:"tree_head_signature"`
		Root              string `json:"sha256_root_hash"`
	}
	if err := json.Unmarshal(body, &sth); err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(sth.TreeHeadSignature)
	if err != nil || len(sig) < 4 || sig[0] != 4 || sig[1] != 3 || int(sig[2])<<8|int(sig[3]) != len(sig)-4 {
		t.Errorf("tree_head_signature %x (%v) is not a TLS DigitallySigned{sha256, ecdsa}", sig, err)
	}
	if root, err := base64.StdEncoding.DecodeString(sth.Root); err != nil || len(root) != 32 {
		t.Errorf("sha256_root_hash %q: %v", sth.Root, err)
	}

	_, _, body = rawGet(t, base+"get-entries?start=0&end=1")
	var ge struct {
		Entries []map[string]json.RawMessage `json:"entries"`
	}
	if err := json.Unmarshal(body, &ge); err != nil || len(ge.Entries) != 2 {
		t.Fatalf("get-entries: %s (%v)", body, err)
	}
	for _, e := range ge.Entries {
		if _, ok := e["leaf_input"]; !ok || len(e) != 2 {
			t.Errorf("entry keys %v, want leaf_input and extra_data", e)
		}
		if _, ok := e["extra_data"]; !ok {
			t.Errorf("entry keys %v, want leaf_input and extra_data", e)
		}
	}

	for _, tc := range []struct{ path, want string }{
		{"get-sth-consistency?first=0&second=3", `{"consistency":[]}`},
		{"get-sth-consistency?first=3&second=3", `{"consistency":[]}`},
		{"get-roots", `{"certificates":["` + base64.StdEncoding.EncodeToString(ca.DER) + `"]}`},
	} {
		if status, _, body := rawGet(t, base+tc.path); status != 200 || string(body) != tc.want {
			t.Errorf("%s = %d %s, want %s", tc.path, status, body, tc.want)
		}
	}
	if _, _, body := rawGet(t, base+"get-entry-and-proof?leaf_index=0&tree_size=1"); !slices.Equal(keys(body), []string{"audit_path", "extra_data", "leaf_input"}) ||
		!strings.Contains(string(body), `"audit_path":[]`) {
		t.Errorf("get-entry-and-proof in a 1-tree = %s", body)
	}

	for _, tc := range []struct {
		path string
		want int
	}{
		{"get-entries?start=2&end=1", 400},
		{"get-entries?start=3&end=5", 400},
		{"get-entries?start=-1&end=1", 400},
		{"get-entries?start=0", 400},
		{"get-entries?start=x&end=1", 400},
		{"get-sth-consistency?first=2&second=1", 400},
		{"get-sth-consistency?first=1&second=4", 400},
		{"get-proof-by-hash?tree_size=1&hash=AAAA", 400},
		{"get-proof-by-hash?tree_size=0&hash=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), 400},
		{"get-proof-by-hash?tree_size=3&hash=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), 404},
		{"get-entry-and-proof?leaf_index=3&tree_size=3", 400},
		{"get-entry-and-proof?leaf_index=0&tree_size=4", 400},
		{"no-such-thing", 404},
	} {
		if status, _, body := rawGet(t, base+tc.path); status != tc.want {
			t.Errorf("%s = %d %s, want %d", tc.path, status, body, tc.want)
		}
	}
	if status, _, _ := rawGet(t, l.URL+"/get-sth"); status != 404 {
		t.Errorf("get-sth outside /ct/v1/ = %d, want 404", status)
	}
	rsp, err := http.Post(base+"get-sth", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST get-sth = %d, want 405", rsp.StatusCode)
	}
}

func TestGetEntriesBatches(t *testing.T) {
	l := ctlogfake.New(t)
	for i := 0; i < 300; i++ {
		l.AddRaw(ct.X509LogEntryType, []byte{byte(i), byte(i >> 8)})
	}
	l.Publish()
	c := newClient(t, l, nil, true)

	rsp, err := c.GetRawEntries(ctx(t), 0, 299)
	if err != nil || len(rsp.Entries) != ctlogfake.DefaultMaxBatch {
		t.Fatalf("default cap: %d entries (%v), want %d", len(rsp.Entries), err, ctlogfake.DefaultMaxBatch)
	}

	l.MaxBatch = 7
	for _, tc := range []struct{ start, end, want int64 }{
		{0, 299, 7},
		{10, 12, 3},
		{295, 1000, 5},
		{299, 299, 1},
	} {
		rsp, err := c.GetRawEntries(ctx(t), tc.start, tc.end)
		if err != nil || int64(len(rsp.Entries)) != tc.want {
			t.Errorf("GetRawEntries(%d, %d) = %d entries (%v), want %d", tc.start, tc.end, len(rsp.Entries), err, tc.want)
			continue
		}
		for i, e := range rsp.Entries {
			if got, want := leafHash(e.LeafInput), l.LeafHash(tc.start+int64(i)); got != want {
				t.Errorf("GetRawEntries(%d, %d)[%d] is not entry %d", tc.start, tc.end, i, tc.start+int64(i))
			}
		}
	}
	if _, err := c.GetRawEntries(ctx(t), 300, 300); statusOf(err) != 400 {
		t.Errorf("start = tree size: %v, want HTTP 400", err)
	}
	if got := len(fetchAll(t, c, 300)); got != 300 {
		t.Errorf("fetched %d", got)
	}
}

func TestEntriesParse(t *testing.T) {
	l := ctlogfake.New(t)
	root, ca := testpki.NewChain(t, "Parse Root", "Test PKI", "Parse CA", "Test PKI")
	is := issue(t, ca, "www.example.com")
	extraRoot := root.DER

	before := uint64(time.Now().UnixMilli())
	ci := l.AddCert(is.Final, ca.DER)
	pi := l.AddPrecert(is.Precert, ca.DER, ca.DER, extraRoot) // chain repeating the issuer
	ri := l.AddRaw(ct.X509LogEntryType, []byte{0x30, 0x03, 0x01})
	ei := l.AddRaw(ct.PrecertLogEntryType, nil)
	after := uint64(time.Now().UnixMilli())
	l.Publish()
	c := newClient(t, l, nil, true)
	entries := fetchAll(t, c, 4)

	// x509_entry.
	le, err := ct.LogEntryFromLeaf(ci, &entries[ci])
	if ctx509.IsFatal(err) || le == nil {
		t.Fatalf("x509 entry: %v", err)
	}
	if le.X509Cert == nil || !bytes.Equal(le.X509Cert.Raw, is.Final) {
		t.Errorf("x509 entry certificate is not the final certificate")
	}
	if len(le.Chain) != 1 || !bytes.Equal(le.Chain[0].Data, ca.DER) {
		t.Errorf("x509 entry chain = %d certs, want the issuer", len(le.Chain))
	}
	if ts := le.Leaf.TimestampedEntry.Timestamp; ts < before || ts > after {
		t.Errorf("timestamp %d not in [%d, %d]", ts, before, after)
	}

	// precert_entry.
	pe, err := ct.LogEntryFromLeaf(pi, &entries[pi])
	if ctx509.IsFatal(err) || pe == nil || pe.Precert == nil {
		t.Fatalf("precert entry: %v", err)
	}
	if pe.Leaf.TimestampedEntry.EntryType != ct.PrecertLogEntryType {
		t.Errorf("entry type %v", pe.Leaf.TimestampedEntry.EntryType)
	}
	if got, want := pe.Precert.IssuerKeyHash, sha256.Sum256(ca.Cert.RawSubjectPublicKeyInfo); got != want {
		t.Errorf("issuer key hash %x, want %x", got, want)
	}
	for _, ext := range pe.Precert.TBSCertificate.Extensions {
		if ext.Id.Equal(oidCTPoison) {
			t.Errorf("logged TBSCertificate still has the poison")
		}
	}
	if got := pe.Precert.TBSCertificate.DNSNames; !slices.Equal(got, []string{"www.example.com"}) {
		t.Errorf("precert DNS names %v", got)
	}
	if !bytes.Equal(pe.Precert.Submitted.Data, is.Precert) {
		t.Errorf("extra_data pre_certificate is not the precertificate")
	}
	if len(pe.Chain) != 2 || !bytes.Equal(pe.Chain[0].Data, ca.DER) || !bytes.Equal(pe.Chain[1].Data, extraRoot) {
		t.Errorf("precert chain has %d certs, want issuer then root", len(pe.Chain))
	}
	// The logged TBS is exactly what a monitor rebuilds from the final
	// certificate with embedded SCTs (RFC 6962 §3.3).
	final, err := ctx509.ParseCertificate(is.Final)
	if ctx509.IsFatal(err) {
		t.Fatal(err)
	}
	issuer, err := ctx509.ParseCertificate(ca.DER)
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := ct.MerkleTreeLeafForEmbeddedSCT([]*ctx509.Certificate{final, issuer}, pe.Leaf.TimestampedEntry.Timestamp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(embedded.TimestampedEntry.PrecertEntry.TBSCertificate, pe.Leaf.TimestampedEntry.PrecertEntry.TBSCertificate) ||
		embedded.TimestampedEntry.PrecertEntry.IssuerKeyHash != pe.Precert.IssuerKeyHash {
		t.Errorf("precert leaf differs from the one rebuilt from the final certificate")
	}
	if h, err := ct.LeafHashForLeaf(embedded); err != nil || h != leafHash(entries[pi].LeafInput) {
		t.Errorf("leaf hash rebuilt from the final certificate does not match the logged entry (%v)", err)
	}

	// Malformed entries: the TLS structure is fine, the DER is not.
	raw, err := ct.RawLogEntryFromLeaf(ri, &entries[ri])
	if err != nil || !bytes.Equal(raw.Cert.Data, []byte{0x30, 0x03, 0x01}) {
		t.Errorf("raw entry: %v", err)
	}
	if _, err := ct.LogEntryFromLeaf(ri, &entries[ri]); err == nil {
		t.Errorf("malformed DER parsed without error")
	}
	if _, err := ct.RawLogEntryFromLeaf(ei, &entries[ei]); err == nil {
		t.Errorf("empty precert TBS decoded although RFC 6962 requires 1 byte")
	}

	roots, err := c.GetAcceptedRoots(ctx(t))
	if err != nil || len(roots) != 2 || !bytes.Equal(roots[0].Data, ca.DER) || !bytes.Equal(roots[1].Data, extraRoot) {
		t.Errorf("GetAcceptedRoots = %d roots (%v), want the two chain ends", len(roots), err)
	}
}

func TestConsistencyProofs(t *testing.T) {
	l := ctlogfake.New(t)
	c := newClient(t, l, nil, true)
	var sths []*ct.SignedTreeHead
	for _, grow := range []int{0, 1, 2, 1, 4, 5, 1, 19} {
		for i := 0; i < grow; i++ {
			l.AddRaw(ct.X509LogEntryType, []byte(fmt.Sprintf("leaf %d", l.Size())))
		}
		l.Publish()
		sth, err := c.GetSTH(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		sths = append(sths, sth)
	}
	for _, a := range sths {
		for _, b := range sths {
			if a.TreeSize > b.TreeSize {
				continue
			}
			p, err := c.GetSTHConsistency(ctx(t), a.TreeSize, b.TreeSize)
			if err != nil {
				t.Fatalf("GetSTHConsistency(%d, %d): %v", a.TreeSize, b.TreeSize, err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, a.TreeSize, b.TreeSize, p, a.SHA256RootHash[:], b.SHA256RootHash[:]); err != nil {
				t.Errorf("consistency %d -> %d: %v", a.TreeSize, b.TreeSize, err)
			}
			if len(p) > 0 {
				p[0] = bytes.Repeat([]byte{0xAA}, 32)
				if proof.VerifyConsistency(rfc6962.DefaultHasher, a.TreeSize, b.TreeSize, p, a.SHA256RootHash[:], b.SHA256RootHash[:]) == nil {
					t.Errorf("tampered consistency %d -> %d verified", a.TreeSize, b.TreeSize)
				}
			}
		}
	}
	// Sizes beyond the appended entries are refused; appended but unpublished
	// ones are served, as a real log's tree runs ahead of its STH.
	if _, err := c.GetSTHConsistency(ctx(t), 1, uint64(l.Size())+1); statusOf(err) != 400 {
		t.Errorf("second beyond the tree: %v, want HTTP 400", err)
	}
	l.AddRaw(ct.X509LogEntryType, []byte("unpublished"))
	if _, err := c.GetSTHConsistency(ctx(t), 3, uint64(l.Size())); err != nil {
		t.Errorf("second = appended size: %v", err)
	}
}

func TestInclusionProofs(t *testing.T) {
	l := ctlogfake.New(t)
	ca := testpki.NewIssuer(t, "Proof CA", "Test PKI")
	populate(t, l, ca, 11)
	sth := l.Publish()
	c := newClient(t, l, nil, true)
	entries := fetchAll(t, c, 11)

	for size := uint64(1); size <= 11; size++ {
		root := mth(hashes(entries[:size]))
		for i := uint64(0); i < size; i++ {
			h := leafHash(entries[i].LeafInput)
			rsp, err := c.GetProofByHash(ctx(t), h[:], size)
			if err != nil {
				t.Fatalf("GetProofByHash(%d, %d): %v", i, size, err)
			}
			if rsp.LeafIndex != int64(i) {
				t.Errorf("GetProofByHash leaf_index = %d, want %d", rsp.LeafIndex, i)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, h[:], rsp.AuditPath, root[:]); err != nil {
				t.Errorf("inclusion of %d in %d (by hash): %v", i, size, err)
			}
			ep, err := c.GetEntryAndProof(ctx(t), i, size)
			if err != nil {
				t.Fatalf("GetEntryAndProof(%d, %d): %v", i, size, err)
			}
			if !bytes.Equal(ep.LeafInput, entries[i].LeafInput) || !bytes.Equal(ep.ExtraData, entries[i].ExtraData) {
				t.Errorf("get-entry-and-proof %d differs from get-entries", i)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, h[:], ep.AuditPath, root[:]); err != nil {
				t.Errorf("inclusion of %d in %d (entry and proof): %v", i, size, err)
			}
			if size == 11 && i == 5 {
				other := leafHash(entries[6].LeafInput)
				if proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, other[:], ep.AuditPath, root[:]) == nil {
					t.Errorf("proof for entry 5 verified entry 6")
				}
			}
		}
	}
	if mth(hashes(entries)) != [32]byte(sth.SHA256RootHash) {
		t.Errorf("root mismatch")
	}
	h := leafHash(entries[7].LeafInput)
	if _, err := c.GetProofByHash(ctx(t), h[:], 7); statusOf(err) != 404 {
		t.Errorf("leaf 7 in a tree of 7: %v, want HTTP 404", err)
	}
}

func TestBadSTHSignature(t *testing.T) {
	l := ctlogfake.New(t)
	l.AddRaw(ct.X509LogEntryType, []byte("x"))
	pub := l.Publish()
	c := newClient(t, l, nil, true)
	noKey := newClient(t, l, nil, false)

	l.ServeBadSTHSignature()
	if sth, err := c.GetSTH(ctx(t)); err == nil {
		t.Fatalf("GetSTH with a bad signature = %v, want an error", sth)
	}
	sth, err := noKey.GetSTH(ctx(t))
	if err != nil {
		t.Fatalf("GetSTH without verification: %v", err)
	}
	if sth.TreeSize != pub.TreeSize || sth.SHA256RootHash != pub.SHA256RootHash || sth.Timestamp != pub.Timestamp {
		t.Errorf("bad-signature STH %v changed the tree head %v", sth, pub)
	}
	v, _ := ct.NewSignatureVerifier(mustKey(t, l))
	if v.VerifySTHSignature(*sth) == nil {
		t.Errorf("bad signature verifies")
	}

	l.ClearFaults()
	if _, err := c.GetSTH(ctx(t)); err != nil {
		t.Errorf("after ClearFaults: %v", err)
	}
}

func TestServeSTHRollback(t *testing.T) {
	l := ctlogfake.New(t)
	c := newClient(t, l, nil, true)
	for i := 0; i < 3; i++ {
		l.AddRaw(ct.X509LogEntryType, []byte{byte(i)})
	}
	old := l.Publish()
	for i := 0; i < 3; i++ {
		l.AddRaw(ct.X509LogEntryType, []byte{byte(10 + i)})
	}
	cur := l.Publish()

	l.ServeSTH(old)
	sth, err := c.GetSTH(ctx(t))
	if err != nil {
		t.Fatalf("GetSTH of an old STH: %v", err)
	}
	if sth.TreeSize != 3 || sth.SHA256RootHash != old.SHA256RootHash {
		t.Errorf("served %v, want the old %v", sth, old)
	}

	forged := l.SignSTH(cur.TreeSize, cur.Timestamp+1, sha256.Sum256([]byte("other")))
	l.ServeSTH(forged)
	if sth, err := c.GetSTH(ctx(t)); err != nil || sth.SHA256RootHash != forged.SHA256RootHash {
		t.Errorf("GetSTH of a SignSTH head = %v, %v", sth, err)
	}

	l.ClearFaults()
	if sth, err := c.GetSTH(ctx(t)); err != nil || sth.TreeSize != 6 || sth.SHA256RootHash != cur.SHA256RootHash {
		t.Errorf("after ClearFaults: %v, %v; want %v", sth, err, cur)
	}
}

func TestFork(t *testing.T) {
	l := ctlogfake.New(t)
	c := newClient(t, l, nil, true)
	for i := 0; i < 5; i++ {
		l.AddRaw(ct.X509LogEntryType, []byte{byte(i)})
	}
	first := l.Publish()
	for i := 0; i < 3; i++ {
		l.AddRaw(ct.X509LogEntryType, []byte{byte(10 + i)})
	}
	real := l.Publish()

	l.Fork()
	forked, err := c.GetSTH(ctx(t))
	if err != nil {
		t.Fatalf("GetSTH of the fork (must be correctly signed): %v", err)
	}
	if forked.TreeSize != real.TreeSize || forked.SHA256RootHash == real.SHA256RootHash {
		t.Fatalf("fork = size %d root %x; real size %d root %x", forked.TreeSize, forked.SHA256RootHash, real.TreeSize, real.SHA256RootHash)
	}
	again, err := c.GetSTH(ctx(t))
	if err != nil || again.SHA256RootHash != forked.SHA256RootHash || !bytes.Equal(again.TreeHeadSignature.Signature, forked.TreeHeadSignature.Signature) {
		t.Errorf("the fork is not stable across requests: %v, %v", again, err)
	}
	p, err := c.GetSTHConsistency(ctx(t), first.TreeSize, forked.TreeSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, first.TreeSize, forked.TreeSize, p, first.SHA256RootHash[:], forked.SHA256RootHash[:]); err == nil {
		t.Errorf("consistency proof verifies against the forked root")
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, first.TreeSize, real.TreeSize, p, first.SHA256RootHash[:], real.SHA256RootHash[:]); err != nil {
		t.Errorf("consistency proof does not verify against the real root: %v", err)
	}

	l.ClearFaults()
	if sth, err := c.GetSTH(ctx(t)); err != nil || sth.SHA256RootHash != real.SHA256RootHash {
		t.Errorf("after ClearFaults: %v, %v", sth, err)
	}
}

func TestCorruptEntry(t *testing.T) {
	l := ctlogfake.New(t)
	ca := testpki.NewIssuer(t, "Corrupt CA", "Test PKI")
	populate(t, l, ca, 5) // 0 cert, 1 precert, 2 cert, 3 precert, 4 raw
	l.AddRaw(ct.X509LogEntryType, nil)
	sth := l.Publish()
	c := newClient(t, l, nil, true)

	for _, idx := range []int64{0, 1, 5} {
		l.CorruptEntry(idx)
	}
	entries := fetchAll(t, c, 6)
	for i, e := range entries {
		corrupt := i == 0 || i == 1 || i == 5
		if got := leafHash(e.LeafInput) != l.LeafHash(int64(i)); got != corrupt {
			t.Errorf("entry %d: hash mismatch %v, want %v", i, got, corrupt)
		}
	}
	if mth(hashes(entries)) == [32]byte(sth.SHA256RootHash) {
		t.Errorf("root from corrupted entries matches the STH")
	}
	// The corrupted certificates still parse: only the hash gives them away.
	for _, i := range []int64{0, 1} {
		if _, err := ct.LogEntryFromLeaf(i, &entries[i]); ctx509.IsFatal(err) {
			t.Errorf("corrupted entry %d no longer parses: %v", i, err)
		}
	}
	ep, err := c.GetEntryAndProof(ctx(t), 1, 6)
	if err != nil {
		t.Fatal(err)
	}
	h := leafHash(ep.LeafInput)
	if proof.VerifyInclusion(rfc6962.DefaultHasher, 1, 6, h[:], ep.AuditPath, sth.SHA256RootHash[:]) == nil {
		t.Errorf("corrupted get-entry-and-proof verifies")
	}

	l.ClearFaults()
	entries = fetchAll(t, c, 6)
	if mth(hashes(entries)) != [32]byte(sth.SHA256RootHash) {
		t.Errorf("after ClearFaults the entries still do not match the root")
	}
}

func TestFailAndRequests(t *testing.T) {
	l := ctlogfake.New(t)
	l.AddRaw(ct.X509LogEntryType, []byte("x"))
	l.Publish()
	rec := &recorder{}
	c := newClient(t, l, &http.Client{Transport: rec}, true)

	l.Fail("get-sth", 2, http.StatusTooManyRequests, 2500*time.Millisecond)
	for i := 0; i < 2; i++ {
		_, err := c.GetSTH(ctx(t))
		if statusOf(err) != http.StatusTooManyRequests {
			t.Fatalf("GetSTH %d: %v, want HTTP 429", i, err)
		}
		if h, _ := rec.last(); h.Get("Retry-After") != "3" {
			t.Errorf("Retry-After = %q, want \"3\" (2.5s rounded up)", h.Get("Retry-After"))
		}
	}
	if _, err := c.GetRawEntries(ctx(t), 0, 0); err != nil {
		t.Errorf("get-entries hit a get-sth fault: %v", err)
	}
	if _, err := c.GetSTH(ctx(t)); err != nil {
		t.Errorf("third GetSTH: %v", err)
	}

	l.Fail("", 1, http.StatusServiceUnavailable, 0)
	if _, err := c.GetRawEntries(ctx(t), 0, 0); statusOf(err) != 503 {
		t.Errorf("any-endpoint fault: %v, want HTTP 503", err)
	}
	if h, _ := rec.last(); h.Get("Retry-After") != "" {
		t.Errorf("Retry-After %q without retryAfter", h.Get("Retry-After"))
	}
	if _, err := c.GetRawEntries(ctx(t), 0, 0); err != nil {
		t.Errorf("after the one failure: %v", err)
	}

	l.Fail("get-entries", 0, http.StatusBadGateway, 0) // until cleared
	for i := 0; i < 3; i++ {
		if _, err := c.GetRawEntries(ctx(t), 0, 0); statusOf(err) != 502 {
			t.Errorf("sticky fault %d: %v, want HTTP 502", i, err)
		}
	}
	l.ClearFaults()
	if _, err := c.GetRawEntries(ctx(t), 0, 0); err != nil {
		t.Errorf("after ClearFaults: %v", err)
	}

	if got := l.Requests("get-sth"); got != 3 {
		t.Errorf("Requests(get-sth) = %d, want 3", got)
	}
	if got := l.Requests("get-entries"); got != 7 {
		t.Errorf("Requests(get-entries) = %d, want 7", got)
	}
	if got := l.Requests(""); got != 10 {
		t.Errorf("Requests(\"\") = %d, want 10", got)
	}
}

func TestSetDelay(t *testing.T) {
	l := ctlogfake.New(t)
	c := newClient(t, l, nil, true)

	l.SetDelay("get-sth", time.Hour)
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.GetSTH(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("delayed GetSTH: %v, want a context deadline error", err)
	}
	if _, err := c.GetAcceptedRoots(ctx(t)); err != nil {
		t.Errorf("get-roots is not delayed: %v", err)
	}
	if l.Requests("get-sth") != 1 {
		t.Errorf("Requests(get-sth) = %d, want 1", l.Requests("get-sth"))
	}

	l.ClearFaults()
	if _, err := c.GetSTH(ctx(t)); err != nil {
		t.Errorf("after ClearFaults: %v", err)
	}

	// The abandoned handler must have returned: closing the server (which
	// waits for handlers) must not wait for the hour.
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close is blocked: the delayed handler ignored the request's cancellation")
	}
}

// precertLeaf builds a precert_entry MerkleTreeLeaf by hand, apart from the
// fake's and ct-go's encoders.
func precertLeaf(ts uint64, keyHash [32]byte, tbs []byte) []byte {
	b := []byte{0, 0} // v1, timestamped_entry
	for i := 7; i >= 0; i-- {
		b = append(b, byte(ts>>(8*i)))
	}
	b = append(b, 0, 1) // precert_entry
	b = append(b, keyHash[:]...)
	b = append(b, byte(len(tbs)>>16), byte(len(tbs)>>8), byte(len(tbs)))
	b = append(b, tbs...)
	return append(b, 0, 0) // no extensions
}

func TestCallerMadePrecertEntries(t *testing.T) {
	l := ctlogfake.New(t)
	root, ca := testpki.NewChain(t, "Raw Root", "Test PKI", "Raw CA", "Test PKI")
	a, b := issue(t, ca, "a.example.com"), issue(t, ca, "b.example.com")
	aTBS, err := ctx509.RemoveCTPoison(mustParse(t, a.Precert).RawTBSCertificate)
	if err != nil {
		t.Fatal(err)
	}
	keyHash := sha256.Sum256(ca.Cert.RawSubjectPublicKeyInfo)
	// A TBSCertificate whose serial is the only field: ct-go cannot parse it.
	oddTBS := []byte{0x30, 0x03, 0x02, 0x01, 0xff}
	bChain, err := ctls.Marshal(ct.PrecertChainEntry{PreCertificate: ct.ASN1Cert{Data: b.Precert}, CertificateChain: []ct.ASN1Cert{{Data: ca.DER}}})
	if err != nil {
		t.Fatal(err)
	}

	type want struct {
		tbs, extra []byte
		keyHash    [32]byte
	}
	var wants []want
	before := uint64(time.Now().UnixMilli())
	for _, w := range []want{
		{nil, nil, [32]byte{}},
		{[]byte("garbage TBS"), []byte("garbage extra_data"), [32]byte{}},
		{aTBS, bChain, [32]byte{}}, // the leaf is a's TBS, the extra_data b's precertificate
	} {
		if i := l.AddRawPrecert(w.tbs, w.extra); i != int64(len(wants)) {
			t.Fatalf("AddRawPrecert returned index %d, want %d", i, len(wants))
		}
		wants = append(wants, w)
	}
	if i := l.AddPrecertEntry(oddTBS, keyHash, b.Precert, ca.DER, root.DER); i != 3 {
		t.Fatalf("AddPrecertEntry returned index %d", i)
	}
	oddChain, err := ctls.Marshal(ct.PrecertChainEntry{PreCertificate: ct.ASN1Cert{Data: b.Precert}, CertificateChain: []ct.ASN1Cert{{Data: ca.DER}, {Data: root.DER}}})
	if err != nil {
		t.Fatal(err)
	}
	wants = append(wants, want{oddTBS, oddChain, keyHash})
	l.AddCert(a.Final, ca.DER)
	after := uint64(time.Now().UnixMilli())
	sth := l.Publish()
	c := newClient(t, l, nil, true)
	entries := fetchAll(t, c, 5)

	for i, w := range wants {
		e := entries[i]
		if len(e.LeafInput) < 10 {
			t.Fatalf("entry %d: leaf_input %x", i, e.LeafInput)
		}
		var ts uint64
		for _, c := range e.LeafInput[2:10] {
			ts = ts<<8 | uint64(c)
		}
		if ts < before || ts > after {
			t.Errorf("entry %d: timestamp %d not in [%d, %d]", i, ts, before, after)
		}
		if got := precertLeaf(ts, w.keyHash, w.tbs); !bytes.Equal(e.LeafInput, got) {
			t.Errorf("entry %d: leaf_input\n%x, want\n%x", i, e.LeafInput, got)
		}
		if !bytes.Equal(e.ExtraData, w.extra) {
			t.Errorf("entry %d: extra_data %x, want %x", i, e.ExtraData, w.extra)
		}
		if l.LeafHash(int64(i)) != leafHash(e.LeafInput) {
			t.Errorf("entry %d: LeafHash differs from the served leaf's", i)
		}
	}

	// What a monitor makes of them.
	for _, i := range []int64{0, 1} {
		if _, err := ct.RawLogEntryFromLeaf(i, &entries[i]); err == nil {
			t.Errorf("entry %d decoded although its extra_data is not a PrecertChainEntry", i)
		}
	}
	mismatched, err := ct.RawLogEntryFromLeaf(2, &entries[2])
	if err != nil || !bytes.Equal(mismatched.Leaf.TimestampedEntry.PrecertEntry.TBSCertificate, aTBS) || !bytes.Equal(mismatched.Cert.Data, b.Precert) {
		t.Errorf("entry 2 (%v) is not a's TBS with b's precertificate", err)
	}
	odd, err := ct.RawLogEntryFromLeaf(3, &entries[3])
	if err != nil {
		t.Fatalf("entry 3: %v", err)
	}
	if pe := odd.Leaf.TimestampedEntry.PrecertEntry; !bytes.Equal(pe.TBSCertificate, oddTBS) || pe.IssuerKeyHash != keyHash ||
		!bytes.Equal(odd.Cert.Data, b.Precert) || len(odd.Chain) != 2 || !bytes.Equal(odd.Chain[1].Data, root.DER) {
		t.Errorf("entry 3 = %+v", odd)
	}
	if _, err := odd.ToLogEntry(); !ctx509.IsFatal(err) {
		t.Errorf("ct-go parsed the odd TBS (%v): the test proves nothing", err)
	}

	// The tree covers them: root, inclusion proofs both ways.
	if mth(hashes(entries)) != [32]byte(sth.SHA256RootHash) {
		t.Fatal("root of the served entries differs from the STH")
	}
	for i := range entries {
		h := leafHash(entries[i].LeafInput)
		ep, err := c.GetEntryAndProof(ctx(t), uint64(i), 5)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ep.LeafInput, entries[i].LeafInput) || !bytes.Equal(ep.ExtraData, entries[i].ExtraData) {
			t.Errorf("get-entry-and-proof %d differs from get-entries", i)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), 5, h[:], ep.AuditPath, sth.SHA256RootHash[:]); err != nil {
			t.Errorf("inclusion of %d: %v", i, err)
		}
		if rsp, err := c.GetProofByHash(ctx(t), h[:], 5); err != nil || rsp.LeafIndex != int64(i) {
			t.Errorf("get-proof-by-hash %d: %v, %v", i, rsp, err)
		}
	}
	roots, err := c.GetAcceptedRoots(ctx(t))
	if err != nil || len(roots) != 2 || !bytes.Equal(roots[0].Data, root.DER) {
		t.Errorf("GetAcceptedRoots = %d roots (%v), want the chain end of AddPrecertEntry first", len(roots), err)
	}

	// Corrupting them works as for any entry: the empty TBS by its
	// timestamp, the others by their last TBS byte.
	for _, i := range []int64{0, 3} {
		l.CorruptEntry(i)
	}
	corrupted := fetchAll(t, c, 5)
	for i, e := range corrupted {
		if bad := leafHash(e.LeafInput) != l.LeafHash(int64(i)); bad != (i == 0 || i == 3) {
			t.Errorf("entry %d corrupted: %v", i, bad)
		}
	}
	if got := corrupted[3].LeafInput; !bytes.Equal(got[:len(got)-3], entries[3].LeafInput[:len(got)-3]) || got[len(got)-3] == entries[3].LeafInput[len(got)-3] {
		t.Errorf("entry 3 was not corrupted in its last TBS byte")
	}
}

func mustParse(t *testing.T, der []byte) *ctx509.Certificate {
	t.Helper()
	c, err := ctx509.ParseCertificate(der)
	if ctx509.IsFatal(err) {
		t.Fatal(err)
	}
	return c
}
