package ctlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	ct "github.com/google/certificate-transparency-go"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
)

// logHarness is a base harness watching example.com, with a fake RFC 6962 log.
type logHarness struct {
	*sourcetest.Harness
	fake *ctlogfake.Log
}

func newLogHarness(t *testing.T) *logHarness {
	t.Helper()
	return &logHarness{Harness: sourcetest.NewHarness(t, "example.com"), fake: ctlogfake.New(t)}
}

func (h *logHarness) follower(start string) *Log {
	h.T.Helper()
	l, err := NewRFC6962("testlog", h.fake.URL+"/", h.fake.PublicKeyDER(), Options{
		Interval: time.Minute, Timeout: 2 * time.Second, Start: start, Workers: 3, BatchSize: 7, MMD: time.Hour,
		CommitEvery: time.Nanosecond, // commit after every batch: the proofs are exercised
		CountError:  h.CountError,
	})
	if err != nil {
		h.T.Fatal(err)
	}
	l.proto.(*rfc6962Log).tr.BackoffBase = 10 * time.Millisecond
	return l
}

// noise appends n certificates for domains nobody watches.
func (h *logHarness) noise(n int) {
	h.T.Helper()
	for i := 0; i < n; i++ {
		iss, err := h.CA.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("host%d.example.net", h.fake.Size())}})
		if err != nil {
			h.T.Fatal(err)
		}
		h.fake.AddCert(iss.Final, h.CA.DER)
	}
}

// issue appends a precertificate and its final certificate for name.
func (h *logHarness) issue(name string) *testpki.Issued {
	h.T.Helper()
	iss, err := h.CA.Issue(testpki.Leaf{DNSNames: []string{name}, SCTs: 2})
	if err != nil {
		h.T.Fatal(err)
	}
	h.fake.AddPrecert(iss.Precert, h.CA.DER, h.CA.DER)
	h.fake.AddCert(iss.Final, h.CA.DER)
	return iss
}

func (h *logHarness) position() int64 {
	var raw []byte
	h.Store.View(func(tx *state.Tx) error { raw = tx.LogPosition("testlog"); return nil })
	if raw == nil {
		return -1
	}
	p, err := decodePosition(raw)
	if err != nil {
		h.T.Fatal(err)
	}
	return p.Size
}

func TestCTLogFollowsAndMatches(t *testing.T) {
	h := newLogHarness(t)
	h.noise(10)
	iss := h.issue("www.example.com")
	h.fake.AddRaw(ct.X509LogEntryType, []byte("not a certificate"))
	h.noise(20)
	h.fake.Publish()

	l := h.follower("beginning")
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	size := h.fake.Size()
	if got := h.position(); got != size {
		t.Fatalf("position %d, want %d", got, size)
	}
	if h.Counter(state.CounterLogProcessed) != uint64(size) || h.Counter(state.CounterLogMalformed) != 1 {
		t.Fatalf("processed %d malformed %d", h.Counter(state.CounterLogProcessed), h.Counter(state.CounterLogMalformed))
	}
	snap := h.Store.Snapshot()
	if snap.Certificates != 1 || len(snap.Recent) != 1 || snap.Recent[0].EmbeddedSCTs != 2 {
		t.Fatalf("issuances %d, recent %+v", snap.Certificates, snap.Recent)
	}
	pre, err := cert.Parse(iss.Precert)
	if err != nil {
		t.Fatal(err)
	}
	if r := snap.Recent[0]; r.TBSSHA256 != pre.TBSSHA256 || r.CertSHA256 != pre.CertSHA256 {
		t.Fatalf("recent %x/%x, want the precertificate's tbs and hash", r.TBSSHA256[:4], r.CertSHA256[:4])
	}
	st := l.Status()
	if !st.Known || st.TreeSize != size || st.Position != size || !st.Verifying {
		t.Fatalf("status %+v", st)
	}

	// The log grows: the new head is checked against the old one.
	h.noise(5)
	h.issue("api.example.com")
	h.fake.Publish()
	before := h.fake.Requests("get-sth-consistency")
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.fake.Requests("get-sth-consistency") == before {
		t.Error("no consistency proof asked for the new tree head")
	}
	if h.Store.Snapshot().Certificates != 2 || h.Counter(state.CounterLogProcessed) != uint64(h.fake.Size()) {
		t.Fatalf("after growth: %d issuances, %d processed of %d", h.Store.Snapshot().Certificates, h.Counter(state.CounterLogProcessed), h.fake.Size())
	}

	// Another follower on the same state resumes, counting nothing again.
	h.noise(3)
	h.fake.Publish()
	if err := h.follower("beginning").Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.Counter(state.CounterLogProcessed) != uint64(h.fake.Size()) || h.Counter(state.CounterNewCertificates) != 2 {
		t.Fatalf("after resume: processed %d of %d, counted %d", h.Counter(state.CounterLogProcessed), h.fake.Size(), h.Counter(state.CounterNewCertificates))
	}
}

func TestCTLogStartPositions(t *testing.T) {
	for _, tc := range []struct {
		start string
		want  int // issuances found of the two: one before index 13, one after
	}{{"end", 0}, {"beginning", 2}, {"13", 1}} {
		t.Run(tc.start, func(t *testing.T) {
			h := newLogHarness(t)
			h.noise(5)
			h.issue("a.example.com") // 5, 6
			h.noise(6)               // 7..12
			h.issue("b.example.com") // 13, 14
			h.noise(4)
			h.fake.Publish()
			l := h.follower(tc.start)
			if err := l.Poll(context.Background(), h.Env); err != nil {
				t.Fatal(err)
			}
			if got := h.Store.Snapshot().Certificates; got != uint64(tc.want) {
				t.Fatalf("%d issuances, want %d", got, tc.want)
			}
			// From there it follows: a new issuance is found whatever the start.
			h.issue("c.example.com")
			h.fake.Publish()
			if err := l.Poll(context.Background(), h.Env); err != nil {
				t.Fatal(err)
			}
			if got := h.Store.Snapshot().Certificates; got != uint64(tc.want+1) {
				t.Fatalf("after growth %d issuances, want %d", got, tc.want+1)
			}
		})
	}
}

func TestCTLogVerificationFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		check     string
		misbehave func(h *logHarness)
	}{
		{"bad STH signature", CheckSTHSignature, func(h *logHarness) { h.noise(3); h.fake.Publish(); h.fake.ServeBadSTHSignature() }},
		// Smaller trees that are not a prefix of the verified one: no cache
		// serves those (a genuine older one is TestCTLogOlderTreeHeads).
		{"rollback", CheckRollback, func(h *logHarness) {
			old := h.fake.Published()
			h.noise(3)
			h.fake.Publish()
			h.fake.ServeSTH(h.fake.SignSTH(old.TreeSize-1, old.Timestamp+1, [32]byte{9, 9, 9}))
		}},
		{"rollback to an empty tree with a root", CheckRollback, func(h *logHarness) {
			h.fake.ServeSTH(h.fake.SignSTH(0, h.fake.Published().Timestamp+1, [32]byte{9, 9, 9}))
		}},
		{"tree size beyond 2^63-1", CheckTreeSize, func(h *logHarness) {
			h.fake.ServeSTH(h.fake.SignSTH(1<<63+5, h.fake.Published().Timestamp+1, [32]byte{9, 9, 9}))
		}},
		{"fork", CheckConsistency, func(h *logHarness) { h.fake.Fork() }},
		{"fork of a larger tree", CheckConsistency, func(h *logHarness) {
			h.noise(3)
			sth := h.fake.Publish()
			h.fake.ServeSTH(h.fake.SignSTH(sth.TreeSize, sth.Timestamp, [32]byte{1, 2, 3}))
		}},
		{"wrong leaf", CheckLeafHash, func(h *logHarness) {
			h.issue("evil.example.com")
			h.noise(3)
			h.fake.Publish()
			h.fake.CorruptEntry(h.fake.Size() - 4)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newLogHarness(t)
			h.noise(10)
			h.fake.Publish()
			l := h.follower("beginning")
			if err := l.Poll(context.Background(), h.Env); err != nil {
				t.Fatal(err)
			}
			pos := h.position()
			found := h.Store.Snapshot().Certificates
			tc.misbehave(h)
			err := l.Poll(context.Background(), h.Env)
			var ve *verifyError
			if !errors.As(err, &ve) || ve.check != tc.check {
				t.Fatalf("poll = %v, want a %s failure", err, tc.check)
			}
			st := l.Status()
			if st.Failures[tc.check] != 1 || st.Verifying {
				t.Fatalf("status %+v", st)
			}
			if got := h.position(); got > pos && tc.check != CheckLeafHash {
				t.Fatalf("position moved from %d to %d past an unverified head", pos, got)
			}
			if tc.check == CheckLeafHash {
				if got := h.position(); got > h.fake.Size()-4 {
					t.Fatalf("position %d passed the corrupted entry %d", got, h.fake.Size()-4)
				}
			}
			if h.Store.Snapshot().Certificates != found {
				t.Fatal("an issuance from unverified entries was recorded")
			}
			// It stays failed while the log misbehaves, and recovers when it stops.
			if err := l.Poll(context.Background(), h.Env); err == nil {
				t.Fatal("second poll passed while the log still misbehaves")
			}
			if l.Status().Failures[tc.check] != 2 {
				t.Fatalf("failures = %v", l.Status().Failures)
			}
			h.fake.ClearFaults()
			h.fake.Publish()
			if err := l.Poll(context.Background(), h.Env); err != nil {
				t.Fatalf("after the log behaves again: %v", err)
			}
			if !l.Status().Verifying || h.position() != h.fake.Size() {
				t.Fatalf("not recovered: %+v, position %d of %d", l.Status(), h.position(), h.fake.Size())
			}
		})
	}
}

func TestCTLogTransientFaults(t *testing.T) {
	h := newLogHarness(t)
	h.noise(20)
	h.issue("www.example.com")
	h.fake.Publish()
	h.fake.Fail("get-entries", 2, 429, time.Second)
	h.fake.Fail("get-sth", 1, 500, 0)
	l := h.follower("beginning")
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.Errors[ctsource.ReasonHTTP429] != 2 || h.Errors[ctsource.ReasonHTTP5xx] != 1 {
		t.Fatalf("errors %v", h.Errors)
	}
	if h.Store.Snapshot().Certificates != 1 || h.position() != h.fake.Size() {
		t.Fatal("entries lost to retried errors")
	}

	// A log too slow to answer is a timeout, and the position holds.
	h.noise(5)
	h.fake.Publish()
	h.fake.SetDelay("get-entries", 10*time.Second)
	pos := h.position()
	err := l.Poll(context.Background(), h.Env)
	if ctsource.ReasonOf(err) != ctsource.ReasonTimeout {
		t.Fatalf("slow log: %v", err)
	}
	if h.position() != pos {
		t.Fatal("position moved without the entries")
	}
}

// Starting anywhere in a log needs the compact range of what comes before:
// derived from one inclusion proof, it must hash to the tree of that size.
func TestRangeAtEveryIndex(t *testing.T) {
	h := newLogHarness(t)
	h.noise(37)
	h.fake.Publish()
	l := h.follower("end")
	proto := l.proto.(*rfc6962Log)
	head, err := proto.head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for k := int64(0); k <= head.Size; k++ {
		hashes, err := proto.rangeAt(context.Background(), head, k)
		if err != nil {
			t.Fatalf("k=%d: %v", k, err)
		}
		r, err := compactRange(k, hashes)
		if err != nil {
			t.Fatalf("k=%d: %v", k, err)
		}
		root, err := rangeRoot(r)
		if err != nil {
			t.Fatal(err)
		}
		if root != h.fake.RootAt(k) {
			t.Fatalf("k=%d: range root %x, tree root %x", k, root[:4], h.fake.RootAt(k))
		}
	}
}

// A readonly log is followed to the final tree head the log list gives,
// and must end exactly there.
func TestCTLogReadonlyFinalTreeHead(t *testing.T) {
	h := newLogHarness(t)
	h.noise(12)
	h.issue("www.example.com")
	h.fake.Publish()
	final := &FinalTreeHead{Size: h.fake.Size(), Root: h.fake.RootAt(h.fake.Size())}
	l := h.follower("beginning")
	l.opts.Final = final
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.position() != final.Size || h.Store.Snapshot().Certificates != 1 {
		t.Fatalf("position %d, %d issuances", h.position(), h.Store.Snapshot().Certificates)
	}
	// A "readonly" log that grows is misbehaving.
	h.noise(2)
	h.fake.Publish()
	var ve *verifyError
	if err := l.Poll(context.Background(), h.Env); !errors.As(err, &ve) || ve.check != CheckConsistency {
		t.Fatalf("readonly log grew: %v", err)
	}
	if h.position() != final.Size {
		t.Fatal("followed a readonly log past its final tree head")
	}
}

// A long catch-up reports where it stands at info level, every
// ProgressEvery: not per batch, and with a rate and an ETA.
func TestCTLogCatchUpProgress(t *testing.T) {
	h := newLogHarness(t)
	h.noise(300)
	h.fake.Publish()
	h.fake.SetDelay(ctlogfake.GetEntries, 10*time.Millisecond) // 43 batches: long enough to report
	l := h.follower("beginning")
	l.opts.ProgressEvery = 30 * time.Millisecond
	var logged bytes.Buffer
	var mu sync.Mutex
	h.Env.Logger = slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logged.Write(p)
	}), nil))
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	batches := (300 + 6) / 7
	var progress, ended int
	for _, line := range strings.Split(strings.TrimSpace(logged.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		switch rec["msg"] {
		case "catching up":
			progress++
			for _, k := range []string{"log", "position", "tree_size", "entries_behind", "entries_per_second", "eta"} {
				if _, ok := rec[k]; !ok {
					t.Errorf("progress line without %s: %s", k, line)
				}
			}
			if rec["level"] != "INFO" {
				t.Errorf("progress logged at %v", rec["level"])
			}
		case "catch-up ended":
			ended++
			if rec["entries"] != float64(300) {
				t.Errorf("catch-up ended after %v entries, want 300", rec["entries"])
			}
		}
	}
	if progress == 0 || progress >= batches/2 || ended != 1 {
		t.Fatalf("%d progress lines for %d batches and %d end lines; want some, far fewer than batches, and one end:\n%s",
			progress, batches, ended, logged.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A poll that finds the tree head it already recorded writes nothing: no
// commit (and fsync) per poll for a log between tree heads or readonly.
func TestCTLogUnchangedHeadWritesNothing(t *testing.T) {
	h := newLogHarness(t)
	h.noise(5)
	h.issue("www.example.com")
	h.fake.Publish()
	l := h.follower("beginning")
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := l.Poll(context.Background(), h.Env); err != nil {
			t.Fatal(err)
		}
	}
	after, err := os.ReadFile(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("polls that found nothing new wrote the state file")
	}
	if st := l.Status(); st.Position != 7 || st.TreeSize != 7 {
		t.Fatalf("status %+v after unchanged polls", st)
	}
	// A new tree head is still recorded.
	h.noise(1)
	h.fake.Publish()
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.position() != 8 {
		t.Fatalf("position %d after a new tree head, want 8", h.position())
	}
}

// storedHead is the verified tree head the state file holds for the log.
func (h *logHarness) storedHead() treeHead {
	h.T.Helper()
	var raw []byte
	h.Store.View(func(tx *state.Tx) error { raw = tx.LogPosition("testlog"); return nil })
	p, err := decodePosition(raw)
	if err != nil {
		h.T.Fatal(err)
	}
	return p.Head
}

// assertOlderIgnored polls while the log serves a genuine tree head older
// than the verified one: no failure, the poll succeeds, the older heads
// counter reaches want, and neither the state file nor the status moves.
func assertOlderIgnored(t *testing.T, h *logHarness, l *Log, want uint64) {
	t.Helper()
	head, pos := h.storedHead(), h.position()
	before, err := os.ReadFile(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatalf("older tree head: %v", err)
	}
	st := l.Status()
	for check, n := range st.Failures {
		if n != 0 {
			t.Fatalf("older tree head counted as a %s failure: %+v", check, st)
		}
	}
	if !st.Verifying || st.OlderTreeHeads != want || st.TreeSize != head.Size || !st.STHTime.Equal(head.Time) || st.Position != pos {
		t.Fatalf("status %+v after an older tree head, want %d older, tree size %d, position %d", st, want, head.Size, pos)
	}
	if got := h.storedHead(); !got.same(head) || h.position() != pos {
		t.Fatalf("stored head %+v position %d, want %+v position %d", got, h.position(), head, pos)
	}
	after, err := os.ReadFile(h.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("an older tree head wrote the state file")
	}
}

// A caching frontend serves older, genuine STHs: each is proven a prefix of
// the verified tree (get-sth-consistency from its size to the verified
// one), counted apart and ignored; the next fresh STH is followed as usual.
func TestCTLogOlderTreeHeads(t *testing.T) {
	h := newLogHarness(t)
	empty := h.fake.Published()
	h.noise(10)
	first := h.fake.Publish()
	l := h.follower("beginning")
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	h.noise(5)
	h.fake.Publish()
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.position() != 15 {
		t.Fatalf("position %d, want 15", h.position())
	}

	proofs := h.fake.Requests(ctlogfake.GetSTHConsistency)
	h.fake.ServeSTH(first)
	assertOlderIgnored(t, h, l, 1)
	if got := h.fake.Requests(ctlogfake.GetSTHConsistency); got != proofs+1 {
		t.Fatalf("%d consistency proofs fetched for the older STH, want 1", got-proofs)
	}
	assertOlderIgnored(t, h, l, 2) // served again, proven again
	h.fake.ServeSTH(empty)         // size 0: the empty tree is everyone's prefix
	assertOlderIgnored(t, h, l, 3)

	// A proof the log fails to serve is a source error, not a verification
	// failure, and not counted as an older head either.
	h.fake.ServeSTH(first)
	h.fake.Fail(ctlogfake.GetSTHConsistency, 0, 503, 0)
	err := l.Poll(context.Background(), h.Env)
	if ctsource.ReasonOf(err) != ctsource.ReasonHTTP5xx || h.Errors[ctsource.ReasonHTTP5xx] == 0 {
		t.Fatalf("older STH with its proof failing: %v, errors %v", err, h.Errors)
	}
	var ve *verifyError
	if st := l.Status(); errors.As(err, &ve) || st.Failures[CheckRollback] != 0 || st.OlderTreeHeads != 3 {
		t.Fatalf("a failed proof request: %v, status %+v", err, st)
	}

	// The log serves fresh STHs again: new entries are followed.
	h.fake.ClearFaults()
	h.noise(2)
	h.issue("www.example.com")
	h.fake.Publish()
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.position() != h.fake.Size() || h.Store.Snapshot().Certificates != 1 {
		t.Fatalf("after fresh STHs: position %d of %d, %d issuances", h.position(), h.fake.Size(), h.Store.Snapshot().Certificates)
	}
	if st := l.Status(); st.TreeSize != h.fake.Size() || st.Position != h.fake.Size() || st.OlderTreeHeads != 3 {
		t.Fatalf("status %+v after fresh STHs", st)
	}
}

// A correctly signed tree head of 2^63 entries or more is the log
// misbehaving (check tree_size), on the first poll as on later ones: it is
// never stored, and never shown as a (negative) tree size.
func TestCTLogTreeSizeBeyondInt64(t *testing.T) {
	for _, size := range []uint64{1 << 63, 1<<63 + 5, 1<<64 - 1} {
		h := newLogHarness(t)
		h.noise(3)
		sth := h.fake.Publish()
		h.fake.ServeSTH(h.fake.SignSTH(size, sth.Timestamp+1, [32]byte{7}))
		l := h.follower("end")
		if got := l.Status().Failures; len(got) != len(Checks) || got[CheckTreeSize] != 0 {
			t.Fatalf("failure counters before any poll: %v", got)
		}
		err := l.Poll(context.Background(), h.Env)
		var ve *verifyError
		if !errors.As(err, &ve) || ve.check != CheckTreeSize {
			t.Fatalf("first poll, STH of size %d = %v, want a tree_size failure", size, err)
		}
		st := l.Status()
		if st.Failures[CheckTreeSize] != 1 || st.Failures[CheckSTHSignature] != 0 || st.Verifying || st.Known || st.TreeSize != 0 || h.position() != -1 {
			t.Fatalf("after a first STH of size %d: status %+v, position %d", size, st, h.position())
		}

		// Once the log behaves, it is followed; a huge head later is
		// refused the same way, and the verified head stays.
		h.fake.ClearFaults()
		if err := l.Poll(context.Background(), h.Env); err != nil {
			t.Fatal(err)
		}
		head := h.storedHead()
		h.fake.ServeSTH(h.fake.SignSTH(size, sth.Timestamp+2, [32]byte{7}))
		if err := l.Poll(context.Background(), h.Env); !errors.As(err, &ve) || ve.check != CheckTreeSize {
			t.Fatalf("later poll, STH of size %d = %v, want a tree_size failure", size, err)
		}
		if st := l.Status(); st.Failures[CheckTreeSize] != 2 || st.TreeSize != head.Size || !h.storedHead().same(head) {
			t.Fatalf("after a later STH of size %d: status %+v, stored %+v, want %+v", size, st, h.storedHead(), head)
		}
	}
}

// A log polled under a lease that is lost sends nothing and counts no
// error of the log's: the poll's error says the lease is lost, through
// certificate-transparency-go's client (RFC 6962) as through the tile
// reader (static-ct-api).
func TestCTLogLeaseLost(t *testing.T) {
	lost := fmt.Errorf("testlog: %w", state.ErrFenced)
	ctx := ctsource.WithLease(context.Background(), func() error { return lost })

	h := newLogHarness(t)
	h.noise(3)
	h.fake.Publish()
	err := h.follower("beginning").Poll(ctx, h.Env)
	if !errors.Is(err, state.ErrFenced) {
		t.Errorf("RFC 6962: poll under a lost lease: %v, want ErrFenced", err)
	}
	if n := h.fake.Requests("get-sth"); n != 0 {
		t.Errorf("RFC 6962: %d get-sth requests sent under a lost lease", n)
	}

	s := newStaticHarness(t)
	s.submit([]string{"www.example.com"}, false)
	s.wait()
	if err := s.follower("beginning").Poll(ctx, s.Env); !errors.Is(err, state.ErrFenced) {
		t.Errorf("static: poll under a lost lease: %v, want ErrFenced", err)
	}
	for name, hh := range map[string]*sourcetest.Harness{"RFC 6962": h.Harness, "static": s.Harness} {
		for reason, n := range hh.Errors {
			if n != 0 {
				t.Errorf("%s: %d errors counted as %s", name, n, reason)
			}
		}
	}
}
