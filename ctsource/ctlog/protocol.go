package ctlog

import (
	"context"
)

// logProtocol is what differs between RFC 6962 and static-ct-api logs.
type logProtocol interface {
	// head fetches the newest tree head and verifies its signature.
	head(ctx context.Context) (treeHead, error)
	// consistent verifies that tree old is a prefix of tree new.
	consistent(ctx context.Context, old, new treeHead) error
	// fetch returns entries of tree from start, at most up to end; it may
	// return fewer, never none without an error. The entries are valid until
	// release is called.
	fetch(ctx context.Context, tree treeHead, start, end int64) (entries []rawEntry, release func(), err error)
	// verifiesLeaves is true when fetch only returns entries it proved to
	// be in tree; otherwise the follower checks the leaf hashes itself.
	verifiesLeaves() bool
	// rangeAt returns the compact range of [0, k) proven against tree.
	rangeAt(ctx context.Context, tree treeHead, k int64) ([][32]byte, error)
	// provePrefix verifies that the tree of size k with root is a prefix of tree.
	provePrefix(ctx context.Context, k int64, root [32]byte, tree treeHead) error
	close()
}
