package ctlog

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/sunlight"
	"filippo.io/torchwood"
	ct "github.com/google/certificate-transparency-go"
	ctls "github.com/google/certificate-transparency-go/tls"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/ct-exporter/ct_exporter/ctsource"
)

// StaticTileEntries is how many entries a data tile holds: batches are best
// a multiple of it.
const (
	StaticTileEntries = 256
	tileHeight        = 8
)

// staticLog speaks c2sp.org/static-ct-api with filippo.io/sunlight's and
// torchwood's verifiers, over the transport. Every entry fetch returns was
// checked against the verified checkpoint through the hash tiles, partial
// tiles included.
type staticLog struct {
	prefix string
	pub    crypto.PublicKey
	tr     *ctsource.Transport
	tiles  *tileReader
	errs   ctsource.ErrorCounter
}

// NewStatic returns a source following the static-ct-api log whose
// monitoring prefix is url, with checkpoints signed by publicKey (DER
// SubjectPublicKeyInfo).
func NewStatic(name, url string, publicKey []byte, opts Options) (*Log, error) {
	pub, err := x509.ParsePKIXPublicKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("ctlog %s: public_key: %w", name, err)
	}
	l := &staticLog{
		prefix: strings.TrimSuffix(url, "/"),
		pub:    pub,
		tr:     ctsource.NewTransport(opts.Timeout, gapFor(opts.RequestsPerSecond), opts.Interval, maxLogResponse, opts.CountError),
		errs:   opts.CountError,
	}
	l.tiles = &tileReader{prefix: l.prefix, tr: l.tr}
	opts.BatchSize = wholeTiles(opts.BatchSize)
	return newLog(name, l, opts), nil
}

// wholeTiles rounds a batch size up to whole tiles: a batch of part of a
// tile would download the tile again for the next batch.
func wholeTiles(batch int) int {
	if batch <= 0 {
		return batch
	}
	return (batch + StaticTileEntries - 1) / StaticTileEntries * StaticTileEntries
}

// tileReader is the torchwood.TileReader the verifiers read the checkpoint
// and hash tiles through: straight through the transport, whose retries
// are the only ones. (sunlight's own client retries every failed request
// four more times, pausing 1, 5, 25 and 125 s, each try with the
// transport's retries: a log failing one tile stalled a poll for 156 s and
// counted the error 20 times.)
type tileReader struct {
	prefix string
	tr     *ctsource.Transport
}

func (r *tileReader) ReadEndpoint(ctx context.Context, path string) ([]byte, error) {
	resp, err := r.tr.Get(ctx, r.prefix+"/"+path, "*/*")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ReadTiles fetches the tiles concurrently; the first failure is returned.
func (r *tileReader) ReadTiles(ctx context.Context, tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	errs := make([]error, len(tiles))
	var wg sync.WaitGroup
	for i, t := range tiles {
		wg.Go(func() { data[i], errs[i] = r.ReadEndpoint(ctx, sunlight.TilePath(t)) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return data, nil
}

// SaveTiles keeps nothing: each poll reads the few hash tiles it needs.
func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

func (l *staticLog) head(ctx context.Context) (treeHead, error) {
	signed, err := l.tiles.ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		return treeHead{}, classify(ctx, l.errs, err)
	}
	head, err := openCheckpoint(signed, l.pub)
	if ctsource.ReasonOf(err) != "" {
		l.errs.Count(ctsource.ReasonOf(err))
	}
	return head, err
}

// openCheckpoint verifies a signed checkpoint with the log's key (the note
// named after the checkpoint's origin line) and returns its tree head.
func openCheckpoint(signed []byte, pub crypto.PublicKey) (treeHead, error) {
	origin, _, _ := strings.Cut(string(signed), "\n")
	v, err := sunlight.NewRFC6962Verifier(origin, pub)
	if err != nil {
		return treeHead{}, verifyFailed(CheckSTHSignature, "checkpoint origin %q: %v", origin, err)
	}
	n, err := note.Open(signed, note.VerifierList(hugeTreeVerifier{v, pub}))
	if err != nil {
		return treeHead{}, verifyFailed(CheckSTHSignature, "checkpoint: %v", err)
	}
	if size, ok := hugeTreeSize(n.Text); ok {
		return treeHead{}, verifyFailed(CheckTreeSize, "a correctly signed checkpoint of tree size %d, beyond 2^63-1: no log holds that many entries", size)
	}
	cp, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil || cp.Origin != origin {
		return treeHead{}, &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("checkpoint: %v", err)}
	}
	ms, err := sunlight.RFC6962SignatureTimestamp(n.Sigs[0])
	if err != nil {
		return treeHead{}, verifyFailed(CheckSTHSignature, "checkpoint signature: %v", err)
	}
	return treeHead{Size: cp.N, Root: cp.Hash, Time: time.UnixMilli(ms).UTC()}, nil
}

// hugeTreeVerifier is sunlight's RFC 6962 note verifier, and also accepts
// a checkpoint of a tree size of 2^63 or more correctly signed by the key,
// which sunlight's refuses as it refuses a bad signature: such a size is a
// log misbehaving, to be told apart from a forged note (CheckTreeSize, not
// CheckSTHSignature).
type hugeTreeVerifier struct {
	note.Verifier
	pub crypto.PublicKey
}

func (v hugeTreeVerifier) Verify(msg, sig []byte) bool {
	if v.Verifier.Verify(msg, sig) {
		return true
	}
	size, ok := hugeTreeSize(string(msg))
	if !ok {
		return false
	}
	lines := strings.Split(string(msg), "\n")
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != sha256.Size || lines[0] != v.Name() {
		return false
	}
	// An RFC6962NoteSignature: the timestamp, then the TreeHeadSignature.
	in := cryptobyte.String(sig)
	var ts uint64
	var hashAlg, sigAlg uint8
	var signature cryptobyte.String
	if !in.ReadUint64(&ts) || !in.ReadUint8(&hashAlg) || !in.ReadUint8(&sigAlg) ||
		!in.ReadUint16LengthPrefixed(&signature) || !in.Empty() || hashAlg != uint8(ctls.SHA256) {
		return false
	}
	input, err := ct.SerializeSTHSignatureInput(ct.SignedTreeHead{
		Version: ct.V1, TreeSize: size, Timestamp: ts, SHA256RootHash: ct.SHA256Hash(root),
	})
	if err != nil {
		return false
	}
	ds := ctls.DigitallySigned{
		Algorithm: ctls.SignatureAndHashAlgorithm{Hash: ctls.HashAlgorithm(hashAlg), Signature: ctls.SignatureAlgorithm(sigAlg)},
		Signature: signature,
	}
	return ctls.VerifySignature(v.pub, input, ds) == nil
}

// hugeTreeSize returns the size of a checkpoint text (origin, size, root
// hash, no extension lines) whose size is 2^63 or more, which
// torchwood.ParseCheckpoint and tlog.Tree cannot hold.
func hugeTreeSize(text string) (uint64, bool) {
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return 0, false
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || size <= math.MaxInt64 || strconv.FormatUint(size, 10) != lines[1] {
		return 0, false
	}
	return size, true
}

func (l *staticLog) hashReader(ctx context.Context, tree treeHead) tlog.HashReader {
	return torchwood.TileHashReaderWithContext(ctx, tlog.Tree{N: tree.Size, Hash: tree.Root}, l.tiles)
}

func (l *staticLog) consistent(ctx context.Context, old, new treeHead) error {
	p, err := tlog.ProveTree(new.Size, old.Size, l.hashReader(ctx, new))
	if err != nil {
		if ctx.Err() != nil || ctsource.ReasonOf(err) != "" {
			return classify(ctx, l.errs, err)
		}
		return verifyFailed(CheckConsistency, "hash tiles of tree %d: %v", new.Size, err)
	}
	if err := tlog.CheckTree(p, new.Size, new.Root, old.Size, old.Root); err != nil {
		return verifyFailed(CheckConsistency, "tree %d (%x) is not a prefix of tree %d (%x): %v", old.Size, old.Root, new.Size, new.Root, err)
	}
	return nil
}

func (l *staticLog) verifiesLeaves() bool { return true }

func (l *staticLog) close() { l.tr.Close() }

func (l *staticLog) rangeAt(context.Context, treeHead, int64) ([][32]byte, error) { return nil, nil }

func (l *staticLog) provePrefix(context.Context, int64, [32]byte, treeHead) error { return nil }

func (l *staticLog) fetch(ctx context.Context, tree treeHead, start, end int64) ([]rawEntry, func(), error) {
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
	hashes, err := l.hashReader(ctx, tree).ReadHashes(indexes)
	if err != nil {
		if ctx.Err() != nil || ctsource.ReasonOf(err) != "" {
			return nil, nil, classify(ctx, l.errs, err)
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
			resp, release, err := l.tr.GetPooled(ctx, l.prefix+"/"+sunlight.TilePath(t), "application/octet-stream")
			if err != nil {
				errs[i] = err
				return
			}
			data[i], releases[i] = resp.Body, release
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
			return nil, nil, classify(ctx, l.errs, err)
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
