package monitor

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/ctsource/loglist"
	"github.com/ct-exporter/ct_exporter/state"
)

// n replicas with --shard=0/n … n-1/n follow every log exactly once: no log
// is followed twice (duplicate work, duplicate counts) and none is left out
// (a blind spot).
func TestShardSplitsLogsWithoutOverlapOrGap(t *testing.T) {
	// Seeded: the same 200 keys on every run. Only the key's bytes matter to
	// the hash, so they need not be valid keys here.
	rng := mrand.New(mrand.NewPCG(1, 2))
	keys := make([][]byte, 200)
	for i := range keys {
		keys[i] = make([]byte, 91) // the length of a P-256 SubjectPublicKeyInfo
		for j := range keys[i] {
			keys[i][j] = byte(rng.Uint32())
		}
	}
	for n := 1; n <= 5; n++ {
		perShard := make([]int, n)
		for k, key := range keys {
			var followers []int
			for i := 0; i < n; i++ {
				if (Shard{Index: i, Count: n}).Follows(key) {
					followers = append(followers, i)
				}
			}
			if len(followers) != 1 {
				t.Fatalf("n=%d: key %d is followed by shards %v, want exactly one", n, k, followers)
			}
			perShard[followers[0]]++
		}
		// A hash that sent (nearly) everything to one shard would split
		// nothing; with 200 keys each share stays well inside [½, 2] of even.
		for i, c := range perShard {
			if even := len(keys) / n; c < even/2 || c > 2*even {
				t.Errorf("n=%d: shard %d follows %d of %d logs: %v", n, i, c, len(keys), perShard)
			}
		}
	}
	// The zero Shard (no --shard) follows everything.
	for _, key := range keys {
		if !(Shard{}).Follows(key) {
			t.Fatal("the zero Shard does not follow every log")
		}
	}
}

// A log's shard is a pinned function of its key: SHA-256 of the DER
// SubjectPublicKeyInfo (the log id), first 8 bytes big-endian, mod n.
// Replicas of different versions must agree, so the values are golden:
// computed with sha256sum and bc as docs/ha.md shows, not with this code.
func TestShardAssignmentIsStable(t *testing.T) {
	golden := []struct {
		key    string      // base64 DER, as public_key and log lists give it
		shards map[int]int // n -> shard
	}{
		// sha256 begins af1212f3bc15d000
		{"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEM9C9NN+nX8e0xVXkZd2SfVhVQruXihIxZWr7hmQO3TOxhQmTq9inY96epUBg0KCKjW/pAooyRF6D/HqQAlZ36w==",
			map[int]int{1: 0, 2: 0, 3: 1, 4: 0, 5: 1, 10: 6, 12: 4}},
		// sha256 begins 30e3a7806be696f5
		{"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEng2iQvGUeBsjZdRijqTldp76ig9FRDX71Q9h0TBBxwkBMlT6hKr2d3CHO08ZJWL4ijDIjxTgj/XmpsM/zQxWjw==",
			map[int]int{1: 0, 2: 1, 3: 0, 4: 1, 5: 2, 10: 7, 12: 9}},
	}
	for _, g := range golden {
		der, err := base64.StdEncoding.DecodeString(g.key)
		if err != nil {
			t.Fatal(err)
		}
		for n, want := range g.shards {
			for i := 0; i < n; i++ {
				if got := (Shard{Index: i, Count: n}).Follows(der); got != (i == want) {
					t.Errorf("key %.20s…: --shard=%d/%d follows it: %v, want %v (its shard is %d)", g.key, i, n, got, i == want, want)
				}
			}
		}
	}
}

// Monitors sharded three ways over the same configuration split the
// configured ctlog sources and the logs a log list names between them, while
// each runs the crt.sh search and the log list itself.
func TestShardedMonitorsSplitLogs(t *testing.T) {
	const n = 3
	// Two configured and two listed logs per shard, so that every monitor
	// has some of each to show.
	var configured, listed [][]byte
	perShard := map[int]int{}
	for len(configured)+len(listed) < 4*n {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		s := shardOf(der, n)
		switch perShard[s] {
		case 0, 1:
			configured = append(configured, der)
		case 2, 3:
			listed = append(listed, der)
		default:
			continue
		}
		perShard[s]++
	}

	dir := t.TempDir()
	var entries []string
	for i, der := range listed {
		entries = append(entries, fmt.Sprintf(`{"description": "Listed %d", "log_id": "%s", "key": "%s", "url": "http://127.0.0.1:1/", "mmd": 86400, "state": {"usable": {"timestamp": "2026-01-01T00:00:00Z"}}}`,
			i, base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(der)))
	}
	list := filepath.Join(dir, "list.json")
	if err := os.WriteFile(list, []byte(`{"version": "1", "operators": [{"name": "T", "email": ["t@example.com"], "logs": [`+strings.Join(entries, ",")+`], "tiled_logs": []}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := "watches: [{domain: example.com}]\nsources:\n  - {name: crtsh, type: crtsh, url: 'http://127.0.0.1:1/'}\n" +
		fmt.Sprintf("  - {name: list, type: loglist, url: %q}\n", list)
	for i, der := range configured {
		yaml += fmt.Sprintf("  - {name: log%d, type: ctlog, url: 'http://127.0.0.1:1/', public_key: %s}\n", i, base64.StdEncoding.EncodeToString(der))
	}

	monitors := make([]*Monitor, n)
	for i := range monitors {
		store, err := state.Open(filepath.Join(dir, fmt.Sprintf("s%d.state", i)), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		m := New(store, promslog.NewNopLogger(), Shard{Index: i, Count: n})
		m.Start()
		defer m.Stop()
		if err := m.Apply(parse(t, yaml)); err != nil {
			t.Fatal(err)
		}
		monitors[i] = m
	}
	followedBy := func() map[string][]int {
		out := map[string][]int{}
		for i, m := range monitors {
			for _, l := range m.Logs() {
				out[l.Log] = append(out[l.Log], i)
			}
		}
		return out
	}
	// A log list's logs are applied all at once: a monitor that follows
	// one of its listed logs has applied the whole list.
	eventually(t, "every monitor following its listed logs", func() bool {
		by := followedBy()
		for i := range monitors {
			found := false
			for j := range listed {
				found = found || slices.Contains(by[loglist.Label(fmt.Sprintf("Listed %d", j))], i)
			}
			if !found {
				return false
			}
		}
		return true
	})

	by := followedBy()
	want := map[string]int{}
	for i, der := range configured {
		want[fmt.Sprintf("log%d", i)] = shardOf(der, n)
	}
	for j, der := range listed {
		want[loglist.Label(fmt.Sprintf("Listed %d", j))] = shardOf(der, n)
	}
	for name, shard := range want {
		if got := by[name]; len(got) != 1 || got[0] != shard {
			t.Errorf("log %s is followed by monitors %v, want only %d", name, got, shard)
		}
	}
	if len(by) != len(want) {
		t.Errorf("monitors follow %d logs, want %d: %v", len(by), len(want), by)
	}
	for i, m := range monitors {
		for _, search := range []string{"crtsh", "list"} {
			if _, ok := healthOf(m, search); !ok {
				t.Errorf("monitor %d does not run %s: search sources and log lists are not sharded", i, search)
			}
		}
	}
}

// shardOf is the one shard of n that follows the key.
func shardOf(der []byte, n int) int {
	for i := 0; i < n; i++ {
		if (Shard{Index: i, Count: n}).Follows(der) {
			return i
		}
	}
	return -1
}
