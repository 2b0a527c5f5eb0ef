package crtsh

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// crt.sh: a certificate that cannot be recorded is counted once and marked
// processed, so that it is neither downloaded again nor fails the polls; the
// certificates after it are recorded.
func TestCrtshSkipsUnrecordableCertificate(t *testing.T) {
	h := newHarness(t)
	h.Store = sourcetest.OpenLimited(t, filepath.Join(t.TempDir(), "limited.state"))
	h.Env.Recorder.Store = h.Store
	h.SetWatches("example.com")
	logged := &sourcetest.LockedLog{}
	h.Env.Logger = slog.New(slog.NewTextHandler(logged, nil))

	big, err := h.CA.Issue(testpki.Leaf{CN: "big.example.com", DNSNames: sourcetest.ManyNamesUnder("example.com"), SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	h.fake.Add(big.Final)
	h.issue("www.example.com")
	if err := h.poll(); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if n := h.ErrorCount(ctsource.ReasonRecord); n != 1 {
		t.Fatalf("record errors %d, want 1", n)
	}
	if h.Store.Snapshot().Certificates != 1 || h.NewCertificates() != 1 {
		t.Fatalf("%d issuances, %d counted; want www.example.com's", h.Store.Snapshot().Certificates, h.NewCertificates())
	}
	c, err := cert.Parse(big.Final)
	if err != nil {
		t.Fatal(err)
	}
	sourcetest.CheckUnrecordedLogged(t, logged.String(), c.TBSSHA256, "example.com")
	_, downloads := h.requests()
	if err := h.poll(); err != nil {
		t.Fatal(err)
	}
	if _, again := h.requests(); again != downloads || h.ErrorCount(ctsource.ReasonRecord) != 1 {
		t.Fatalf("second poll: %d downloads (was %d), %d record errors", again, downloads, h.ErrorCount(ctsource.ReasonRecord))
	}
}
