package ctsource_test

import (
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/certspotter"
	"github.com/ct-exporter/ct_exporter/ctsource/crtsh"
	"github.com/ct-exporter/ct_exporter/ctsource/ctlog"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/certspotterfake"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/oddcert"
	"github.com/ct-exporter/ct_exporter/internal/staticlogfake"
)

// All four kinds of source into one state file: each issuance once.
func TestOddCertificatesThroughEverySource(t *testing.T) {
	o := sourcetest.NewOddEnv(t)
	psc := oddcert.PSC()
	cases := append(oddcert.Cases(), psc.Precert, psc.Final)

	crtshFake := crtshfake.New()
	defer crtshFake.Close()
	cs := certspotterfake.New()
	defer cs.Close()
	for _, tc := range oddcert.Cases() {
		if !tc.Malformed {
			crtshFake.Add(tc.DER)
			if _, err := cs.Add(tc.DER); err != nil {
				t.Fatalf("%s: %v", tc.Name, err)
			}
		}
	}
	for _, der := range [][]byte{psc.CA, psc.PSC, psc.Precert.DER, psc.Final.DER} {
		crtshFake.Add(der)
	}
	if _, err := cs.AddPrecertWithPSC(psc.Precert.DER, psc.PSC); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Add(psc.Final.DER); err != nil {
		t.Fatal(err)
	}
	rfc := ctlogfake.New(t)
	static := staticlogfake.New(t)
	for _, e := range sourcetest.OddLogEntries(t) {
		if e.Case.Precert {
			rfc.AddPrecertEntry(e.TBS, e.IssuerKey, e.Case.DER, e.Chain...)
			static.AddPrecert(e.TBS, e.Case.DER, e.IssuerKey, e.Chain...)
		} else {
			rfc.AddCert(e.Case.DER, e.Chain...)
			static.AddCert(e.Case.DER, e.Chain...)
		}
	}
	rfc.Publish()
	static.Publish()
	opts := ctlog.Options{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", Workers: 2, BatchSize: 5}
	rl, err := ctlog.NewRFC6962("rfc6962", rfc.URL+"/", rfc.PublicKeyDER(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	sl, err := ctlog.NewStatic("static", static.MonitoringPrefix(), static.PublicKeyDER(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	cr, err := crtsh.New("crtsh", crtshFake.URL, time.Minute, 5*time.Second, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	csrc, err := certspotter.New("certspotter", cs.URL, "", time.Minute, 5*time.Second, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer csrc.Close()
	// The search sources first: what they record, the logs then find known.
	for _, src := range []ctsource.Source{cr, csrc} {
		if err := src.Poll(t.Context(), o.Env); err != nil {
			t.Fatalf("%s: %v", src.Name(), err)
		}
	}
	sourcetest.PollUntilCaughtUp(t, rl, o.Env, func() int64 { return rl.Status().Position }, rfc.Size())
	sourcetest.PollUntilCaughtUp(t, sl, o.Env, func() int64 { return sl.Status().Position }, static.Size())
	sourcetest.CheckOddState(t, o.Store, sourcetest.OddExpected(cases, sourcetest.EveryWatch))
}
