package ctsource

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// recordLimit is the state's value limit in these tests, lowered from
// bbolt's 2 GiB so that a certificate can exceed it: an ordinary record is
// a few hundred bytes, one with manyNames names several kilobytes.
const (
	recordLimit = 4096
	manyNames   = 300
)

// lockedLog is a log a source writes to while the test reads it.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// openLimited opens a state file whose value limit is recordLimit.
func openLimited(t *testing.T, path string) *state.Store {
	t.Helper()
	store, err := state.Open(path, state.Options{MaxValueSize: recordLimit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func manyNamesUnder(domain string) []string {
	names := make([]string, manyNames)
	for i := range names {
		names[i] = fmt.Sprintf("host-%04d.%s", i, domain)
	}
	return names
}

// checkUnrecordedLogged checks the error line of a certificate that could
// not be recorded.
func checkUnrecordedLogged(t *testing.T, logged string, tbs [32]byte, watchName string) {
	t.Helper()
	for _, line := range strings.Split(logged, "\n") {
		if strings.Contains(line, "could not be recorded") {
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, hex.EncodeToString(tbs[:])) ||
				!strings.Contains(line, "watches="+watchName) || !strings.Contains(line, "dns_names=300") {
				t.Errorf("log line without level, tbs_sha256, watch or names: %s", line)
			}
			return
		}
	}
	t.Errorf("nothing logged about the certificate not recorded:\n%s", logged)
}

// A certificate the state cannot record does not fail its batch: a CT log
// follower commits the batch without it, moves its position past it and
// records what comes after; it is counted once, in reason="record".
func TestCTLogSkipsUnrecordableCertificate(t *testing.T) {
	h := newLogHarness(t)
	h.store = openLimited(t, filepath.Join(t.TempDir(), "limited.state"))
	h.env.Recorder.Store = h.store
	if err := h.store.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 100, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return Verdict(h.set, w, is)
	}}); err != nil {
		t.Fatal(err)
	}
	logged := &lockedLog{}
	h.env.Logger = slog.New(slog.NewTextHandler(logged, nil))

	h.noise(3)
	h.issue("before.example.com")
	// In the middle of a batch of 7 (entries 5 to 11).
	big, err := h.ca.Issue(testpki.Leaf{DNSNames: manyNamesUnder("example.com"), SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	h.fake.AddCert(big.Final, h.ca.DER)
	h.noise(2)
	h.issue("after.example.com")
	h.noise(4)
	h.fake.Publish()

	l := h.follower("beginning")
	if err := l.Poll(context.Background(), h.env); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if got, size := h.position(), h.fake.Size(); got != size {
		t.Fatalf("position %d, want %d: the log stopped at the certificate", got, size)
	}
	if n := h.errors[ReasonRecord]; n != 1 {
		t.Fatalf("record errors %d, want 1", n)
	}
	snap := h.store.Snapshot()
	if snap.Certificates != 2 || h.counter(state.CounterNewCertificates) != 2 {
		t.Fatalf("%d issuances, %d counted; want before and after", snap.Certificates, h.counter(state.CounterNewCertificates))
	}
	c, err := ParseCertificate(big.Final)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.View(func(tx *state.Tx) error {
		if is, _ := tx.Issuance(c.TBSSHA256); is != nil {
			t.Error("the certificate over the limit is stored")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkUnrecordedLogged(t, logged.String(), c.TBSSHA256, "example.com")

	// The next poll goes on from there, and counts nothing again.
	h.issue("later.example.com")
	h.fake.Publish()
	if err := l.Poll(context.Background(), h.env); err != nil {
		t.Fatal(err)
	}
	if h.store.Snapshot().Certificates != 3 || h.errors[ReasonRecord] != 1 || h.position() != h.fake.Size() {
		t.Fatalf("second poll: %d issuances, %d record errors, position %d of %d",
			h.store.Snapshot().Certificates, h.errors[ReasonRecord], h.position(), h.fake.Size())
	}
}

// crt.sh: a certificate that cannot be recorded is counted once and marked
// processed, so that it is neither downloaded again nor fails the polls; the
// certificates after it are recorded.
func TestCrtshSkipsUnrecordableCertificate(t *testing.T) {
	h := newHarness(t)
	h.store = openLimited(t, filepath.Join(t.TempDir(), "limited.state"))
	h.env.Recorder.Store = h.store
	h.setWatches("example.com")
	logged := &lockedLog{}
	h.env.Logger = slog.New(slog.NewTextHandler(logged, nil))

	big, err := h.ca.Issue(testpki.Leaf{CN: "big.example.com", DNSNames: manyNamesUnder("example.com"), SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	h.fake.Add(big.Final)
	h.issue("www.example.com")
	if err := h.poll(); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if n := h.errorCount(ReasonRecord); n != 1 {
		t.Fatalf("record errors %d, want 1", n)
	}
	if h.store.Snapshot().Certificates != 1 || h.newCertificates() != 1 {
		t.Fatalf("%d issuances, %d counted; want www.example.com's", h.store.Snapshot().Certificates, h.newCertificates())
	}
	c, err := ParseCertificate(big.Final)
	if err != nil {
		t.Fatal(err)
	}
	checkUnrecordedLogged(t, logged.String(), c.TBSSHA256, "example.com")
	_, downloads := h.requests()
	if err := h.poll(); err != nil {
		t.Fatal(err)
	}
	if _, again := h.requests(); again != downloads || h.errorCount(ReasonRecord) != 1 {
		t.Fatalf("second poll: %d downloads (was %d), %d record errors", again, downloads, h.errorCount(ReasonRecord))
	}
}

// Cert Spotter: the page with the certificate is recorded without it, and
// the cursor moves past it.
func TestCertspotterSkipsUnrecordableCertificate(t *testing.T) {
	h := newCSHarness(t, "token-0001", "example.com")
	h.store = openLimited(t, filepath.Join(t.TempDir(), "limited.state"))
	h.env.Recorder.Store = h.store
	h.setWatches("example.com")
	h.api.SetPageSize(2)
	h.issueAPI("a.example.com")
	big, err := h.ca.Issue(testpki.Leaf{CN: "big.example.com", DNSNames: manyNamesUnder("example.com"), SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.api.Add(big.Final); err != nil {
		t.Fatal(err)
	}
	last := h.issueAPI("b.example.com")
	if err := h.pollCS(); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if n := h.errorCount(ReasonRecord); n != 1 {
		t.Fatalf("record errors %d, want 1", n)
	}
	if h.newCertificates() != 2 || h.recorded(last) == nil {
		t.Fatalf("%d counted; want a and b", h.newCertificates())
	}
	if err := h.pollCS(); err != nil {
		t.Fatal(err)
	}
	if h.errorCount(ReasonRecord) != 1 {
		t.Fatalf("counted again: the cursor did not move past it")
	}
}
