package ctlog

import (
	"encoding/hex"
	"maps"
	"slices"
	"testing"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/oddcert"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// oddCases is the corpus with the PSC issuance's two certificates.
func oddCases() []oddcert.Case {
	psc := oddcert.PSC()
	return append(oddcert.Cases(), psc.Final)
}

// Every odd certificate is read from its DER: the names, identity, key,
// issuer, validity and SCTs the corpus expects, the watches and verdicts
// it expects, and a parse error exactly when the strict parser refuses it;
// only one from which no name can be read is malformed.
func TestOddCertificates(t *testing.T) {
	set := sourcetest.OddPolicy(t)
	rec := &ctsource.Recorder{Policy: func() *watch.Set { return set }}
	m := matcher{set: set}
	for _, tc := range oddCases() {
		t.Run(tc.Name, func(t *testing.T) {
			e := rawEntry{der: tc.DER}
			c, bad := m.match(&e)
			if tc.Malformed {
				if !bad || c != nil {
					t.Fatalf("malformed: bad %v, certificate %v", bad, c != nil)
				}
				return
			}
			if bad {
				t.Fatal("counted malformed")
			}
			if (c != nil) != (len(tc.Verdicts) > 0) {
				t.Fatalf("matched %v, want %v (verdicts %v)", c != nil, len(tc.Verdicts) > 0, tc.Verdicts)
			}
			if c == nil {
				var err error
				if c, err = cert.Read(tc.DER); err != nil {
					t.Fatal(err)
				}
			}
			got := map[string]string{}
			var commit state.Commit
			rec.Observe(&commit, c)
			for _, m := range commit.Observations[0].Matches {
				got[m.Watch] = m.Verdict.String()
			}
			if !maps.Equal(got, tc.Verdicts) {
				t.Errorf("verdicts %v, want %v", got, tc.Verdicts)
			}
			checkOddFields(t, c, tc)
		})
	}
}

func checkOddFields(t *testing.T, c *cert.Certificate, tc oddcert.Case) {
	t.Helper()
	if c.TBSSHA256 != tc.TBSSHA256 {
		t.Errorf("tbs_sha256 %x, want %x", c.TBSSHA256, tc.TBSSHA256)
	}
	if c.SPKISHA256 != tc.SPKISHA256 {
		t.Errorf("spki_sha256 %x, want %x", c.SPKISHA256, tc.SPKISHA256)
	}
	if c.Serial != tc.Serial {
		t.Errorf("serial %q, want %q", c.Serial, tc.Serial)
	}
	if c.Issuer.DN != tc.IssuerDN || c.Issuer.Label() != tc.IssuerLabel {
		t.Errorf("issuer %q (%q), want %q (%q)", watch.Escape(c.Issuer.DN), c.Issuer.Label(), tc.IssuerDN, tc.IssuerLabel)
	}
	if !c.NotBefore.Equal(tc.NotBefore) || !c.NotAfter.Equal(tc.NotAfter) {
		t.Errorf("validity %v – %v, want %v – %v", c.NotBefore, c.NotAfter, tc.NotBefore, tc.NotAfter)
	}
	if c.EmbeddedSCTs != tc.SCTs || c.Precert != tc.Precert {
		t.Errorf("SCTs %d, precert %v; want %d, %v", c.EmbeddedSCTs, c.Precert, tc.SCTs, tc.Precert)
	}
	if (c.ParseError != "") != tc.StrictFails {
		t.Errorf("parse error %q, but the strict parser fails: %v", c.ParseError, tc.StrictFails)
	}
	names := c.Names()
	for _, n := range tc.Names {
		if !slices.Contains(names, n) {
			t.Errorf("name %q not recorded: %q", n, names)
		}
	}
	for _, a := range tc.IPs {
		if !slices.Contains(c.IPAddresses, a) {
			t.Errorf("IP %v not recorded: %v", a, c.IPAddresses)
		}
	}
	if testing.Verbose() {
		t.Logf("%s: names %q, issuer %q, parse error %q", hex.EncodeToString(c.TBSSHA256[:4]), names, c.Issuer.Label(), c.ParseError)
	}
}
