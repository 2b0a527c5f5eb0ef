package staticlogfake

import (
	"crypto/sha256"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Tree is an RFC 6962 Merkle tree with every level kept: it answers
// tlog's stored-hash reads (tlog.TreeHash, ProveTree and ProveRecord follow
// RFC 6962 §2.1) and is sliced into static-ct-api hash tiles without
// hashing anything again.
//
// levels[l] holds the n>>l hashes of the complete subtrees of 2^l leaves,
// 32 bytes each, contiguous: a tile is a slice of one level.
type Tree struct {
	n      int64
	levels [][]byte
}

// NewTree builds the tree over leaf hashes (32 bytes each), which it keeps.
// Building level by level keeps each level contiguous, which matters for
// trees of millions of leaves.
func NewTree(leafHashes []byte) *Tree {
	t := &Tree{n: int64(len(leafHashes) / 32), levels: [][]byte{leafHashes[:len(leafHashes)/32*32]}}
	var buf [65]byte
	buf[0] = 0x01
	for prev := t.levels[0]; len(prev) >= 64; {
		next := make([]byte, len(prev)/64*32)
		for i := 0; i < len(next); i += 32 {
			copy(buf[1:], prev[2*i:2*i+64])
			h := sha256.Sum256(buf[:])
			copy(next[i:], h[:])
		}
		t.levels = append(t.levels, next)
		prev = next
	}
	return t
}

// Append adds a leaf hash, and the subtrees it completes.
func (t *Tree) Append(leafHash tlog.Hash) {
	t.levels[0] = append(t.levels[0], leafHash[:]...)
	t.n++
	for l := 0; len(t.levels[l])%64 == 0; l++ {
		if l+1 == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		pair := t.levels[l][len(t.levels[l])-64:]
		h := tlog.NodeHash(tlog.Hash(pair[:32]), tlog.Hash(pair[32:]))
		t.levels[l+1] = append(t.levels[l+1], h[:]...)
	}
}

// Size is the number of leaves.
func (t *Tree) Size() int64 { return t.n }

// ReadHashes implements tlog.HashReader over the stored hashes.
func (t *Tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		level, n := tlog.SplitStoredHashIndex(x)
		if level >= len(t.levels) || (n+1)*32 > int64(len(t.levels[level])) {
			return nil, fmt.Errorf("no stored hash %d (level %d, %d)", x, level, n)
		}
		copy(out[i][:], t.levels[level][n*32:])
	}
	return out, nil
}

// Root is the tree hash of the first size leaves.
func (t *Tree) Root(size int64) (tlog.Hash, error) {
	return tlog.TreeHash(size, t)
}

// HashTile returns the data of hash tile tile: W hashes of level H·L, or
// false when the tree does not have them all. The slice is the tree's own:
// callers must not modify it.
func (t *Tree) HashTile(tile tlog.Tile) ([]byte, bool) {
	level := tile.L * tile.H
	if tile.L < 0 || level >= len(t.levels) || tile.W <= 0 || tile.W > 1<<tile.H {
		return nil, false
	}
	lo := (tile.N << tile.H) * 32
	hi := lo + int64(tile.W)*32
	if lo < 0 || hi > int64(len(t.levels[level])) {
		return nil, false
	}
	return t.levels[level][lo:hi:hi], true
}
