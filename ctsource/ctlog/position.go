package ctlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// treeHead is a tree head (STH or checkpoint) whose signature was verified.
type treeHead struct {
	Size int64
	Root [32]byte
	Time time.Time
}

// emptyTreeRoot is the root of the tree of size 0 (RFC 6962 §2.1).
var emptyTreeRoot = [32]byte(rfc6962.DefaultHasher.EmptyRoot())

// same reports the same tree head (times compared as instants).
func (a treeHead) same(b treeHead) bool {
	return a.Size == b.Size && a.Root == b.Root && a.Time.Equal(b.Time)
}

// logPosition is what the state file keeps for a log, committed together
// with the issuances found up to it.
type logPosition struct {
	// Size is how many entries were processed: [0, Size).
	Size int64
	// Head is the newest verified tree head; every later one must be
	// consistent with it.
	Head treeHead
	// Range is the compact range of the leaf hashes of [0, Size): enough to
	// keep computing the root of what was processed (RFC 6962 logs).
	Range [][32]byte
}

const positionVersion = 1

func (p *logPosition) encode() []byte {
	b := []byte{positionVersion}
	b = binary.AppendUvarint(b, uint64(p.Size))
	b = binary.AppendUvarint(b, uint64(p.Head.Size))
	b = append(b, p.Head.Root[:]...)
	b = binary.AppendVarint(b, p.Head.Time.UnixMilli())
	b = binary.AppendUvarint(b, uint64(len(p.Range)))
	for _, h := range p.Range {
		b = append(b, h[:]...)
	}
	return b
}

func decodePosition(b []byte) (*logPosition, error) {
	d := b
	bad := errors.New("corrupt log position")
	if len(d) < 1 || d[0] != positionVersion {
		return nil, fmt.Errorf("log position version %v: %w", d[:min(1, len(d))], bad)
	}
	d = d[1:]
	uv := func() uint64 {
		v, n := binary.Uvarint(d)
		if n <= 0 {
			d = nil
			return 0
		}
		d = d[n:]
		return v
	}
	p := &logPosition{}
	p.Size = int64(uv())
	p.Head.Size = int64(uv())
	if len(d) < 32 {
		return nil, bad
	}
	copy(p.Head.Root[:], d)
	d = d[32:]
	ms, n := binary.Varint(d)
	if n <= 0 {
		return nil, bad
	}
	d = d[n:]
	p.Head.Time = time.UnixMilli(ms).UTC()
	count := uv()
	if d == nil || uint64(len(d)) != count*32 {
		return nil, bad
	}
	p.Range = make([][32]byte, count)
	for i := range p.Range {
		copy(p.Range[i][:], d[32*i:])
	}
	return p, nil
}

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// compactRange rebuilds the range of [0, size) from its hashes.
func compactRange(size int64, hashes [][32]byte) (*compact.Range, error) {
	hs := make([][]byte, len(hashes))
	for i := range hashes {
		hs[i] = hashes[i][:]
	}
	return rangeFactory.NewRange(0, uint64(size), hs)
}

func rangeHashes(r *compact.Range) [][32]byte {
	hs := r.Hashes()
	out := make([][32]byte, len(hs))
	for i, h := range hs {
		copy(out[i][:], h)
	}
	return out
}

// rangeRoot is the RFC 6962 root of the leaves the range covers.
func rangeRoot(r *compact.Range) ([32]byte, error) {
	var root [32]byte
	if r.End() == 0 {
		copy(root[:], rfc6962.DefaultHasher.EmptyRoot())
		return root, nil
	}
	h, err := r.GetRootHash(nil)
	if err != nil {
		return root, err
	}
	copy(root[:], h)
	return root, nil
}
