package ctsource

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"filippo.io/sunlight"
	"filippo.io/torchwood"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// StaticTileEntries is how many entries a data tile holds: batches are best
// a multiple of it.
const (
	StaticTileEntries = 256
	tileHeight        = 8
)

// staticLog speaks c2sp.org/static-ct-api through filippo.io/sunlight. Every
// entry the client yields was checked against the verified checkpoint
// through the hash tiles, partial tiles included.
type staticLog struct {
	prefix string
	pub    crypto.PublicKey
	tr     *transport
	// clients: a sunlight.Client keeps the state of one iteration, so each
	// worker takes its own.
	clients sync.Pool
}

// NewStaticLog returns a source following the static-ct-api log whose
// monitoring prefix is url, with checkpoints signed by publicKey (DER
// SubjectPublicKeyInfo).
func NewStaticLog(name, url string, publicKey []byte, opts LogOptions) (*CTLog, error) {
	pub, err := x509.ParsePKIXPublicKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("ctlog %s: public_key: %w", name, err)
	}
	l := &staticLog{
		prefix: strings.TrimSuffix(url, "/"),
		pub:    pub,
		tr:     newTransport(opts.Timeout, gapFor(opts.RequestsPerSecond), opts.Interval, maxLogResponse),
	}
	if _, err := l.client(); err != nil {
		return nil, fmt.Errorf("ctlog %s: %w", name, err)
	}
	opts.BatchSize = wholeTiles(opts.BatchSize)
	return newCTLog(name, l, opts), nil
}

// wholeTiles rounds a batch size up to whole tiles: a batch of part of a
// tile would download the tile again for the next batch.
func wholeTiles(batch int) int {
	if batch <= 0 {
		return batch
	}
	return (batch + StaticTileEntries - 1) / StaticTileEntries * StaticTileEntries
}

func (l *staticLog) client() (*sunlight.Client, error) {
	if c, ok := l.clients.Get().(*sunlight.Client); ok {
		return c, nil
	}
	return sunlight.NewClient(&sunlight.ClientConfig{
		MonitoringPrefix: l.prefix,
		PublicKey:        l.pub,
		HTTPClient:       &http.Client{Transport: l.tr},
		UserAgent:        "ct_exporter (+https://github.com/ct-exporter/ct_exporter)",
		Timeout:          5 * time.Minute,
	})
}

func (l *staticLog) head(ctx context.Context) (treeHead, error) {
	c, err := l.client()
	if err != nil {
		return treeHead{}, err
	}
	defer l.clients.Put(c)
	signed, err := c.TileReader().ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		return treeHead{}, classify(ctx, err)
	}
	origin, _, _ := strings.Cut(string(signed), "\n")
	v, err := sunlight.NewRFC6962Verifier(origin, l.pub)
	if err != nil {
		return treeHead{}, verifyFailed(CheckSTHSignature, "checkpoint origin %q: %v", origin, err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return treeHead{}, verifyFailed(CheckSTHSignature, "checkpoint: %v", err)
	}
	cp, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil || cp.Origin != origin {
		countError(ctx, ReasonBadResponse)
		return treeHead{}, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("checkpoint: %v", err)}
	}
	ms, err := sunlight.RFC6962SignatureTimestamp(n.Sigs[0])
	if err != nil {
		return treeHead{}, verifyFailed(CheckSTHSignature, "checkpoint signature: %v", err)
	}
	return treeHead{Size: cp.N, Root: cp.Hash, Time: time.UnixMilli(ms).UTC()}, nil
}

func (l *staticLog) hashReader(ctx context.Context, c *sunlight.Client, tree treeHead) tlog.HashReader {
	return torchwood.TileHashReaderWithContext(ctx, tlog.Tree{N: tree.Size, Hash: tree.Root}, c.TileReader())
}

func (l *staticLog) consistent(ctx context.Context, old, new treeHead) error {
	c, err := l.client()
	if err != nil {
		return err
	}
	defer l.clients.Put(c)
	p, err := tlog.ProveTree(new.Size, old.Size, l.hashReader(ctx, c, new))
	if err != nil {
		if ctx.Err() != nil || ReasonOf(err) != "" {
			return classify(ctx, err)
		}
		return verifyFailed(CheckConsistency, "hash tiles of tree %d: %v", new.Size, err)
	}
	if err := tlog.CheckTree(p, new.Size, new.Root, old.Size, old.Root); err != nil {
		return verifyFailed(CheckConsistency, "tree %d (%x) is not a prefix of tree %d (%x): %v", old.Size, old.Root, new.Size, new.Root, err)
	}
	return nil
}

func (l *staticLog) verifiesLeaves() bool { return true }

func (l *staticLog) close() { l.tr.close() }

func (l *staticLog) rangeAt(context.Context, treeHead, int64) ([][32]byte, error) { return nil, nil }

func (l *staticLog) provePrefix(context.Context, int64, [32]byte, treeHead) error { return nil }

func (l *staticLog) fetch(ctx context.Context, tree treeHead, start, end int64) ([]rawEntry, func(), error) {
	c, err := l.client()
	if err != nil {
		return nil, nil, err
	}
	defer l.clients.Put(c)
	end = min(end, tree.Size)
	first := start / StaticTileEntries
	var tiles []tlog.Tile
	for n := first; n*StaticTileEntries < end; n++ {
		w := min(StaticTileEntries, tree.Size-n*StaticTileEntries)
		tiles = append(tiles, tlog.Tile{H: tileHeight, L: -1, N: n, W: int(w)})
	}
	data, release, err := l.readDataTiles(ctx, tiles)
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			release()
		}
	}()
	base := first * StaticTileEntries
	last := min(tree.Size, (first+int64(len(tiles)))*StaticTileEntries)
	indexes := make([]int64, 0, last-base)
	for i := base; i < last; i++ {
		indexes = append(indexes, tlog.StoredHashIndex(0, i))
	}
	// The hash tiles are proven against the verified checkpoint as they are read.
	hashes, err := l.hashReader(ctx, c, tree).ReadHashes(indexes)
	if err != nil {
		if ctx.Err() != nil || ReasonOf(err) != "" {
			return nil, nil, classify(ctx, err)
		}
		return nil, nil, verifyFailed(CheckLeafHash, "hash tiles for [%d, %d): %v", base, last, err)
	}
	out := make([]rawEntry, 0, end-start)
	var mismatch int64 = -1
	for ti, t := range tiles {
		n, err := decodeDataTile(data[ti], t.N*StaticTileEntries, func(e rawEntry, rh [32]byte) {
			if e.index-base >= int64(len(hashes)) || rh != hashes[e.index-base] {
				if mismatch < 0 {
					mismatch = e.index
				}
				return
			}
			if e.index >= start && e.index < end {
				out = append(out, e)
			}
		})
		if err != nil || n != t.W {
			return nil, nil, verifyFailed(CheckLeafHash, "data tile %d: %d entries of %d: %v", t.N, n, t.W, err)
		}
	}
	if mismatch >= 0 {
		return nil, nil, verifyFailed(CheckLeafHash, "entry %d does not hash to the verified tree", mismatch)
	}
	ok = true
	return out, release, nil
}

// readDataTiles fetches data tiles concurrently, into recycled buffers
// (released by the caller once the entries are processed). Unverified: the
// caller checks every entry against the hash tiles.
func (l *staticLog) readDataTiles(ctx context.Context, tiles []tlog.Tile) ([][]byte, func(), error) {
	data := make([][]byte, len(tiles))
	releases := make([]func(), len(tiles))
	errs := make([]error, len(tiles))
	var wg sync.WaitGroup
	for i, t := range tiles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, release, err := l.tr.getPooled(ctx, l.prefix+"/"+sunlight.TilePath(t), "application/octet-stream")
			if err != nil {
				errs[i] = err
				return
			}
			data[i], releases[i] = resp.body, release
		}()
	}
	wg.Wait()
	release := func() {
		for _, r := range releases {
			if r != nil {
				r()
			}
		}
	}
	for _, err := range errs {
		if err != nil {
			release()
			return nil, nil, classify(ctx, err)
		}
	}
	return data, release, nil
}

// decodeDataTile reads the entries of a data tile whose first entry is
// start, giving each with its record hash (the RFC 6962 leaf hash the hash
// tiles hold) to yield. The MerkleTreeLeaf is version and leaf type (two
// zero bytes) followed by the TimestampedEntry, which is how a TileLeaf
// begins: the hash is taken over the tile's own bytes, in the same pass.
func decodeDataTile(tile []byte, start int64, yield func(rawEntry, [32]byte)) (int, error) {
	h := sha256.New()
	var sum [32]byte
	zeros := []byte{0, 0, 0} // leaf hash prefix, version, leaf type
	in := cryptobyte.String(tile)
	n := 0
	for !in.Empty() {
		entry := []byte(in)
		var timestamp uint64
		var entryType uint16
		var data, exts, pre, chain cryptobyte.String
		if !in.ReadUint64(&timestamp) || !in.ReadUint16(&entryType) {
			return n, fmt.Errorf("data tile: entry %d: truncated", start+int64(n))
		}
		precert := entryType == 1
		switch {
		case entryType == 0:
			if !in.ReadUint24LengthPrefixed(&data) {
				return n, fmt.Errorf("data tile: entry %d: truncated certificate", start+int64(n))
			}
		case precert:
			if !in.Skip(32) || !in.ReadUint24LengthPrefixed(&data) {
				return n, fmt.Errorf("data tile: entry %d: truncated precertificate", start+int64(n))
			}
		default:
			return n, fmt.Errorf("data tile: entry %d: entry type %d", start+int64(n), entryType)
		}
		if !in.ReadUint16LengthPrefixed(&exts) {
			return n, fmt.Errorf("data tile: entry %d: truncated extensions", start+int64(n))
		}
		te := entry[:len(entry)-len(in)]
		if precert && !in.ReadUint24LengthPrefixed(&pre) || !in.ReadUint16LengthPrefixed(&chain) {
			return n, fmt.Errorf("data tile: entry %d: truncated chain", start+int64(n))
		}
		h.Reset()
		h.Write(zeros)
		h.Write(te)
		h.Sum(sum[:0])
		r := rawEntry{index: start + int64(n), leafHash: sum, precert: precert, der: data}
		if precert {
			r.pre = pre
		}
		yield(r, sum)
		n++
	}
	return n, nil
}
