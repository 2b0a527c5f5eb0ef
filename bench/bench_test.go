package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/sunlight"
	ct "github.com/google/certificate-transparency-go"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/ctlog"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// TestMain lets the test binary be the server process, as the bench
// binary is when it re-executes itself.
func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "serve" {
		o, err := parseOptions(os.Args[1:], os.Stderr)
		if err == nil {
			err = serve(o, true)
		}
		fmt.Fprintln(os.Stderr, "bench server:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

var testEpoch = time.Now().UTC().Truncate(24 * time.Hour)

// TestBench runs the whole benchmark on a small log, over both protocols,
// and requires exactly the needles to be found.
func TestBench(t *testing.T) {
	o, err := parseOptions([]string{"-entries", "20000", "-seed", "7", "-workers", "4", "-batch", "1000"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	o.timeout = 2 * time.Minute
	var out bytes.Buffer
	results, err := run(context.Background(), o, &out, os.Stderr)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("%d results, want 2", len(results))
	}
	for _, r := range results {
		if !r.OK() || r.Found != uint64(r.Needles) || r.Needles < 8 || r.Malformed != uint64(r.WantMalform) || r.WantMalform < 3 {
			t.Errorf("%s: found %d of %d needles, %d of %d malformed: %v", r.Protocol, r.Found, r.Needles, r.Malformed, r.WantMalform, r.Problems)
		}
	}
	if !strings.Contains(out.String(), "static: OK") || !strings.Contains(out.String(), "rfc6962: OK") {
		t.Error("the report does not say OK for both protocols")
	}
}

// TestGenerated checks that generation is deterministic, that the
// certificates parse (with the exporter's parser and crypto/x509), and the
// shape of the log: half precertificates, SAN counts, sizes.
func TestGenerated(t *testing.T) {
	cfg := Config{Entries: 20000, Seed: 3, Epoch: testEpoch}
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := NewGenerator(cfg)
	special := map[int64]bool{}
	for i := range g.plan.slots {
		special[i] = true
	}
	precerts, big, total := 0, 0, 0
	for i := int64(0); i < cfg.Entries; i++ {
		e := g.Entry(i)
		if i%50 == 0 && !bytes.Equal(e.Cert, g2.Entry(i).Cert) {
			t.Fatalf("entry %d differs between two generators", i)
		}
		if special[i] {
			continue
		}
		der := e.Cert
		if e.Precert {
			precerts++
			der = e.PreCert
		}
		total += len(der)
		if i%13 != 0 {
			continue
		}
		c, err := cert.Parse(der)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if c.Precert != e.Precert {
			t.Errorf("entry %d: precert %v, want %v", i, c.Precert, e.Precert)
		}
		if len(c.DNSNames) > 3 {
			big++
		}
		if _, err := x509.ParseCertificate(der); err != nil {
			t.Errorf("entry %d: crypto/x509: %v", i, err)
		}
		for _, n := range c.DNSNames {
			if strings.Contains(n, "example.") {
				t.Errorf("entry %d: random name %s", i, n)
			}
		}
	}
	n := int(cfg.Entries) - len(special)
	if precerts < n*45/100 || precerts > n*55/100 {
		t.Errorf("%d precertificates of %d entries", precerts, n)
	}
	if avg := total / n; avg < 900 || avg > 2000 {
		t.Errorf("average certificate of %d bytes", avg)
	}
	if share := float64(big) / float64(n/13); share < 0.08 || share > 0.25 {
		t.Errorf("%.2f of certificates have more than 3 SANs", share)
	}
	for _, c := range append(g.roots, g.cas...) {
		if _, err := x509.ParseCertificate(c.der); err != nil {
			t.Errorf("CA %s: %v", c.cn, err)
		}
	}
	needles, err := g.Expected()
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range needles {
		if len(nd.Watches) == 0 || nd.Precert >= nd.Final {
			t.Errorf("needle %+v", nd)
		}
		for _, i := range []int64{nd.Precert, nd.Final} {
			e := g.Entry(i)
			der := e.Cert
			if e.Precert {
				der = e.PreCert
			}
			if _, err := x509.ParseCertificate(der); err != nil {
				t.Errorf("needle %d entry %d: %v", nd.ID, i, err)
			}
		}
	}
	for _, i := range g.plan.Malformed {
		var id cert.Identifiers
		if err := cert.ExtractIdentifiers(g.Entry(i).Cert, g.Entry(i).Precert, &id); err == nil {
			t.Errorf("malformed entry %d reads", i)
		}
	}
}

// TestEncodings checks the tile and proof formats against sunlight and
// transparency-dev/merkle.
func TestEncodings(t *testing.T) {
	g, err := NewGenerator(Config{Entries: 3000, Seed: 5, Epoch: testEpoch})
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]Entry, 3000)
	for i := range entries {
		entries[i] = g.Entry(int64(i))
	}
	key := testKey(t)
	st := &stats{m: map[string]*counter{}}
	l, err := buildRFC6962(g, entries, 1000, key, 1, st)
	if err != nil {
		t.Fatal(err)
	}
	// Inclusion proofs (get-entry-and-proof) and consistency proofs.
	for _, i := range []int64{0, 1, 255, 256, 1999, 2999} {
		p, err := tlog.ProveRecord(3000, i, l.tree)
		if err != nil {
			t.Fatal(err)
		}
		leaf := entries[i].appendLeafInput(nil)
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), 3000, rfc6962.DefaultHasher.HashLeaf(leaf), hashes(p), l.root[:]); err != nil {
			t.Errorf("inclusion of %d: %v", i, err)
		}
		if i == 0 {
			continue
		}
		root, _ := l.tree.Root(i)
		c, err := tlog.ProveTree(3000, i, l.tree)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(i), 3000, hashes(c), root[:], l.root[:]); err != nil {
			t.Errorf("consistency %d→3000: %v", i, err)
		}
	}
	// The answers decode to the entries.
	for k, body := range l.bodies {
		var rsp ct.GetEntriesResponse
		if err := json.Unmarshal(body, &rsp); err != nil {
			t.Fatal(err)
		}
		if len(rsp.Entries) != 1000 {
			t.Fatalf("%d entries in answer %d", len(rsp.Entries), k)
		}
		for j, le := range rsp.Entries {
			e := &entries[1000*k+j]
			if !bytes.Equal(le.LeafInput, e.appendLeafInput(nil)) || !bytes.Equal(le.ExtraData, e.appendExtraData(nil)) {
				t.Fatalf("entry %d does not decode to itself", 1000*k+j)
			}
		}
	}
	if got := bodySize(entries[:1000]); got != len(l.bodies[0]) {
		t.Errorf("bodySize %d, answer of %d bytes", got, len(l.bodies[0]))
	}
	// Data tile entries read back with sunlight.
	s, err := buildStatic(g, entries, key, 1, 1, st)
	if err != nil {
		t.Fatal(err)
	}
	le := tileEntry(&entries[300], 300)
	tile := sunlight.AppendTileLeaf(nil, &le)
	back, rest, err := sunlight.ReadTileLeaf(tile)
	if err != nil || len(rest) > 0 || back.LeafIndex != 300 || !bytes.Equal(back.Certificate, entries[300].Cert) {
		t.Errorf("tile leaf: %v %+v", err, back)
	}
	if len(s.data) != 12 {
		t.Errorf("%d data tiles, want 12", len(s.data))
	}
	if _, ok := s.tree.HashTile(tlog.Tile{H: 8, L: 1, N: 0, W: 11}); !ok {
		t.Error("no partial level-1 hash tile")
	}
}

func hashes(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

// BenchmarkGenerate measures generating one entry.
func BenchmarkGenerate(b *testing.B) {
	g, err := NewGenerator(Config{Entries: 1000000, Seed: 1, Epoch: testEpoch})
	if err != nil {
		b.Fatal(err)
	}
	i := int64(0)
	for b.Loop() {
		g.Entry(i % 1000000)
		i++
	}
}

func testKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestServeFromIndex follows both servers from an entry inside the log
// (get-entry-and-proof gives the RFC 6962 follower its compact range), and
// checks that unaligned get-entries answers are the aligned ones' entries.
func TestServeFromIndex(t *testing.T) {
	g, err := NewGenerator(Config{Entries: 5000, Seed: 9, Epoch: testEpoch})
	if err != nil {
		t.Fatal(err)
	}
	entries := generate(g)
	key := testKey(t)
	st := &stats{m: map[string]*counter{}}
	rl, err := buildRFC6962(g, entries, 1000, key, 1, st)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := buildStatic(g, entries, key, 1, 1, st)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	rl.register(mux)
	sl.register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	pub, _ := x509.MarshalPKIXPublicKey(key.Public())

	get := func(path string) ct.GetEntriesResponse {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var rsp ct.GetEntriesResponse
		if err := json.NewDecoder(res.Body).Decode(&rsp); err != nil {
			t.Fatal(err)
		}
		return rsp
	}
	aligned := get("/ct/v1/get-entries?start=1000&end=1999")
	odd := get("/ct/v1/get-entries?start=1500&end=2600")
	if len(aligned.Entries) != 1000 || len(odd.Entries) != 1000 {
		t.Fatalf("%d and %d entries", len(aligned.Entries), len(odd.Entries))
	}
	if !bytes.Equal(aligned.Entries[500].LeafInput, odd.Entries[0].LeafInput) || !bytes.Equal(aligned.Entries[999].ExtraData, odd.Entries[499].ExtraData) {
		t.Error("unaligned answer differs from the aligned one")
	}

	for _, proto := range []string{"rfc6962", "static"} {
		store, err := state.Open(filepath.Join(t.TempDir(), "s.state"), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := watch.NormalizeDomain("example.com")
		set := watch.NewSet([]watch.Watch{watch.NewWatch(d, true)})
		env := &ctsource.Env{Recorder: &ctsource.Recorder{Store: store, Policy: func() *watch.Set { return set }},
			Logger: slog.New(slog.DiscardHandler)}
		lo := ctlog.Options{Interval: time.Minute, Timeout: time.Minute, Start: "1234", Workers: 2, BatchSize: 512}
		var l *ctlog.Log
		if proto == "rfc6962" {
			l, err = ctlog.NewRFC6962("t", srv.URL+"/", pub, lo)
		} else {
			l, err = ctlog.NewStatic("t", srv.URL+"/log", pub, lo)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Poll(context.Background(), env); err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if s := l.Status(); s.Position != 5000 || !s.Verifying {
			t.Errorf("%s: %+v", proto, s)
		}
		store.Close()
	}
	t.Logf("requests: %+v", st.snapshot())
}

// TestMismatchDetected checks that the harness notices when what was found
// is not the expected set.
func TestMismatchDetected(t *testing.T) {
	o, err := parseOptions([]string{"-entries", "2000", "-seed", "11", "-protocol", "rfc6962"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGenerator(o.config())
	if err != nil {
		t.Fatal(err)
	}
	needles, err := g.Expected()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(o, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	wrong := slices.Clone(needles[1:])         // one needle unexpected
	wrong[0].Watches = []string{"example.net"} // one recorded for other watches
	wrong[1].TBSSHA256[0] ^= 1                 // one not found
	r, err := measure(context.Background(), o, srv, "rfc6962", false, wrong, len(g.Plan().Malformed)+1)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || len(r.Problems) < 4 {
		t.Errorf("problems: %q", r.Problems)
	}
	t.Logf("problems: %q", r.Problems)
}
