package main

// The Merkle tree of a log, every level kept: it answers tlog's stored-hash
// reads (for RFC 6962 proofs, computed with tlog.ProveTree and ProveRecord,
// which follow RFC 6962 §2.1) and is sliced into static-ct-api hash tiles.

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// merkle holds the hashes of all complete subtrees: levels[l] has the
// n>>l hashes of the subtrees of 2^l leaves, 32 bytes each, contiguous.
type merkle struct {
	n      int64
	levels [][]byte
}

// newMerkle builds the tree over leaf hashes (32 bytes each).
func newMerkle(leaves []byte) *merkle {
	m := &merkle{n: int64(len(leaves) / 32), levels: [][]byte{leaves}}
	var buf [65]byte
	buf[0] = 0x01
	for prev := leaves; len(prev) >= 64; {
		next := make([]byte, len(prev)/64*32)
		for i := 0; i < len(next); i += 32 {
			copy(buf[1:], prev[2*i:2*i+64])
			h := sha256.Sum256(buf[:])
			copy(next[i:], h[:])
		}
		m.levels = append(m.levels, next)
		prev = next
	}
	return m
}

// ReadHashes implements tlog.HashReader over the stored hashes.
func (m *merkle) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		level, n := tlog.SplitStoredHashIndex(x)
		if level >= len(m.levels) || (n+1)*32 > int64(len(m.levels[level])) {
			return nil, fmt.Errorf("no stored hash %d (level %d, %d)", x, level, n)
		}
		copy(out[i][:], m.levels[level][n*32:])
	}
	return out, nil
}

// root is the tree hash of the first size leaves.
func (m *merkle) root(size int64) ([32]byte, error) {
	h, err := tlog.TreeHash(size, m)
	return h, err
}

// tile returns the data of hash tile t (height 8): hashes of level 8·L,
// or false when the tree does not have them all.
func (m *merkle) tile(t tlog.Tile) ([]byte, bool) {
	level := t.L * t.H
	if t.L < 0 || level >= len(m.levels) || t.W <= 0 || t.W > 1<<t.H {
		return nil, false
	}
	lo := (t.N << t.H) * 32
	hi := lo + int64(t.W)*32
	if lo < 0 || hi > int64(len(m.levels[level])) {
		return nil, false
	}
	return m.levels[level][lo:hi], true
}

func appendU24(dst, p []byte) []byte {
	n := len(p)
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n))
	return append(dst, p...)
}

// appendLeafInput appends the entry's RFC 6962 MerkleTreeLeaf (no extensions).
func (e *Entry) appendLeafInput(dst []byte) []byte {
	dst = append(dst, 0, 0) // v1, timestamped_entry
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Timestamp))
	if e.Precert {
		dst = append(dst, 0, 1)
		dst = append(dst, e.CA.keyHash[:]...)
	} else {
		dst = append(dst, 0, 0)
	}
	dst = appendU24(dst, e.Cert)
	return append(dst, 0, 0)
}

// appendExtraData appends the entry's RFC 6962 extra_data: a
// PrecertChainEntry or a certificate chain.
func (e *Entry) appendExtraData(dst []byte) []byte {
	if e.Precert {
		dst = appendU24(dst, e.PreCert)
	}
	return append(dst, e.CA.chainTLS...)
}
