package ctlog

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	ct "github.com/google/certificate-transparency-go"
	"github.com/google/certificate-transparency-go/client"
	"github.com/google/certificate-transparency-go/jsonclient"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/state"
)

// maxLogResponse caps one response from a log: a get-entries answer of
// 1000 large entries is a few MB.
const maxLogResponse = 64 << 20

// rfc6962Log speaks RFC 6962 through certificate-transparency-go's client.
// It checks leaves itself: every leaf hash is appended to a compact range
// whose root must match a verified STH (or be proven its prefix) before the
// position moves.
type rfc6962Log struct {
	client   *client.LogClient
	verifier *ct.SignatureVerifier
	tr       *ctsource.Transport
	errs     ctsource.ErrorCounter
}

// NewRFC6962 returns a source following an RFC 6962 log at url, whose
// STHs must verify with publicKey (DER SubjectPublicKeyInfo).
func NewRFC6962(name, url string, publicKey []byte, opts Options) (*Log, error) {
	pub, err := x509.ParsePKIXPublicKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("ctlog %s: public_key: %w", name, err)
	}
	verifier, err := ct.NewSignatureVerifier(pub)
	if err != nil {
		return nil, fmt.Errorf("ctlog %s: public_key: %w", name, err)
	}
	tr := ctsource.NewTransport(opts.Timeout, gapFor(opts.RequestsPerSecond), opts.Interval, maxLogResponse, opts.CountError)
	// No PublicKeyDER here: the signature is checked below, so that a bad
	// signature is told apart from a failed request.
	c, err := client.New(url, &http.Client{Transport: tr}, jsonclient.Options{})
	if err != nil {
		return nil, fmt.Errorf("ctlog %s: %w", name, err)
	}
	return newLog(name, &rfc6962Log{client: c, verifier: verifier, tr: tr, errs: opts.CountError}, opts), nil
}

func gapFor(rps float64) time.Duration {
	if rps <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / rps)
}

func (l *rfc6962Log) head(ctx context.Context) (treeHead, error) {
	sth, err := l.client.GetSTH(ctx)
	if err != nil {
		return treeHead{}, classify(ctx, l.errs, err)
	}
	if err := l.verifier.VerifySTHSignature(*sth); err != nil {
		return treeHead{}, verifyFailed(CheckSTHSignature, "STH of size %d: %v", sth.TreeSize, err)
	}
	if sth.TreeSize > math.MaxInt64 {
		// Signed by the log's key, so its misbehaviour, not a forgery; as
		// an int64 (tree sizes, positions, the gauge) it would be negative.
		return treeHead{}, verifyFailed(CheckTreeSize, "a correctly signed STH of tree size %d, beyond 2^63-1: no log holds that many entries", sth.TreeSize)
	}
	return treeHead{Size: int64(sth.TreeSize), Root: sth.SHA256RootHash, Time: time.UnixMilli(int64(sth.Timestamp)).UTC()}, nil
}

func (l *rfc6962Log) consistent(ctx context.Context, old, new treeHead) error {
	p, err := l.client.GetSTHConsistency(ctx, uint64(old.Size), uint64(new.Size))
	if err != nil {
		return classify(ctx, l.errs, err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(old.Size), uint64(new.Size), p, old.Root[:], new.Root[:]); err != nil {
		return verifyFailed(CheckConsistency, "tree %d (%x) is not a prefix of tree %d (%x): %v", old.Size, old.Root, new.Size, new.Root, err)
	}
	return nil
}

func (l *rfc6962Log) provePrefix(ctx context.Context, k int64, root [32]byte, tree treeHead) error {
	if k == 0 {
		return nil
	}
	p, err := l.client.GetSTHConsistency(ctx, uint64(k), uint64(tree.Size))
	if err != nil {
		return classify(ctx, l.errs, err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(k), uint64(tree.Size), p, root[:], tree.Root[:]); err != nil {
		return verifyFailed(CheckLeafHash, "the first %d entries hash to %x, which is not a prefix of the verified tree of size %d: %v", k, root, tree.Size, err)
	}
	return nil
}

func (l *rfc6962Log) verifiesLeaves() bool { return false }

func (l *rfc6962Log) close() { l.tr.Close() }

// rangeAt derives the compact range of [0, k) from the inclusion proof of
// leaf k-1: the left siblings on its path are exactly the perfect subtrees
// that cover [0, k-1).
func (l *rfc6962Log) rangeAt(ctx context.Context, tree treeHead, k int64) ([][32]byte, error) {
	if k == 0 {
		return nil, nil
	}
	resp, err := l.client.GetEntryAndProof(ctx, uint64(k-1), uint64(tree.Size))
	if err != nil {
		return nil, classify(ctx, l.errs, err)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(resp.LeafInput)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(k-1), uint64(tree.Size), leaf, resp.AuditPath, tree.Root[:]); err != nil {
		return nil, verifyFailed(CheckInclusion, "entry %d is not in the verified tree of size %d: %v", k-1, tree.Size, err)
	}
	shape := pathShape(uint64(k-1), uint64(tree.Size), 0)
	if len(shape) != len(resp.AuditPath) {
		return nil, verifyFailed(CheckInclusion, "audit path of %d hashes, want %d", len(resp.AuditPath), len(shape))
	}
	type node struct {
		begin uint64
		hash  []byte
	}
	var left []node
	for i, side := range shape {
		if side.left {
			left = append(left, node{side.begin, resp.AuditPath[i]})
		}
	}
	slices.SortFunc(left, func(a, b node) int { return cmp.Compare(a.begin, b.begin) })
	hs := make([][]byte, len(left))
	for i := range left {
		hs[i] = left[i].hash
	}
	r, err := rangeFactory.NewRange(0, uint64(k-1), hs)
	if err != nil {
		return nil, verifyFailed(CheckInclusion, "audit path of entry %d: %v", k-1, err)
	}
	if err := r.Append(leaf, nil); err != nil {
		return nil, err
	}
	return rangeHashes(r), nil
}

type pathSide struct {
	left  bool
	begin uint64 // first leaf a left sibling covers
}

// pathShape tells, for each hash of the audit path of leaf m in a tree of n
// leaves (bottom up), whether it is a left sibling and where it begins,
// following PATH(m, D[n]) of RFC 6962 §2.1.1.
func pathShape(m, n, offset uint64) []pathSide {
	if n <= 1 {
		return nil
	}
	k := uint64(1) << (bits.Len64(n-1) - 1) // the largest power of two < n
	if m < k {
		return append(pathShape(m, k, offset), pathSide{})
	}
	return append(pathShape(m-k, n-k, offset+k), pathSide{left: true, begin: offset})
}

var arenas sync.Pool

func (l *rfc6962Log) fetch(ctx context.Context, tree treeHead, start, end int64) ([]rawEntry, func(), error) {
	// get-entries is the hot path: its answer is decoded here rather than by
	// the client's reflection-based JSON and TLS decoding, which cost most of
	// the CPU of a catch-up; and its buffers are recycled.
	u := fmt.Sprintf("%s/ct/v1/get-entries?start=%d&end=%d", strings.TrimSuffix(l.client.BaseURI(), "/"), start, end-1)
	resp, releaseBody, err := l.tr.GetPooled(ctx, u, "application/json")
	if err != nil {
		return nil, nil, err
	}
	arena, _ := arenas.Get().([]byte)
	entries, arena, err := decodeGetEntries(resp.Body, start, arena)
	release := func() {
		releaseBody()
		//lint:ignore SA6002 a slice header is small next to the arena it recycles
		arenas.Put(arena)
	}
	if err != nil {
		release()
		l.errs.Count(ctsource.ReasonBadResponse)
		return nil, nil, &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("get-entries [%d, %d]: %w", start, end-1, err)}
	}
	if len(entries) > int(end-start) {
		release()
		l.errs.Count(ctsource.ReasonBadResponse)
		return nil, nil, &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("get-entries [%d, %d]: %d entries", start, end-1, len(entries))}
	}
	return entries, release, nil
}

// classify turns a client error into an *Error with a reason, keeping the
// transport's when there is one (the transport counted it); errs counts
// the others. A lease lost or lapsed (ctsource.WithLease) is no error of
// the log's: it is returned as it is, uncounted.
func classify(ctx context.Context, errs ctsource.ErrorCounter, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if ctsource.ReasonOf(err) != "" || errors.Is(err, state.ErrFenced) {
		return err
	}
	errs.Count(ctsource.ReasonBadResponse)
	return &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: err}
}
