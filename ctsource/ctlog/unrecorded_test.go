package ctlog

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// A certificate the state cannot record does not fail its batch: a CT log
// follower commits the batch without it, moves its position past it and
// records what comes after; it is counted once, in reason="record".
func TestCTLogSkipsUnrecordableCertificate(t *testing.T) {
	h := newLogHarness(t)
	h.Store = sourcetest.OpenLimited(t, filepath.Join(t.TempDir(), "limited.state"))
	h.Env.Recorder.Store = h.Store
	if err := h.Store.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 100, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return h.Set.Verdict(w, is.Candidate())
	}}); err != nil {
		t.Fatal(err)
	}
	logged := &sourcetest.LockedLog{}
	h.Env.Logger = slog.New(slog.NewTextHandler(logged, nil))

	h.noise(3)
	h.issue("before.example.com")
	// In the middle of a batch of 7 (entries 5 to 11).
	big, err := h.CA.Issue(testpki.Leaf{DNSNames: sourcetest.ManyNamesUnder("example.com"), SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	h.fake.AddCert(big.Final, h.CA.DER)
	h.noise(2)
	h.issue("after.example.com")
	h.noise(4)
	h.fake.Publish()

	l := h.follower("beginning")
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if got, size := h.position(), h.fake.Size(); got != size {
		t.Fatalf("position %d, want %d: the log stopped at the certificate", got, size)
	}
	if n := h.Errors[ctsource.ReasonRecord]; n != 1 {
		t.Fatalf("record errors %d, want 1", n)
	}
	snap := h.Store.Snapshot()
	if snap.Certificates != 2 || h.Counter(state.CounterNewCertificates) != 2 {
		t.Fatalf("%d issuances, %d counted; want before and after", snap.Certificates, h.Counter(state.CounterNewCertificates))
	}
	c, err := cert.Parse(big.Final)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Store.View(func(tx *state.Tx) error {
		if is, _ := tx.Issuance(c.TBSSHA256); is != nil {
			t.Error("the certificate over the limit is stored")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sourcetest.CheckUnrecordedLogged(t, logged.String(), c.TBSSHA256, "example.com")

	// The next poll goes on from there, and counts nothing again.
	h.issue("later.example.com")
	h.fake.Publish()
	if err := l.Poll(context.Background(), h.Env); err != nil {
		t.Fatal(err)
	}
	if h.Store.Snapshot().Certificates != 3 || h.Errors[ctsource.ReasonRecord] != 1 || h.position() != h.fake.Size() {
		t.Fatalf("second poll: %d issuances, %d record errors, position %d of %d",
			h.Store.Snapshot().Certificates, h.Errors[ctsource.ReasonRecord], h.position(), h.fake.Size())
	}
}
