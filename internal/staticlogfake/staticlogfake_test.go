package staticlogfake_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"filippo.io/sunlight"
	"filippo.io/torchwood"
	ct "github.com/google/certificate-transparency-go"
	ctls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/ctlog"
	"github.com/ct-exporter/ct_exporter/internal/staticlogfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// malformedCert is a DER SEQUENCE holding an INTEGER: DER, not a certificate.
var malformedCert = []byte{0x30, 0x03, 0x02, 0x01, 0x00}

// pki issues the certificates the tests log.
type pki struct {
	t        testing.TB
	root, ca *testpki.CA
	keyHash  [32]byte
	noise    [][]byte // a few distinct certificates for unwatched names
}

func newPKI(t testing.TB) *pki {
	p := &pki{t: t}
	p.root, p.ca = testpki.NewChain(t, "Fake Static Root", "Test PKI", "E7", "Let's Encrypt")
	p.keyHash = sha256.Sum256(p.ca.Cert.RawSubjectPublicKeyInfo)
	for i := range 4 {
		iss, err := p.ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("noise%d.example.net", i)}})
		if err != nil {
			t.Fatal(err)
		}
		p.noise = append(p.noise, iss.Final)
	}
	return p
}

func (p *pki) issue(name string) *testpki.Issued {
	p.t.Helper()
	iss, err := p.ca.Issue(testpki.Leaf{DNSNames: []string{name}, SCTs: 2})
	if err != nil {
		p.t.Fatal(err)
	}
	return iss
}

// addPrecert logs a precertificate as a log does: the TBSCertificate
// without the poison.
func (p *pki) addPrecert(l *staticlogfake.Log, pre []byte) int64 {
	p.t.Helper()
	c, err := ctx509.ParseCertificate(pre)
	if err != nil {
		p.t.Fatal(err)
	}
	tbs, err := ctx509.RemoveCTPoison(c.RawTBSCertificate)
	if err != nil {
		p.t.Fatal(err)
	}
	return l.AddPrecert(tbs, pre, p.keyHash, p.ca.DER, p.root.DER)
}

// fill appends noise until the log holds n entries.
func (p *pki) fill(l *staticlogfake.Log, n int64) {
	for i := l.Size(); i < n; i++ {
		l.AddCert(p.noise[i%int64(len(p.noise))], p.ca.DER, p.root.DER)
	}
}

// follower is ct_exporter's own follower of a log, into a fresh state file.
type follower struct {
	t     *testing.T
	store *state.Store
	env   *ctsource.Env
	log   *ctlog.Log
}

func newFollower(t *testing.T, l *staticlogfake.Log) *follower {
	store, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	d, _ := watch.NormalizeDomain("example.com")
	set := watch.NewSet([]watch.Watch{watch.NewWatch(d, true)})
	if err := store.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 100, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return set.Verdict(w, is.Candidate())
	}}); err != nil {
		t.Fatal(err)
	}
	f := &follower{t: t, store: store, env: &ctsource.Env{
		Recorder: &ctsource.Recorder{Store: store, Policy: func() *watch.Set { return set }},
		Logger:   slog.New(slog.DiscardHandler),
	}}
	f.log, err = ctlog.NewStatic("fake", l.MonitoringPrefix(), l.PublicKeyDER(), ctlog.Options{
		Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", Workers: 2, BatchSize: ctlog.StaticTileEntries, MMD: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *follower) counter(name string) uint64 {
	var n uint64
	for _, c := range f.store.Snapshot().Counters {
		if c.Name == name {
			n += c.Value
		}
	}
	return n
}

// check polls once and checks where the follower stands.
func (f *follower) check(what string, size int64, issuances, malformed uint64) {
	f.t.Helper()
	if err := f.log.Poll(context.Background(), f.env); err != nil {
		f.t.Fatalf("%s: poll: %v", what, err)
	}
	st := f.log.Status()
	if !st.Known || !st.Verifying || st.TreeSize != size || st.Position != size || sum(st.Failures) != 0 {
		f.t.Fatalf("%s: status %+v, want tree size and position %d, verifying", what, st, size)
	}
	if got := f.store.Snapshot().Certificates; got != issuances {
		f.t.Errorf("%s: %d issuances, want %d", what, got, issuances)
	}
	if got := f.counter(state.CounterLogProcessed); got != uint64(size) {
		f.t.Errorf("%s: %d entries processed, want %d", what, got, size)
	}
	if got := f.counter(state.CounterLogMalformed); got != malformed {
		f.t.Errorf("%s: %d malformed entries, want %d", what, got, malformed)
	}
}

func sum(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestFollowedByCTSource follows the fake with ct_exporter's follower:
// entries across a full and a partial data tile, precertificates, malformed
// entries counted and not failing verification, a checkpoint that grows
// (proven consistent through the hash tiles) and one that rolls back.
func TestFollowedByCTSource(t *testing.T) {
	l := staticlogfake.New(t)
	p := newPKI(t)
	f := newFollower(t, l)
	f.check("empty log", 0, 0, 0)

	a := p.issue("www.example.com")
	p.addPrecert(l, a.Precert)
	p.fill(l, 100)
	l.AddCert(malformedCert, p.ca.DER, p.root.DER)
	l.AddPrecert([]byte{0x30, 0x00}, malformedCert, p.keyHash, p.ca.DER)
	p.fill(l, 150)
	l.AddCert(a.Final, p.ca.DER, p.root.DER)
	p.fill(l, 280)
	b := p.issue("api.example.com")
	p.addPrecert(l, b.Precert) // in the partial tile
	p.fill(l, 290)
	l.AddCert(b.Final, p.ca.DER, p.root.DER)
	p.fill(l, 300)
	if got := l.Size(); got != 300 {
		t.Fatalf("Size %d after 300 entries", got)
	}
	f.check("unpublished entries", 0, 0, 0)
	cp300 := l.Publish()
	f.check("one full and one partial tile", 300, 2, 2)

	// The partial tile fills up and two more follow, one of them partial.
	p.fill(l, 520)
	c := p.issue("new.example.com")
	p.addPrecert(l, c.Precert)
	p.fill(l, 600)
	l.Publish()
	f.check("grown", 600, 3, 2)

	// An older genuine checkpoint (a caching frontend serves them): proven
	// a prefix through the hash tiles, ignored, and nothing moves.
	l.ServeCheckpoint(cp300)
	if err := f.log.Poll(context.Background(), f.env); err != nil {
		t.Fatalf("older checkpoint of tree 300: %v", err)
	}
	if st := f.log.Status(); st.Failures[ctlog.CheckRollback] != 0 || st.OlderTreeHeads != 1 || st.Position != 600 || st.TreeSize != 600 {
		t.Fatalf("older checkpoint: status %+v", st)
	}
	l.Publish()
	f.check("published again", 600, 3, 2)
}

// fixedClock makes the fake's timestamps known.
var fixedClock = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sunlightClient(t *testing.T, l *staticlogfake.Log) *sunlight.Client {
	pub, err := x509.ParsePKIXPublicKey(l.PublicKeyDER())
	if err != nil {
		t.Fatal(err)
	}
	c, err := sunlight.NewClient(&sunlight.ClientConfig{
		MonitoringPrefix: l.MonitoringPrefix(), PublicKey: pub,
		UserAgent: "ct_exporter tests (+https://github.com/ct-exporter/ct_exporter)",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// entries reads the whole tree with sunlight's client, which stops before a
// partial tile now and then: read on from where it stopped.
func entries(t *testing.T, c *sunlight.Client, tree tlog.Tree) []*sunlight.LogEntry {
	var out []*sunlight.LogEntry
	for tries := 0; int64(len(out)) < tree.N; tries++ {
		if tries == 3 {
			t.Fatalf("sunlight client: %d entries of %d", len(out), tree.N)
		}
		for i, e := range c.Entries(context.Background(), tree, int64(len(out))) {
			if i != int64(len(out)) {
				t.Fatalf("sunlight client: entry %d after %d", i, len(out))
			}
			out = append(out, e)
		}
		if err := c.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestSunlightClient checks the fake with sunlight's own client: the
// checkpoint verifies, every entry reads back as appended, issuers are
// served, and a grown tree is consistent with the old one.
func TestSunlightClient(t *testing.T) {
	l := staticlogfake.New(t)
	l.SetClock(func() time.Time { return fixedClock })
	p := newPKI(t)
	ts := fixedClock.UnixMilli()
	fp := func(ders ...[]byte) (out [][32]byte) {
		for _, d := range ders {
			out = append(out, sha256.Sum256(d))
		}
		return out
	}
	var want []*sunlight.LogEntry
	addCert := func(cert []byte, chain ...[]byte) {
		i := l.AddCert(cert, chain...)
		want = append(want, &sunlight.LogEntry{Certificate: cert, ChainFingerprints: fp(chain...), LeafIndex: i, Timestamp: ts})
	}
	addPrecert := func(tbs, pre []byte, chain ...[]byte) {
		i := l.AddPrecert(tbs, pre, p.keyHash, chain...)
		want = append(want, &sunlight.LogEntry{Certificate: tbs, IsPrecert: true, IssuerKeyHash: p.keyHash, PreCertificate: pre,
			ChainFingerprints: fp(chain...), LeafIndex: i, Timestamp: ts})
	}
	a := p.issue("www.example.com")
	for i := range 300 {
		switch i {
		case 7:
			addCert(malformedCert, p.ca.DER, p.root.DER)
		case 8:
			addCert([]byte("not even DER")) // no chain at all
		case 270:
			addPrecert([]byte{0x30, 0x00}, a.Precert, p.ca.DER, p.root.DER)
		case 271:
			addCert(a.Final, p.ca.DER, p.root.DER)
		default:
			addCert(p.noise[i%len(p.noise)], p.ca.DER, p.root.DER)
		}
	}
	l.Publish()

	c := sunlightClient(t, l)
	ctx := context.Background()
	cp, _, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Origin != l.Origin() || cp.N != 300 {
		t.Fatalf("checkpoint %+v", cp)
	}
	got := entries(t, c, cp.Tree)
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("entry %d reads back as\n%+v\nwant\n%+v", i, got[i], want[i])
		}
	}
	for _, der := range [][]byte{p.ca.DER, p.root.DER} {
		iss, err := c.Issuer(ctx, sha256.Sum256(der))
		if err != nil || !bytes.Equal(iss.Raw, der) {
			t.Fatalf("issuer: %v", err)
		}
	}

	// Grow across a tile boundary; the old tree is a prefix of the new.
	for range 500 {
		addCert(p.noise[0], p.ca.DER)
	}
	l.Publish()
	cp2, _, err := c.Checkpoint(ctx)
	if err != nil || cp2.N != 800 {
		t.Fatalf("grown checkpoint %+v: %v", cp2, err)
	}
	hr := torchwood.TileHashReaderWithContext(ctx, cp2.Tree, c.TileReader())
	proof, err := tlog.ProveTree(cp2.N, cp.N, hr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(proof, cp2.N, cp2.Hash, cp.N, cp.Hash); err != nil {
		t.Fatalf("tree 300 is not a prefix of tree 800: %v", err)
	}
	// Records in full and partial tiles are proven included.
	for _, i := range []int64{0, 271, 299, 511, 799} {
		rp, err := tlog.ProveRecord(cp2.N, i, hr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(rp, cp2.N, cp2.Hash, i, tlog.RecordHash(want[i].MerkleTreeLeaf())); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
	}
	got = entries(t, c, cp2.Tree)
	if !reflect.DeepEqual(got[799], want[799]) {
		t.Fatalf("last entry %+v", got[799])
	}

	// An older checkpoint is served as it is, until the next Publish.
	old := l.Publish()
	l.AddCert(malformedCert)
	l.Publish()
	l.ServeCheckpoint(old)
	if cp3, _, err := c.Checkpoint(ctx); err != nil || cp3.N != 800 {
		t.Fatalf("served checkpoint %+v: %v", cp3, err)
	}
}

// TestWire checks what a client sees on the wire against the specification
// rather than a client library: the checkpoint's signature line, gzip data
// tiles sent as Content-Encoding: gzip whatever was asked, which partial
// tiles exist, and issuers.
func TestWire(t *testing.T) {
	l := staticlogfake.New(t)
	l.SetClock(func() time.Time { return fixedClock })
	p := newPKI(t)
	p.fill(l, 300)
	l.Publish()
	p.fill(l, 310)
	l.Publish()
	p.fill(l, 320) // appended, not published

	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(path string, accept string) *http.Response {
		req, _ := http.NewRequest("GET", l.MonitoringPrefix()+"/"+path, nil)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	body := func(res *http.Response) []byte {
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// The checkpoint: origin, size, root, then signature lines.
	res := get("checkpoint", "")
	cp := string(body(res))
	text, sigs, ok := strings.Cut(cp, "\n\n")
	lines := strings.Split(text, "\n")
	if !ok || res.Header.Get("Cache-Control") != "no-store" || len(lines) != 3 || lines[0] != l.Origin() || lines[1] != "310" {
		t.Fatalf("checkpoint %q, Cache-Control %q", cp, res.Header.Get("Cache-Control"))
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		t.Fatalf("root hash %q", lines[2])
	}
	id := l.LogID()
	kh := sha256.Sum256(append([]byte(l.Origin()+"\n\x05"), id[:]...))
	var found, others int
	for _, line := range strings.Split(strings.TrimSuffix(sigs, "\n"), "\n") {
		name, b64, _ := strings.Cut(strings.TrimPrefix(line, "— "), " ")
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) < 4 {
			t.Fatalf("signature line %q", line)
		}
		if name != l.Origin() || !bytes.Equal(raw[:4], kh[:4]) {
			others++
			continue
		}
		found++
		if got := int64(binary.BigEndian.Uint64(raw[4:12])); got != fixedClock.UnixMilli() {
			t.Errorf("signature timestamp %d, want %d", got, fixedClock.UnixMilli())
		}
		var ds ct.DigitallySigned
		if rest, err := ctls.Unmarshal(raw[12:], &ds); err != nil || len(rest) > 0 {
			t.Fatalf("TreeHeadSignature: %v, %d bytes left", err, len(rest))
		}
		pub, _ := x509.ParsePKIXPublicKey(l.PublicKeyDER())
		v, err := ct.NewSignatureVerifier(pub)
		if err != nil {
			t.Fatal(err)
		}
		sth := ct.SignedTreeHead{Version: ct.V1, TreeSize: 310, Timestamp: uint64(fixedClock.UnixMilli()), SHA256RootHash: ct.SHA256Hash(root), TreeHeadSignature: ds}
		if err := v.VerifySTHSignature(sth); err != nil {
			t.Errorf("TreeHeadSignature: %v", err)
		}
	}
	if found != 1 || others != 3 { // the witness and two grease lines
		t.Errorf("%d RFC 6962 signature lines and %d others, want 1 and 3", found, others)
	}

	// Data tiles are gzip on the wire even to a client that asks for none.
	for path, n := range map[string]int{"tile/data/000": 256, "tile/data/001.p/44": 44, "tile/data/001.p/54": 54} {
		res := get(path, "identity")
		if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: %s, Content-Encoding %q", path, res.Status, res.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		k := 0
		for ; len(raw) > 0; k++ {
			if _, raw, err = sunlight.ReadTileLeaf(raw); err != nil {
				t.Fatalf("%s: entry %d: %v", path, k, err)
			}
		}
		if k != n {
			t.Errorf("%s: %d entries, want %d", path, k, n)
		}
	}

	// The partial tiles of each published tree exist, no others.
	for path, status := range map[string]int{
		"tile/0/000":         200,
		"tile/0/001.p/44":    200,
		"tile/0/001.p/54":    200,
		"tile/1/000.p/1":     200,
		"tile/0/001.p/50":    404, // no tree of 306 entries was published
		"tile/data/001.p/50": 404,
		"tile/data/001.p/64": 404, // appended, not published
		"tile/0/001":         404,
		"tile/data/001":      404,
		"tile/data/002.p/1":  404,
		"tile/0/x001/000":    404,
		"tile/0/1":           400,
	} {
		if res := get(path, ""); res.StatusCode != status {
			t.Errorf("%s: %s, want %d", path, res.Status, status)
		}
	}
	if res := get("tile/0/001.p/54", ""); len(body(res)) != 54*32 || res.Header.Get("Content-Encoding") != "" {
		t.Errorf("partial hash tile: %d bytes, Content-Encoding %q", res.ContentLength, res.Header.Get("Content-Encoding"))
	}

	fp := sha256.Sum256(p.ca.DER)
	res = get(fmt.Sprintf("issuer/%x", fp), "")
	if der := body(res); !bytes.Equal(der, p.ca.DER) || res.Header.Get("Content-Type") != "application/pkix-cert" {
		t.Errorf("issuer: %s, %q", res.Status, res.Header.Get("Content-Type"))
	}
	if res := get(fmt.Sprintf("issuer/%x", sha256.Sum256([]byte("nobody"))), ""); res.StatusCode != 404 {
		t.Errorf("unknown issuer: %s", res.Status)
	}
}
