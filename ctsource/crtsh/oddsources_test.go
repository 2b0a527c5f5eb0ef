package crtsh

import (
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/oddcert"
)

func TestOddCertificatesThroughCrtsh(t *testing.T) {
	fake := crtshfake.New()
	defer fake.Close()
	for _, tc := range oddcert.Cases() {
		if !tc.Malformed {
			fake.Add(tc.DER)
		}
	}
	o := sourcetest.NewOddEnv(t)
	src, err := New("crtsh", fake.URL, time.Minute, 5*time.Second, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	poll := func() {
		t.Helper()
		if err := src.Poll(t.Context(), o.Env); err != nil {
			t.Fatalf("poll: %v", err)
		}
	}
	poll()
	poll() // nothing new, nothing counted twice
	sourcetest.CheckOddState(t, o.Store, sourcetest.OddExpected(oddcert.Cases(), sourcetest.Searchable(false)))

	// A precertificate a PSC signed: crt.sh has the PSC (logged in its
	// chain), found by key identifier; the issuance is the final
	// certificate's, its issuer the CA, before the final certificate exists.
	psc := oddcert.PSC()
	fake.Add(psc.CA)
	fake.Add(psc.PSC)
	fake.Add(psc.Precert.DER)
	poll()
	fake.Add(psc.Final.DER)
	poll()
	sourcetest.CheckOddState(t, o.Store, sourcetest.OddExpected(append(oddcert.Cases(), psc.Precert, psc.Final), sourcetest.Searchable(false)))
}
