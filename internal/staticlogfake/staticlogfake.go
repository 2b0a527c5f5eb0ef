// Package staticlogfake is an httptest fake of a c2sp.org/static-ct-api
// (Sunlight) log that serves arbitrary entries, malformed certificates
// included, which a real Sunlight refuses at submission. Tests that can
// submit real chains use internal/sunlightlog instead.
//
// On the wire it is a real log as Sunlight and Skylight serve one: a
// checkpoint signed by an ECDSA P-256 key as a signed note (RFC 6962
// signature line, Ed25519 witness line, grease lines), data tiles of
// TileLeaf entries (leaf_index extension, chain fingerprints) served
// gzipped with Content-Encoding: gzip, hash tiles of the real Merkle tree,
// partial tiles at the right edge, issuers by fingerprint, all under the
// monitoring prefix with the x-prefixed three-digit path groups. Unlike a
// real log it never advances on its own: entries stay invisible until
// Publish signs a checkpoint covering them.
//
// The building blocks (Tree, Signer, Handler) are shared with bench, which
// serves a generated log of millions of entries.
package staticlogfake

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/sunlight"
	"golang.org/x/mod/sumdb/tlog"
)

// prefixPath is the monitoring prefix's path on the server.
const prefixPath = "/log"

// Log is a running fake static-ct-api log.
type Log struct {
	t      testing.TB
	srv    *httptest.Server
	signer *Signer
	spki   []byte
	logID  [32]byte

	mu         sync.Mutex
	now        func() time.Time
	leaves     [][]byte    // TileLeaf encodings, appended or published
	hashes     []tlog.Hash // their record hashes
	tree       *Tree       // the published entries' tree
	sizes      []int64     // every tree size published, ascending
	tiles      map[tlog.Tile][]byte
	issuers    map[string][]byte
	checkpoint []byte // the last published
	served     []byte // what /checkpoint serves instead, or nil
}

// New starts a fake log with a new P-256 key, serving the empty tree's
// checkpoint, as Sunlight does from its creation; t.Cleanup closes it.
func New(t testing.TB) *Log {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	l := &Log{
		t: t, spki: spki, logID: sha256.Sum256(spki),
		now: time.Now, tree: NewTree(nil), tiles: map[tlog.Tile][]byte{}, issuers: map[string][]byte{},
	}
	mux := http.NewServeMux()
	(&Handler{Backend: backend{l}}).Register(mux, prefixPath)
	l.srv = httptest.NewServer(mux)
	t.Cleanup(l.srv.Close)
	// Sunlight names a log after its submission prefix without the scheme.
	origin := strings.TrimPrefix(l.srv.URL, "http://") + prefixPath
	if l.signer, err = NewSigner(origin, key); err != nil {
		t.Fatal(err)
	}
	l.Publish()
	return l
}

// MonitoringPrefix is the log's monitoring prefix, without a trailing slash.
func (l *Log) MonitoringPrefix() string { return l.srv.URL + prefixPath }

// PublicKeyDER is the log's public key as a DER SubjectPublicKeyInfo.
func (l *Log) PublicKeyDER() []byte { return bytes.Clone(l.spki) }

// LogID is the SHA-256 of the DER SubjectPublicKeyInfo.
func (l *Log) LogID() [32]byte { return l.logID }

// Origin is the checkpoint's origin line, the log's name.
func (l *Log) Origin() string { return l.signer.Origin() }

// SetClock sets the clock entry and checkpoint timestamps are read from
// (time.Now when nil).
func (l *Log) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now == nil {
		now = time.Now
	}
	l.now = now
}

// AddCert appends an x509_entry holding cert, any bytes (certificates
// up to 16 MiB), with the chain (DER, issuer first) as its fingerprints
// and issuers. It returns the entry's index.
func (l *Log) AddCert(cert []byte, chain ...[]byte) int64 {
	return l.add(&sunlight.LogEntry{Certificate: cert}, chain)
}

// AddPrecert appends a precert_entry: tbs is the TBSCertificate as the log
// holds it (the precertificate's without the poison, for a well-formed
// one), precert the full precertificate the TileLeaf carries, both any
// bytes, and issuerKeyHash the SHA-256 of the issuer's
// SubjectPublicKeyInfo. It returns the entry's index.
func (l *Log) AddPrecert(tbs, precert []byte, issuerKeyHash [32]byte, chain ...[]byte) int64 {
	return l.add(&sunlight.LogEntry{Certificate: tbs, IsPrecert: true, PreCertificate: precert, IssuerKeyHash: issuerKeyHash}, chain)
}

func (l *Log) add(e *sunlight.LogEntry, chain [][]byte) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.Certificate, e.PreCertificate = bytes.Clone(e.Certificate), bytes.Clone(e.PreCertificate)
	for _, c := range chain {
		fp := sha256.Sum256(c)
		e.ChainFingerprints = append(e.ChainFingerprints, fp)
		l.issuers[hex.EncodeToString(fp[:])] = bytes.Clone(c)
	}
	e.LeafIndex = int64(len(l.leaves))
	e.Timestamp = l.now().UnixMilli()
	l.leaves = append(l.leaves, sunlight.AppendTileLeaf(nil, e))
	l.hashes = append(l.hashes, tlog.RecordHash(e.MerkleTreeLeaf()))
	return e.LeafIndex
}

// Size is the number of entries appended, published or not.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.leaves))
}

// Publish signs a checkpoint covering every entry appended so far, makes
// the tiles of that tree available (the partial ones of earlier trees stay,
// as Sunlight keeps them), serves it from /checkpoint from now on, and
// returns it.
func (l *Log) Publish() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hashes[l.tree.Size():] {
		l.tree.Append(h)
	}
	n := l.tree.Size()
	root, err := l.tree.Root(n)
	if err != nil {
		l.t.Fatalf("staticlogfake: root of tree %d: %v", n, err)
	}
	cp, err := l.signer.Sign(tlog.Tree{N: n, Hash: root}, l.now().UnixMilli())
	if err != nil {
		l.t.Fatal(err)
	}
	if len(l.sizes) == 0 || l.sizes[len(l.sizes)-1] != n {
		l.sizes = append(l.sizes, n)
	}
	l.checkpoint, l.served = cp, nil
	return bytes.Clone(cp)
}

// ServeCheckpoint makes /checkpoint serve signed as it is (e.g. an older
// checkpoint Publish returned: a rollback) until the next Publish; nil
// serves the published one again. Tiles are still served up to the
// published tree.
func (l *Log) ServeCheckpoint(signed []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.served = bytes.Clone(signed)
}

// SignCheckpoint signs a checkpoint of any tree size and root with the
// log's keys, timestamped now, without publishing it (ServeCheckpoint
// serves it): a tree head the log's key signed whatever it says, as a
// misbehaving log would.
func (l *Log) SignCheckpoint(size uint64, root [32]byte) []byte {
	l.mu.Lock()
	now := l.now()
	l.mu.Unlock()
	cp, err := l.signer.SignSize(size, root, now.UnixMilli())
	if err != nil {
		l.t.Fatal(err)
	}
	return cp
}

// backend is what the Handler reads.
type backend struct{ l *Log }

func (b backend) Checkpoint() []byte {
	b.l.mu.Lock()
	defer b.l.mu.Unlock()
	if b.l.served != nil {
		return b.l.served
	}
	return b.l.checkpoint
}

func (b backend) Issuer(fingerprint string) ([]byte, bool) {
	b.l.mu.Lock()
	defer b.l.mu.Unlock()
	der, ok := b.l.issuers[fingerprint]
	return der, ok
}

func (b backend) Tile(t tlog.Tile) ([]byte, bool) {
	l := b.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !Published(t, l.sizes...) {
		return nil, false
	}
	if t.L >= 0 {
		return l.tree.HashTile(t)
	}
	if data, ok := l.tiles[t]; ok {
		return data, true
	}
	// Compressed once: a published tile never changes.
	var raw []byte
	for _, leaf := range l.leaves[t.N*sunlight.TileWidth : t.N*sunlight.TileWidth+int64(t.W)] {
		raw = append(raw, leaf...)
	}
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(raw)
	w.Close()
	l.tiles[t] = buf.Bytes()
	return buf.Bytes(), true
}
