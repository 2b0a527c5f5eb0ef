package ctlog

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/internal/staticlogfake"
	"github.com/ct-exporter/ct_exporter/internal/sunlightlog"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
)

// staticHarness submits to a real Sunlight log and follows it.
type staticHarness struct {
	*logHarness
	log  *sunlightlog.Log
	root *testpki.CA
	n    int64
}

func newStaticHarness(t *testing.T) *staticHarness {
	h := &staticHarness{logHarness: newLogHarness(t)}
	h.root, h.CA = testpki.NewChain(t, "Static Test Root", "Test PKI", "E7", "Let's Encrypt")
	h.log = sunlightlog.Start(t, h.root.Cert)
	return h
}

func (h *staticHarness) submit(names []string, precert bool) {
	h.T.Helper()
	iss, err := h.CA.Issue(testpki.Leaf{DNSNames: names, SCTs: 2})
	if err != nil {
		h.T.Fatal(err)
	}
	ctx := context.Background()
	if precert {
		if _, err := h.log.AddPreChain(ctx, iss.Precert, h.CA.DER, h.root.DER); err != nil {
			h.T.Fatal(err)
		}
		h.n++
	}
	if _, err := h.log.AddChain(ctx, iss.Final, h.CA.DER, h.root.DER); err != nil {
		h.T.Fatal(err)
	}
	h.n++
}

func (h *staticHarness) wait() {
	h.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.log.WaitSize(ctx, h.n); err != nil {
		h.T.Fatal(err)
	}
}

func (h *staticHarness) follower(start string) *Log {
	h.T.Helper()
	l, err := NewStatic("testlog", h.log.MonitoringPrefix(), h.log.PublicKey(), Options{
		Interval: time.Minute, Timeout: 5 * time.Second, Start: start, Workers: 2, BatchSize: StaticTileEntries, MMD: time.Hour,
		CountError: h.CountError,
	})
	if err != nil {
		h.T.Fatal(err)
	}
	return l
}

func TestStaticLogFollowsSunlight(t *testing.T) {
	h := newStaticHarness(t)
	for i := 0; i < 5; i++ {
		h.submit([]string{fmt.Sprintf("noise%d.example.net", i)}, false)
	}
	h.submit([]string{"www.example.com"}, true)
	h.wait()

	l := h.follower("beginning")
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if got := h.position(); got < h.n {
		t.Fatalf("position %d, want at least %d", got, h.n)
	}
	snap := h.Store.Snapshot()
	if snap.Certificates != 1 || len(snap.Recent) != 1 || snap.Recent[0].EmbeddedSCTs != 2 || snap.Recent[0].Watch != "example.com" {
		t.Fatalf("issuances %d, recent %+v", snap.Certificates, snap.Recent)
	}
	st := l.Status()
	if !st.Known || st.Position != st.TreeSize || time.Since(st.STHTime) > time.Minute {
		t.Fatalf("status %+v", st)
	}

	// More entries in the same partial tile, and an issuance: found at the
	// next poll, the new checkpoint proven consistent with the old.
	for i := 0; i < 3; i++ {
		h.submit([]string{fmt.Sprintf("more%d.example.net", i)}, false)
	}
	h.submit([]string{"api.example.com"}, true)
	h.wait()
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if got := h.Store.Snapshot().Certificates; got != 2 {
		t.Fatalf("%d issuances after growth, want 2", got)
	}
	if got := h.Counter(state.CounterLogProcessed); got != uint64(h.position()) {
		t.Fatalf("processed %d, position %d", got, h.position())
	}

	// A follower starting at the end sees only what comes next.
	h2 := &staticHarness{logHarness: newLogHarness(t), log: h.log, root: h.root, n: h.n}
	h2.CA = h.CA
	l2 := h2.follower("end")
	if err := l2.Poll(context.Background(), h2.Env); err != nil {
		t.Fatal(err)
	}
	if h2.Store.Snapshot().Certificates != 0 {
		t.Fatal("start: end recorded old issuances")
	}
	h2.submit([]string{"new.example.com"}, true)
	h2.wait()
	if err := l2.Poll(context.Background(), h2.Env); err != nil {
		t.Fatal(err)
	}
	if h2.Store.Snapshot().Certificates != 1 {
		t.Fatalf("start: end then growth: %d issuances, want 1", h2.Store.Snapshot().Certificates)
	}
}

func TestStaticLogRejectsWrongKey(t *testing.T) {
	h := newStaticHarness(t)
	h.submit([]string{"x.example.net"}, false)
	h.wait()
	other := ctlogKeyOf(t)
	l, err := NewStatic("testlog", h.log.MonitoringPrefix(), other, Options{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", CountError: h.CountError})
	if err != nil {
		t.Fatal(err)
	}
	err = l.Poll(context.Background(), h.Env)
	if st := l.Status(); st.Failures[CheckSTHSignature] != 1 || err == nil {
		t.Fatalf("checkpoint signed by another key: %v, %+v", err, st)
	}
	if h.position() != -1 {
		t.Fatal("a position was stored from an unverified checkpoint")
	}
}

// ctlogKeyOf returns the key of some other log.
func ctlogKeyOf(t *testing.T) []byte {
	return newLogHarness(t).fake.PublicKeyDER()
}

// A data tile whose bytes do not hash to the verified tree (a corrupting
// mirror, a misbehaving log) fails leaf_hash and moves nothing.
// A data tile that is corrupt (a flipped byte) or partial (cut short, as a
// proxy or a half-written object store can serve it) is never read as
// entries: the poll fails, the position holds, and nothing is recorded until
// the log serves the whole tile.
func TestStaticLogDetectsCorruptTiles(t *testing.T) {
	for name, mangle := range map[string]func([]byte) []byte{
		"flipped byte": func(b []byte) []byte { b[20] ^= 1; return b }, // inside the first entry's certificate
		"cut short":    func(b []byte) []byte { return b[:len(b)*2/3] },
	} {
		t.Run(name, func(t *testing.T) {
			h := newStaticHarness(t)
			h.submit([]string{"www.example.com"}, true)
			h.submit([]string{"x.example.net"}, false)
			h.wait()
			var corrupt atomic.Bool
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				res, err := http.Get(strings.TrimSuffix(h.log.MonitoringPrefix(), "/") + strings.TrimPrefix(r.URL.Path, "/log"))
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				defer res.Body.Close()
				body, _ := io.ReadAll(res.Body)
				if corrupt.Load() && strings.Contains(r.URL.Path, "/tile/data/") && len(body) > 20 {
					body = mangle(body)
				}
				w.WriteHeader(res.StatusCode)
				w.Write(body)
			}))
			defer proxy.Close()
			l, err := NewStatic("testlog", proxy.URL+"/log", h.log.PublicKey(), Options{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", CountError: h.CountError})
			if err != nil {
				t.Fatal(err)
			}
			corrupt.Store(true)
			err = l.Poll(context.Background(), h.Env)
			var ve *verifyError
			if !errors.As(err, &ve) || ve.check != CheckLeafHash {
				t.Fatalf("damaged tile: %v, want a leaf_hash verification failure", err)
			}
			if h.position() > 0 || h.Store.Snapshot().Certificates != 0 {
				t.Fatalf("position %d, %d issuances from a damaged tile", h.position(), h.Store.Snapshot().Certificates)
			}
			corrupt.Store(false)
			if err := l.Poll(context.Background(), h.Env); err != nil {
				t.Fatal(err)
			}
			if h.Store.Snapshot().Certificates != 1 {
				t.Fatal("not recovered")
			}
		})
	}
}

// A data tile the log does not serve (404) is an http_4xx error: the
// position holds, and the entries are read once the tile is there.
func TestStaticLogMissingTile(t *testing.T) {
	h := newStaticHarness(t)
	h.submit([]string{"www.example.com"}, true)
	h.wait()
	var missing atomic.Bool
	missing.Store(true)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if missing.Load() && strings.Contains(r.URL.Path, "/tile/data/") {
			http.NotFound(w, r)
			return
		}
		res, err := http.Get(strings.TrimSuffix(h.log.MonitoringPrefix(), "/") + strings.TrimPrefix(r.URL.Path, "/log"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	}))
	defer proxy.Close()
	l, err := NewStatic("testlog", proxy.URL+"/log", h.log.PublicKey(), Options{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", CountError: h.CountError})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Poll(context.Background(), h.Env); ctsource.ReasonOf(err) != ctsource.ReasonHTTP4xx || h.Errors[ctsource.ReasonHTTP4xx] == 0 {
		t.Fatalf("missing tile: %v", err)
	}
	if h.position() > 0 {
		t.Fatal("position moved past a missing tile")
	}
	missing.Store(false)
	if err := l.Poll(context.Background(), h.Env); err != nil || h.Store.Snapshot().Certificates != 1 {
		t.Fatalf("after the tile appeared: %v, %d issuances", err, h.Store.Snapshot().Certificates)
	}
}

// A caching frontend in front of a static-ct-api log serves an older,
// genuine checkpoint: it is proven a prefix of the verified tree through
// the verified tree's hash tiles, counted apart and ignored; the next fresh
// checkpoint is followed as usual.
func TestStaticLogOlderCheckpoint(t *testing.T) {
	h := newStaticHarness(t)
	checkpoint := func() []byte {
		t.Helper()
		res, err := http.Get(strings.TrimSuffix(h.log.MonitoringPrefix(), "/") + "/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("checkpoint: %d %v", res.StatusCode, err)
		}
		return b
	}
	empty := checkpoint()
	for i := 0; i < 3; i++ {
		h.submit([]string{fmt.Sprintf("noise%d.example.net", i)}, false)
	}
	h.wait()
	first := checkpoint()
	for cp, size := range map[*[]byte]string{&empty: "0", &first: "3"} {
		if lines := strings.Split(string(*cp), "\n"); len(lines) < 2 || lines[1] != size {
			t.Fatalf("checkpoint %q, want size %s", *cp, size)
		}
	}

	var stale atomic.Pointer[[]byte]
	var tilesDown atomic.Bool
	var tiles atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cp := stale.Load(); cp != nil && strings.HasSuffix(r.URL.Path, "/checkpoint") {
			w.Write(*cp)
			return
		}
		if strings.Contains(r.URL.Path, "/tile/") {
			tiles.Add(1)
		}
		if tilesDown.Load() && strings.Contains(r.URL.Path, "/tile/") {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		res, err := http.Get(strings.TrimSuffix(h.log.MonitoringPrefix(), "/") + strings.TrimPrefix(r.URL.Path, "/log"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	}))
	defer proxy.Close()
	l, err := NewStatic("testlog", proxy.URL+"/log", h.log.PublicKey(), Options{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", CountError: h.CountError})
	if err != nil {
		t.Fatal(err)
	}
	l.proto.(*staticLog).tr.BackoffBase = 10 * time.Millisecond
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	h.submit([]string{"more.example.net"}, false)
	h.submit([]string{"www.example.com"}, true)
	h.wait()
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.position() != h.n || h.Store.Snapshot().Certificates != 1 {
		t.Fatalf("position %d of %d, %d issuances", h.position(), h.n, h.Store.Snapshot().Certificates)
	}

	stale.Store(&first)
	read := tiles.Load()
	assertOlderIgnored(t, h.logHarness, l, 1)
	if tiles.Load() == read {
		t.Fatal("the older checkpoint was not proven: no hash tile read")
	}
	stale.Store(&empty) // size 0: the empty tree is everyone's prefix
	assertOlderIgnored(t, h.logHarness, l, 2)

	// Hash tiles the log fails to serve are a source error, not a
	// verification failure, and not counted as an older head either.
	stale.Store(&first)
	tilesDown.Store(true)
	err = l.Poll(context.Background(), h.Env)
	var ve *verifyError
	if ctsource.ReasonOf(err) != ctsource.ReasonHTTP5xx || errors.As(err, &ve) || h.Errors[ctsource.ReasonHTTP5xx] == 0 {
		t.Fatalf("older checkpoint with its hash tiles unavailable: %v, errors %v", err, h.Errors)
	}
	if st := l.Status(); st.Failures[CheckRollback] != 0 || st.OlderTreeHeads != 2 || h.position() != h.n {
		t.Fatalf("a failed proof request: status %+v, position %d", st, h.position())
	}
	tilesDown.Store(false)

	// A smaller tree whose root is not the verified tree's prefix, checked
	// against the real hash tiles (the log's key is Sunlight's, so no such
	// checkpoint can be signed here; the signature is head's job, tested
	// apart): a rollback.
	verified := h.storedHead()
	older, err := l.checkHead(context.Background(), verified, treeHead{Size: 3, Root: [32]byte{9, 9, 9}, Time: verified.Time})
	if !errors.As(err, &ve) || ve.check != CheckRollback {
		t.Fatalf("smaller tree that is not a prefix: older %v, %v; want a rollback", older, err)
	}

	// Fresh checkpoints again: new entries are followed.
	stale.Store(nil)
	h.submit([]string{"api.example.com"}, true)
	h.wait()
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.position() != h.n || h.Store.Snapshot().Certificates != 2 {
		t.Fatalf("after fresh checkpoints: position %d of %d, %d issuances", h.position(), h.n, h.Store.Snapshot().Certificates)
	}
	if st := l.Status(); st.TreeSize != h.n || st.Position != h.n || st.OlderTreeHeads != 2 || !st.Verifying {
		t.Fatalf("status %+v after fresh checkpoints", st)
	}
}

// A static-ct-api log failing its checkpoint or a hash tile fails the poll
// after the transport's attempts alone, each counted once: the sunlight
// client's own retries (pauses of 1, 5, 25 and 125 s, each try with the
// transport's) stalled such a poll 156 s and counted the error 20 times.
func TestStaticLogFailingLogFailsOnce(t *testing.T) {
	for _, failing := range []string{"/checkpoint", "/tile/0/"} {
		t.Run(strings.Trim(failing, "/"), func(t *testing.T) {
			h := newLogHarness(t)
			fake := staticlogfake.New(t)
			ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")
			for i := 0; i < 5; i++ {
				iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("www%d.example.com", i)}})
				if err != nil {
					t.Fatal(err)
				}
				fake.AddCert(iss.Final, ca.DER)
			}
			fake.Publish()
			target, err := url.Parse(fake.MonitoringPrefix())
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			failed := map[string]int{} // 503s answered, by path
			upstream := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, failing) {
					mu.Lock()
					failed[r.URL.Path]++
					mu.Unlock()
					http.Error(w, "unavailable", http.StatusServiceUnavailable)
					return
				}
				upstream.ServeHTTP(w, r)
			}))
			defer proxy.Close()
			l, err := NewStatic("testlog", proxy.URL+target.Path, fake.PublicKeyDER(), Options{
				Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", CountError: h.CountError,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			tr := l.proto.(*staticLog).tr
			tr.BackoffBase = time.Millisecond
			// Far less than the 156 s the retries of the sunlight client
			// took, far more than the transport's attempts need.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = l.Poll(ctx, h.Env)
			if ctsource.ReasonOf(err) != ctsource.ReasonHTTP5xx {
				t.Fatalf("poll with %s failing = %v, want an http_5xx error", failing, err)
			}
			mu.Lock()
			defer mu.Unlock()
			total := 0
			for path, n := range failed {
				if n != tr.Attempts {
					t.Errorf("%s asked %d times, want %d (the transport's attempts)", path, n, tr.Attempts)
				}
				total += n
			}
			if total == 0 || h.Errors[ctsource.ReasonHTTP5xx] != total {
				t.Fatalf("%d http_5xx counted for %d failed requests (%v)", h.Errors[ctsource.ReasonHTTP5xx], total, failed)
			}
			if h.position() > 0 || h.Store.Snapshot().Certificates != 0 {
				t.Fatalf("position %d, %d issuances without the proofs", h.position(), h.Store.Snapshot().Certificates)
			}
		})
	}
}

// A checkpoint correctly signed by the log's key for a tree of 2^63
// entries or more is the log misbehaving (tree_size), told apart from a
// forged one (sth_signature); neither is stored or shown as a tree size.
func TestStaticLogTreeSizeBeyondInt64(t *testing.T) {
	h := newLogHarness(t)
	fake := staticlogfake.New(t)
	l, err := NewStatic("testlog", fake.MonitoringPrefix(), fake.PublicKeyDER(), Options{
		Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", CountError: h.CountError,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	huge := fake.SignCheckpoint(1<<63+5, [32]byte{7})
	if !strings.Contains(string(huge), "\n9223372036854775813\n") {
		t.Fatalf("checkpoint %q", huge)
	}
	poll := func(want string) {
		t.Helper()
		err := l.Poll(context.Background(), h.Env)
		var ve *verifyError
		if !errors.As(err, &ve) || ve.check != want {
			t.Fatalf("poll = %v, want a %s failure", err, want)
		}
	}
	fake.ServeCheckpoint(huge)
	poll(CheckTreeSize)
	if st := l.Status(); st.Known || st.TreeSize != 0 || st.Failures[CheckTreeSize] != 1 || st.Failures[CheckSTHSignature] != 0 || h.position() != -1 {
		t.Fatalf("after a first checkpoint of size 2^63+5: %+v, position %d", st, h.position())
	}

	fake.ServeCheckpoint(nil)
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	head := h.storedHead()
	fake.ServeCheckpoint(huge)
	poll(CheckTreeSize)
	// The same text under another root: the signature no longer matches.
	root := [32]byte{7}
	forged := strings.Replace(string(huge), base64.StdEncoding.EncodeToString(root[:]), base64.StdEncoding.EncodeToString(make([]byte, 32)), 1)
	fake.ServeCheckpoint([]byte(forged))
	poll(CheckSTHSignature)
	st := l.Status()
	if st.Failures[CheckTreeSize] != 2 || st.Failures[CheckSTHSignature] != 1 || st.TreeSize != head.Size || !h.storedHead().same(head) {
		t.Fatalf("status %+v, stored %+v, want the verified %+v kept", st, h.storedHead(), head)
	}
}

func TestHugeTreeSize(t *testing.T) {
	root := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for size, want := range map[string]bool{
		"9223372036854775807": false, "9223372036854775808": true, "18446744073709551615": true,
		"18446744073709551616": false, "09223372036854775808": false, "+9223372036854775808": false, "5": false, "-1": false,
	} {
		if _, got := hugeTreeSize("o.example/log\n" + size + "\n" + root + "\n"); got != want {
			t.Errorf("size %s: %v, want %v", size, got, want)
		}
	}
	if _, ok := hugeTreeSize("o.example/log\n9223372036854775808\n" + root + "\next\n"); ok {
		t.Error("a checkpoint with an extension line")
	}
}
