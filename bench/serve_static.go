package main

// The static-ct-api log, served as Sunlight's Skylight serves one: a
// checkpoint signed with the RFC 6962 key (plus an Ed25519 witness
// signature and grease signatures, as Sunlight adds), hash tiles sliced
// from the stored tree (partial ones at the right edge), gzip data tiles
// sent with Content-Encoding: gzip whatever the client accepts, and issuers.

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"sync"

	"filippo.io/sunlight"
	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// StaticOrigin is the checkpoint origin (the log's name).
const StaticOrigin = "bench.ct-exporter.test/2026"

type staticLog struct {
	n          int64
	data       [][]byte // gzip data tiles: full ones, then the partial one
	tree       *merkle
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
	l.tree = newMerkle(leaves)
	var err error
	if l.root, err = l.tree.root(n); err != nil {
		return nil, err
	}
	if l.checkpoint, err = signCheckpoint(key, n, ts, l.root); err != nil {
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

// signCheckpoint signs the checkpoint as Sunlight does.
func signCheckpoint(key *ecdsa.PrivateKey, n, ts int64, root [32]byte) ([]byte, error) {
	sig, err := signTreeHead(key, n, ts, root)
	if err != nil {
		return nil, err
	}
	rs, err := sunlight.NewRFC6962InjectedSigner(StaticOrigin, key.Public(), sig, ts)
	if err != nil {
		return nil, err
	}
	seed := sha256.Sum256([]byte("bench witness key"))
	ws, err := newEd25519Signer(StaticOrigin, ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		return nil, err
	}
	grease := sha256.Sum256([]byte("grease"))
	return note.Sign(&note.Note{
		Text: torchwood.Checkpoint{Origin: StaticOrigin, Tree: tlog.Tree{N: n, Hash: root}}.String(),
		UnverifiedSigs: []note.Signature{
			{Name: "grease.invalid", Hash: binary.BigEndian.Uint32(grease[:]), Base64: base64.StdEncoding.EncodeToString(grease[:20])},
			{Name: StaticOrigin, Hash: binary.BigEndian.Uint32(grease[4:]), Base64: base64.StdEncoding.EncodeToString(grease[4:30])},
		},
	}, ws, rs)
}

type ed25519Signer struct {
	v note.Verifier
	k ed25519.PrivateKey
}

func newEd25519Signer(name string, key ed25519.PrivateKey) (*ed25519Signer, error) {
	vk, err := note.NewEd25519VerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vk)
	if err != nil {
		return nil, err
	}
	return &ed25519Signer{v, key}, nil
}

func (s *ed25519Signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.k, msg), nil }
func (s *ed25519Signer) Name() string                    { return s.v.Name() }
func (s *ed25519Signer) KeyHash() uint32                 { return s.v.KeyHash() }
func (s *ed25519Signer) Verifier() note.Verifier         { return s.v }

func (l *staticLog) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /log/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		l.stats.reply(w, "checkpoint", "text/plain; charset=utf-8", l.checkpoint)
	})
	mux.HandleFunc("GET /log/issuer/{fp}", func(w http.ResponseWriter, r *http.Request) {
		der, ok := l.issuers[r.PathValue("fp")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		l.stats.reply(w, "issuer", "application/pkix-cert", der)
	})
	mux.HandleFunc("GET /log/tile/{tile...}", l.tile)
}

func (l *staticLog) tile(w http.ResponseWriter, r *http.Request) {
	t, err := sunlight.ParseTilePath("tile/" + r.PathValue("tile"))
	if err != nil {
		http.Error(w, "invalid tile path", http.StatusBadRequest)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=604800, immutable")
	switch {
	case t.L == -1:
		// Full tiles, and the partial one at the right edge.
		full := l.n / sunlight.TileWidth
		if t.N > full || t.N == full && int64(t.W) != l.n%sunlight.TileWidth || t.N < full && t.W != sunlight.TileWidth {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		l.stats.reply(w, "data-tile", "application/octet-stream", l.data[t.N])
	case t.L >= 0:
		data, ok := l.tree.tile(t)
		if !ok {
			http.NotFound(w, r)
			return
		}
		l.stats.reply(w, "hash-tile", "application/octet-stream", data)
	default:
		http.NotFound(w, r)
	}
}
