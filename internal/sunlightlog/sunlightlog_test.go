package sunlightlog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"filippo.io/sunlight"
	"golang.org/x/mod/sumdb/note"

	"github.com/ct-exporter/ct_exporter/internal/sunlightlog"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

func TestSubmitAndReadBack(t *testing.T) {
	rootCA, issuer := newPKI(t, "Test Issuing CA", "Test PKI")
	root := rootCA.Cert
	l := sunlightlog.Start(t, root)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	iss, err := issuer.Issue(testpki.Leaf{CN: "www.example.test", DNSNames: []string{"www.example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	preSCT, err := l.AddPreChain(ctx, iss.Precert, issuer.DER, root.Raw)
	if err != nil {
		t.Fatalf("add-pre-chain: %v", err)
	}
	finalSCT, err := l.AddChain(ctx, iss.Final, issuer.DER, root.Raw)
	if err != nil {
		t.Fatalf("add-chain: %v", err)
	}
	if preSCT.LeafIndex == finalSCT.LeafIndex {
		t.Fatalf("both SCTs have leaf index %d", preSCT.LeafIndex)
	}
	wantLogID := sha256.Sum256(l.PublicKey())
	for _, sct := range []*sunlightlog.SCT{preSCT, finalSCT} {
		if sct.LogID != wantLogID || sct.LogID != l.LogID() {
			t.Errorf("SCT log ID %x, want SHA-256 of the public key %x", sct.LogID, wantLogID)
		}
	}
	if err := l.WaitSize(ctx, 2); err != nil {
		t.Fatal(err)
	}

	key, err := x509.ParsePKIXPublicKey(l.PublicKey())
	if err != nil {
		t.Fatalf("PublicKey: %v", err)
	}
	client, err := sunlight.NewClient(&sunlight.ClientConfig{
		MonitoringPrefix: l.MonitoringPrefix(),
		PublicKey:        key,
		UserAgent:        "ct_exporter-test (+https://github.com/ct-exporter/ct_exporter)",
	})
	if err != nil {
		t.Fatal(err)
	}
	checkpoint, signed, err := client.Checkpoint(ctx)
	if err != nil {
		t.Fatalf("checkpoint does not verify with PublicKey(): %v", err)
	}
	if checkpoint.Origin != l.Origin() {
		t.Errorf("checkpoint origin %q, Origin() = %q", checkpoint.Origin, l.Origin())
	}
	if checkpoint.N < 2 {
		t.Fatalf("tree size %d after WaitSize(2)", checkpoint.N)
	}
	if len(signed.Sigs) == 0 {
		t.Fatal("checkpoint has no verified signature")
	}

	var entries []*sunlight.LogEntry
	for i, e := range client.Entries(ctx, checkpoint.Tree, 0) {
		if e.LeafIndex != i {
			t.Errorf("entry at %d says leaf index %d", i, e.LeafIndex)
		}
		entries = append(entries, e)
	}
	if err := client.Err(); err != nil {
		t.Fatalf("reading entries: %v", err)
	}
	if int64(len(entries)) != checkpoint.N || len(entries) != 2 {
		t.Fatalf("read %d entries from a tree of size %d, want 2", len(entries), checkpoint.N)
	}

	pre, final := entryAt(t, entries, preSCT.LeafIndex), entryAt(t, entries, finalSCT.LeafIndex)
	if !pre.IsPrecert {
		t.Errorf("entry %d (the add-pre-chain one) is not a precertificate entry", preSCT.LeafIndex)
	}
	if !bytes.Equal(pre.PreCertificate, iss.Precert) {
		t.Errorf("entry %d does not hold the submitted precertificate", preSCT.LeafIndex)
	}
	if pre.IssuerKeyHash != sha256.Sum256(issuer.Cert.RawSubjectPublicKeyInfo) {
		t.Errorf("precert entry issuer key hash %x is not the issuer's", pre.IssuerKeyHash)
	}
	if final.IsPrecert {
		t.Errorf("entry %d (the add-chain one) is a precertificate entry", finalSCT.LeafIndex)
	}
	if !bytes.Equal(final.Certificate, iss.Final) {
		t.Errorf("entry %d does not hold the submitted certificate", finalSCT.LeafIndex)
	}
	if int64(finalSCT.Timestamp) != final.Timestamp || int64(preSCT.Timestamp) != pre.Timestamp {
		t.Errorf("SCT timestamps %d, %d; entry timestamps %d, %d",
			preSCT.Timestamp, finalSCT.Timestamp, pre.Timestamp, final.Timestamp)
	}
	// The chain fingerprints point at issuers the log serves.
	if len(final.ChainFingerprints) != 2 {
		t.Fatalf("final entry has %d chain fingerprints, want 2", len(final.ChainFingerprints))
	}
	if got, err := client.Issuer(ctx, final.ChainFingerprints[0]); err != nil {
		t.Errorf("issuer: %v", err)
	} else if !bytes.Equal(got.Raw, issuer.DER) {
		t.Errorf("issuer %x is not the issuing CA", final.ChainFingerprints[0])
	}

	// The SCTs are valid (signature, log ID, timestamp) and included.
	for _, sct := range []*sunlightlog.SCT{preSCT, finalSCT} {
		e, _, err := client.CheckInclusion(ctx, checkpoint.Tree, sct.Raw)
		if err != nil {
			t.Errorf("SCT for leaf %d: %v", sct.LeafIndex, err)
		} else if e.LeafIndex != sct.LeafIndex {
			t.Errorf("SCT for leaf %d resolved to entry %d", sct.LeafIndex, e.LeafIndex)
		}
	}
}

// TestPublicKeyIsTheSigningKey checks that PublicKey is what verifies the
// checkpoint, not just any key: another key must not verify it.
func TestPublicKeyIsTheSigningKey(t *testing.T) {
	rootCA, _ := newPKI(t, "Test Issuing CA", "Test PKI")
	root := rootCA.Cert
	a := sunlightlog.Start(t, root)
	b := sunlightlog.Start(t, root)
	if bytes.Equal(a.PublicKey(), b.PublicKey()) {
		t.Fatal("two logs have the same key")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := get(ctx, t, a.MonitoringPrefix()+"/checkpoint")
	if !strings.HasPrefix(string(body), a.Origin()+"\n") {
		t.Fatalf("checkpoint does not start with the origin %q:\n%s", a.Origin(), body)
	}
	for _, tc := range []struct {
		key  []byte
		good bool
	}{{a.PublicKey(), true}, {b.PublicKey(), false}} {
		key, err := x509.ParsePKIXPublicKey(tc.key)
		if err != nil {
			t.Fatal(err)
		}
		v, err := sunlight.NewRFC6962Verifier(a.Origin(), key)
		if err != nil {
			t.Fatal(err)
		}
		_, err = note.Open(body, note.VerifierList(v))
		if tc.good && err != nil {
			t.Errorf("checkpoint does not verify with the log's key: %v", err)
		}
		if !tc.good && err == nil {
			t.Error("checkpoint verifies with another log's key")
		}
	}
}

func TestRejectsUnknownRoot(t *testing.T) {
	root, issuer := newPKI(t, "Test Issuing CA", "Test PKI")
	otherRoot, other := newPKI(t, "Other CA", "Other PKI")
	l := sunlightlog.Start(t, root.Cert)
	iss, err := other.Issue(testpki.Leaf{CN: "x.example.test", DNSNames: []string{"x.example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = l.AddChain(ctx, iss.Final, other.DER, otherRoot.DER)
	var httpErr *sunlightlog.HTTPError
	if !errors.As(err, &httpErr) || httpErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("add-chain with an unknown root: %v, want a 400", err)
	}
	// A precertificate on add-chain is refused too.
	_, err = l.AddChain(ctx, mustIssue(t, issuer).Precert, issuer.DER, root.DER)
	if !errors.As(err, &httpErr) || httpErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("precertificate on add-chain: %v, want a 400", err)
	}
}

func TestRestart(t *testing.T) {
	rootCA, issuer := newPKI(t, "Test Issuing CA", "Test PKI")
	root := rootCA.Cert
	l := sunlightlog.Start(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := l.AddChain(ctx, mustIssue(t, issuer).Final, issuer.DER, root.Raw); err != nil {
		t.Fatal(err)
	}
	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(l.MonitoringPrefix() + "/checkpoint"); err == nil {
		t.Fatal("the log still serves after Stop")
	}
	if err := l.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	sct, err := l.AddChain(ctx, mustIssue(t, issuer).Final, issuer.DER, root.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if sct.LeafIndex != 1 {
		t.Errorf("first entry after restart has index %d, want 1", sct.LeafIndex)
	}
	if err := l.WaitSize(ctx, 2); err != nil {
		t.Fatal(err)
	}
}

// newPKI makes a root and an issuing CA under it. (testpki.NewIssuer does
// the same but keeps the root to itself, and the log must be told the root.)
func newPKI(t *testing.T, cn, org string) (root, issuer *testpki.CA) {
	t.Helper()
	return testpki.NewChain(t, cn+" Root", org, cn, org)
}

func mustIssue(t *testing.T, ca *testpki.CA) *testpki.Issued {
	t.Helper()
	iss, err := ca.Issue(testpki.Leaf{CN: "a.example.test", DNSNames: []string{"a.example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func entryAt(t *testing.T, entries []*sunlight.LogEntry, i int64) *sunlight.LogEntry {
	t.Helper()
	if i < 0 || i >= int64(len(entries)) {
		t.Fatalf("SCT leaf index %d is not in the %d entries read", i, len(entries))
	}
	return entries[i]
}

func get(ctx context.Context, t *testing.T, url string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return buf.Bytes()
}
