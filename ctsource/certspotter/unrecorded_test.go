package certspotter

import (
	"path/filepath"
	"testing"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// Cert Spotter: the page with the certificate is recorded without it, and
// the cursor moves past it.
func TestCertspotterSkipsUnrecordableCertificate(t *testing.T) {
	h := newCSHarness(t, "token-0001", "example.com")
	h.Store = sourcetest.OpenLimited(t, filepath.Join(t.TempDir(), "limited.state"))
	h.Env.Recorder.Store = h.Store
	h.SetWatches("example.com")
	h.api.SetPageSize(2)
	h.issueAPI("a.example.com")
	big, err := h.CA.Issue(testpki.Leaf{CN: "big.example.com", DNSNames: sourcetest.ManyNamesUnder("example.com"), SCTs: 2})
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
	if n := h.ErrorCount(ctsource.ReasonRecord); n != 1 {
		t.Fatalf("record errors %d, want 1", n)
	}
	if h.NewCertificates() != 2 || h.Recorded(last) == nil {
		t.Fatalf("%d counted; want a and b", h.NewCertificates())
	}
	if err := h.pollCS(); err != nil {
		t.Fatal(err)
	}
	if h.ErrorCount(ctsource.ReasonRecord) != 1 {
		t.Fatalf("counted again: the cursor did not move past it")
	}
}
