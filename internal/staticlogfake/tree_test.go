package staticlogfake

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/tlog"
)

// TestTree checks the tree built at once and the tree grown leaf by leaf
// against transparency-dev/merkle's roots and tlog's own hash tiles.
func TestTree(t *testing.T) {
	const n = 1100 // a full level-0 tile, partial tiles at levels 0 and 1
	ref := testonly.New(rfc6962.DefaultHasher)
	grown := NewTree(nil)
	var leaves []byte
	for i := range n {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		h := tlog.RecordHash(b[:])
		leaves = append(leaves, h[:]...)
		ref.AppendData(b[:])
		grown.Append(h)
		if got, err := grown.Root(int64(i + 1)); err != nil || got != tlog.Hash(ref.Hash()) {
			t.Fatalf("grown tree of %d: root %x, %v; want %x", i+1, got, err, ref.Hash())
		}
	}
	built := NewTree(leaves)
	for _, size := range []int64{0, 1, 255, 256, 257, 700, n} {
		want := tlog.Hash(ref.HashAt(uint64(size)))
		if size == 0 {
			want = sha256.Sum256(nil)
		}
		if got, err := built.Root(size); err != nil || got != want {
			t.Errorf("built tree: root of %d %x, %v; want %x", size, got, err, want)
		}
	}
	for _, size := range []int64{1, 256, 300, 700, n} {
		for _, tile := range tlog.NewTiles(8, 0, size) {
			want, err := tlog.ReadTileData(tile, built)
			if err != nil {
				t.Fatal(err)
			}
			for name, tr := range map[string]*Tree{"built": built, "grown": grown} {
				if got, ok := tr.HashTile(tile); !ok || !bytes.Equal(got, want) {
					t.Errorf("%s tree: tile %+v differs from tlog's", name, tile)
				}
			}
		}
	}
	if _, ok := built.HashTile(tlog.Tile{H: 8, L: 0, N: 4, W: 77}); ok {
		t.Error("a tile beyond the tree")
	}
}

func TestPublished(t *testing.T) {
	tile := func(l int, n int64, w int) tlog.Tile { return tlog.Tile{H: 8, L: l, N: n, W: w} }
	for _, c := range []struct {
		t     tlog.Tile
		sizes []int64
		want  bool
	}{
		{tile(-1, 0, 256), []int64{256}, true},
		{tile(-1, 0, 256), []int64{255}, false},
		{tile(-1, 0, 255), []int64{255, 256}, true}, // kept from an earlier tree
		{tile(-1, 0, 100), []int64{255, 256}, false},
		{tile(-1, 1, 44), []int64{300}, true},
		{tile(0, 1, 44), []int64{300}, true},
		{tile(1, 0, 1), []int64{300}, true},
		{tile(1, 0, 1), []int64{511}, true},
		{tile(1, 0, 2), []int64{511}, false},
		{tile(2, 0, 1), []int64{300}, false},
		{tile(2, 0, 1), []int64{1 << 16}, true},
		{tile(1, 0, 256), []int64{1<<16 - 1}, false},
		{tile(0, 1000, 256), []int64{256 * 1001}, true}, // tile/0/x001/000
		{tile(-1, 1234, 5), []int64{1234*256 + 5}, true},
		{tile(-1, 1234, 6), []int64{1234*256 + 5}, false},
		{tile(-2, 0, 256), []int64{256}, false},
		{tile(0, 0, 0), []int64{256}, false},
		{tile(0, -1, 256), []int64{256}, false},
	} {
		if got := Published(c.t, c.sizes...); got != c.want {
			t.Errorf("Published(%+v, %v) = %v", c.t, c.sizes, got)
		}
	}
}
