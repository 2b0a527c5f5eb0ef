package certspotter

import (
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/certspotterfake"
	"github.com/ct-exporter/ct_exporter/internal/oddcert"
)

func TestOddCertificatesThroughCertspotter(t *testing.T) {
	fake := certspotterfake.New()
	defer fake.Close()
	fake.SetPageSize(7)
	for _, tc := range oddcert.Cases() {
		if _, err := fake.Add(tc.DER); err != nil && !tc.Malformed {
			t.Fatalf("%s: the fake refuses it: %v", tc.Name, err)
		}
	}
	o := sourcetest.NewOddEnv(t)
	src, err := New("certspotter", fake.URL, "", time.Minute, 5*time.Second, 0, nil)
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
	poll()
	sourcetest.CheckOddState(t, o.Store, sourcetest.OddExpected(oddcert.Cases(), sourcetest.Searchable(true)))

	// Only the precertificate a PSC signed is known: the API gives the
	// final identity and the CA as issuer; then the final certificate.
	psc := oddcert.PSC()
	if _, err := fake.AddPrecertWithPSC(psc.Precert.DER, psc.PSC); err != nil {
		t.Fatal(err)
	}
	poll()
	if _, err := fake.Add(psc.Final.DER); err != nil {
		t.Fatal(err)
	}
	poll()
	sourcetest.CheckOddState(t, o.Store, sourcetest.OddExpected(append(oddcert.Cases(), psc.Precert, psc.Final), sourcetest.Searchable(true)))
}
