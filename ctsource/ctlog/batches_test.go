package ctlog

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/state"
)

// tileCounter is a tiled log without content: it serves every entry as
// undecodable and counts how often each tile is downloaded.
type tileCounter struct {
	size  int64
	mu    sync.Mutex
	tiles map[int64]int
}

func (p *tileCounter) head(context.Context) (treeHead, error) {
	return treeHead{Size: p.size, Time: time.Now()}, nil
}

func (p *tileCounter) consistent(context.Context, treeHead, treeHead) error { return nil }

func (p *tileCounter) verifiesLeaves() bool { return true }

func (p *tileCounter) rangeAt(context.Context, treeHead, int64) ([][32]byte, error) {
	return nil, nil
}

func (p *tileCounter) provePrefix(context.Context, int64, [32]byte, treeHead) error { return nil }

func (p *tileCounter) close() {}

// fetch reads [start, end) as a static-ct-api client does: whole tiles.
func (p *tileCounter) fetch(_ context.Context, _ treeHead, start, end int64) ([]rawEntry, func(), error) {
	p.mu.Lock()
	for t := start / StaticTileEntries; t*StaticTileEntries < end; t++ {
		p.tiles[t]++
	}
	p.mu.Unlock()
	var out []rawEntry
	for i := start; i < end; i++ {
		out = append(out, rawEntry{index: i, err: errors.New("no content")})
	}
	return out, func() {}, nil
}

// A catch-up from a position inside a tile downloads each tile once: batches
// end on tile boundaries, whatever the start and the batch size.
func TestCatchUpDownloadsEachTileOnce(t *testing.T) {
	for _, tc := range []struct {
		start string
		batch int
	}{{"1000", 256}, {"1000", 1024}, {"3", 100}, {"beginning", 300}} {
		h := newLogHarness(t)
		p := &tileCounter{size: 2560 + 17, tiles: map[int64]int{}}
		opts := Options{Interval: time.Minute, Timeout: time.Second, Start: tc.start, Workers: 3, BatchSize: wholeTiles(tc.batch)}
		l := newLog("tiles", p, opts)
		if err := l.Poll(context.Background(), h.Env); err != nil {
			t.Fatal(err)
		}
		for tile, n := range p.tiles {
			if n != 1 {
				t.Errorf("start %s, batch %d: tile %d downloaded %d times", tc.start, tc.batch, tile, n)
			}
		}
		if got := h.Counter(state.CounterLogMalformed); got == 0 {
			t.Fatalf("start %s: nothing read", tc.start)
		}
	}
}
