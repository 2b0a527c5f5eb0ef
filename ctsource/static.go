package ctsource

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"filippo.io/sunlight"
	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// StaticTileEntries is how many entries a data tile holds; torchwood reads
// up to 50 tiles per round, so batches are best a multiple of it.
const StaticTileEntries = 256

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
	return newCTLog(name, l, opts), nil
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

func (l *staticLog) rangeAt(context.Context, treeHead, int64) ([][32]byte, error) { return nil, nil }

func (l *staticLog) provePrefix(context.Context, int64, [32]byte, treeHead) error { return nil }

func (l *staticLog) fetch(ctx context.Context, tree treeHead, start, end int64) ([]rawEntry, error) {
	c, err := l.client()
	if err != nil {
		return nil, err
	}
	defer l.clients.Put(c)
	var out []rawEntry
	for i, e := range c.Entries(ctx, tlog.Tree{N: tree.Size, Hash: tree.Root}, start) {
		if i >= end {
			break
		}
		r := rawEntry{index: i, precert: e.IsPrecert, der: e.Certificate}
		if e.IsPrecert {
			pre := e.PreCertificate
			r.precertificate = func() ([]byte, error) { return pre, nil }
		}
		out = append(out, r)
	}
	if err := c.Err(); err != nil {
		if ctx.Err() != nil || ReasonOf(err) != "" {
			return nil, classify(ctx, err)
		}
		if strings.Contains(err.Error(), "hash mismatch") {
			return nil, verifyFailed(CheckLeafHash, "data tile at %d: %v", start, err)
		}
		countError(ctx, ReasonBadResponse)
		return nil, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("entries from %d: %w", start, err)}
	}
	return out, nil
}

// decodeDataTile reads the entries of a data tile whose first entry is
// start, giving each with its record hash (what the hash tiles hold) to
// yield. It is what sunlight's client does for each entry: read the tile
// leaf to hash it, then read it again to yield it.
func decodeDataTile(tile []byte, start int64, yield func(rawEntry, [32]byte)) (int, error) {
	n := 0
	for len(tile) > 0 {
		e, rest, err := sunlight.ReadTileLeaf(tile)
		if err != nil {
			return n, err
		}
		rh := tlog.RecordHash(e.MerkleTreeLeaf())
		e, _, err = sunlight.ReadTileLeaf(tile)
		if err != nil {
			return n, err
		}
		tile = rest
		r := rawEntry{index: start + int64(n), precert: e.IsPrecert, der: e.Certificate}
		if e.IsPrecert {
			pre := e.PreCertificate
			r.precertificate = func() ([]byte, error) { return pre, nil }
		}
		yield(r, rh)
		n++
	}
	return n, nil
}
