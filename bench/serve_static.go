package main

// The static-ct-api log, served as Sunlight's Skylight serves one (see
// internal/staticlogfake, whose tree, checkpoint signer and handler it
// uses): gzip data tiles precomputed at start, hash tiles sliced from the
// stored tree (partial ones at the right edge), and issuers.

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"encoding/hex"
	"net/http"
	"sync"

	"filippo.io/sunlight"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/ct-exporter/ct_exporter/internal/staticlogfake"
)

// StaticOrigin is the checkpoint origin (the log's name).
const StaticOrigin = "bench.ct-exporter.test/2026"

type staticLog struct {
	n          int64
	data       [][]byte // gzip data tiles: full ones, then the partial one
	tree       *staticlogfake.Tree
	root       [32]byte
	checkpoint []byte
	issuers    map[string][]byte // hex SHA-256 → DER
	stats      *stats
}

// buildStatic precomputes the tiles for entries.
func buildStatic(g *Generator, entries []Entry, key *ecdsa.PrivateKey, ts int64, level int, st *stats) (*staticLog, error) {
	n := int64(len(entries))
	l := &staticLog{n: n, stats: st, issuers: map[string][]byte{}}
	l.data = make([][]byte, (n+sunlight.TileWidth-1)/sunlight.TileWidth)
	leaves := make([]byte, 32*n)
	pool := sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, level); return w }}
	parallel(len(l.data), func(k int) {
		lo, hi := int64(k)*sunlight.TileWidth, min(int64(k+1)*sunlight.TileWidth, n)
		raw := make([]byte, 0, 640<<10)
		for i := lo; i < hi; i++ {
			le := tileEntry(&entries[i], i)
			raw = sunlight.AppendTileLeaf(raw, &le)
			h := tlog.RecordHash(le.MerkleTreeLeaf())
			copy(leaves[32*i:], h[:])
		}
		var b bytes.Buffer
		b.Grow(len(raw) / 2)
		w := pool.Get().(*gzip.Writer)
		w.Reset(&b)
		w.Write(raw)
		w.Close()
		pool.Put(w)
		l.data[k] = b.Bytes()
	})
	l.tree = staticlogfake.NewTree(leaves)
	var err error
	if l.root, err = l.tree.Root(n); err != nil {
		return nil, err
	}
	signer, err := staticlogfake.NewSigner(StaticOrigin, key)
	if err != nil {
		return nil, err
	}
	if l.checkpoint, err = signer.Sign(tlog.Tree{N: n, Hash: l.root}, ts); err != nil {
		return nil, err
	}
	for _, c := range g.cas {
		for i, der := range c.chain {
			l.issuers[hex.EncodeToString(c.chainFP[i][:])] = der
		}
	}
	return l, nil
}

func tileEntry(e *Entry, i int64) sunlight.LogEntry {
	le := sunlight.LogEntry{
		Certificate: e.Cert, IsPrecert: e.Precert, ChainFingerprints: e.CA.chainFP,
		LeafIndex: i, Timestamp: e.Timestamp,
	}
	if e.Precert {
		le.IssuerKeyHash, le.PreCertificate = e.CA.keyHash, e.PreCert
	}
	return le
}

func (l *staticLog) register(mux *http.ServeMux) {
	h := &staticlogfake.Handler{Backend: l, Observe: l.stats.count}
	h.Register(mux, "/log")
}

// Checkpoint, Tile and Issuer make the log a staticlogfake.Backend.

func (l *staticLog) Checkpoint() []byte { return l.checkpoint }

func (l *staticLog) Tile(t tlog.Tile) ([]byte, bool) {
	if !staticlogfake.Published(t, l.n) {
		return nil, false
	}
	if t.L == -1 {
		return l.data[t.N], true
	}
	return l.tree.HashTile(t)
}

func (l *staticLog) Issuer(fingerprint string) ([]byte, bool) {
	der, ok := l.issuers[fingerprint]
	return der, ok
}
