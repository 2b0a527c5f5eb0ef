package ctlog

import (
	"crypto/sha256"
	"testing"
	"time"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/sourcetest"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/staticlogfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
)

func TestOddCertificatesThroughRFC6962Log(t *testing.T) {
	fake := ctlogfake.New(t)
	for _, e := range sourcetest.OddLogEntries(t) {
		if e.Case.Precert {
			fake.AddPrecertEntry(e.TBS, e.IssuerKey, e.Case.DER, e.Chain...)
		} else {
			fake.AddCert(e.Case.DER, e.Chain...)
		}
	}
	fake.Publish()
	o := sourcetest.NewOddEnv(t)
	l, err := NewRFC6962("odd", fake.URL+"/", fake.PublicKeyDER(), Options{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", Workers: 2, BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sourcetest.PollUntilCaughtUp(t, l, o.Env, func() int64 { return l.Status().Position }, fake.Size())
	sourcetest.CheckOddState(t, o.Store, sourcetest.OddExpected(sourcetest.OddLogCases(), sourcetest.EveryWatch))
	if got := sourcetest.LogCounter(o.Store, state.CounterLogMalformed); got != sourcetest.MalformedCases() {
		t.Errorf("malformed entries %d, want %d", got, sourcetest.MalformedCases())
	}
}

func TestOddCertificatesThroughStaticLog(t *testing.T) {
	fake := staticlogfake.New(t)
	for _, e := range sourcetest.OddLogEntries(t) {
		if e.Case.Precert {
			fake.AddPrecert(e.TBS, e.Case.DER, e.IssuerKey, e.Chain...)
		} else {
			fake.AddCert(e.Case.DER, e.Chain...)
		}
	}
	fake.Publish()
	o := sourcetest.NewOddEnv(t)
	l, err := NewStatic("odd", fake.MonitoringPrefix(), fake.PublicKeyDER(), Options{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sourcetest.PollUntilCaughtUp(t, l, o.Env, func() int64 { return l.Status().Position }, fake.Size())
	sourcetest.CheckOddState(t, o.Store, sourcetest.OddExpected(sourcetest.OddLogCases(), sourcetest.EveryWatch))
	if got := sourcetest.LogCounter(o.Store, state.CounterLogMalformed); got != sourcetest.MalformedCases() {
		t.Errorf("malformed entries %d, want %d", got, sourcetest.MalformedCases())
	}
}

// A precert entry is recorded from the TBSCertificate the tree proves,
// whatever its extra_data holds (nothing proves extra_data); cert_sha256
// comes from the precertificate there only when its TBSCertificate is the
// proven one.
func TestPrecertEntryWhateverItsExtraData(t *testing.T) {
	h := newLogHarness(t)
	a, b := h.precertTBS("a.example.com"), h.precertTBS("b.example.com")
	chainEntry := func(pre []byte) []byte {
		e := appendUint24(nil, pre)
		return append(e, 0, 0, 0) // an empty certificate_chain
	}
	entries := []struct {
		name  string
		tbs   []byte
		extra []byte
		cert  [32]byte // the cert_sha256 expected
	}{
		{"matching precertificate", a.tbs, chainEntry(a.pre), sha256.Sum256(a.pre)},
		{"no extra_data", h.precertTBS("c.example.com").tbs, nil, [32]byte{}},
		{"garbage extra_data", h.precertTBS("d.example.com").tbs, []byte("not a PrecertChainEntry"), [32]byte{}},
		{"another issuance's precertificate", b.tbs, chainEntry(a.pre), [32]byte{}},
	}
	for _, e := range entries {
		h.fake.AddRawPrecert(e.tbs, e.extra)
	}
	h.fake.Publish()
	l := h.follower("beginning")
	sourcetest.PollUntilCaughtUp(t, l, h.Env, func() int64 { return l.Status().Position }, h.fake.Size())
	if got := h.Counter(state.CounterLogMalformed); got != 0 {
		t.Fatalf("%d malformed", got)
	}
	err := h.Store.View(func(tx *state.Tx) error {
		for _, e := range entries {
			stripped, _, err := cert.StripTBS(e.tbs)
			if err != nil {
				return err
			}
			is, err := tx.Issuance(sha256.Sum256(stripped))
			if err != nil {
				return err
			}
			if is == nil || len(is.Watches) != 1 {
				t.Errorf("%s: not recorded for example.com: %+v", e.name, is)
				continue
			}
			if is.CertSHA256 != e.cert {
				t.Errorf("%s: cert_sha256 %x, want %x", e.name, is.CertSHA256, e.cert)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type precertFixture struct{ tbs, pre []byte }

// precertTBS issues a precertificate for name and returns it with the
// TBSCertificate a log holds for it (poison removed, by ct-go).
func (h *logHarness) precertTBS(name string) precertFixture {
	h.T.Helper()
	iss, err := h.CA.Issue(testpki.Leaf{DNSNames: []string{name}})
	if err != nil {
		h.T.Fatal(err)
	}
	p, err := ctx509.ParseCertificate(iss.Precert)
	if err != nil {
		h.T.Fatal(err)
	}
	tbs, err := ctx509.RemoveCTPoison(p.RawTBSCertificate)
	if err != nil {
		h.T.Fatal(err)
	}
	return precertFixture{tbs: tbs, pre: iss.Precert}
}

func appendUint24(b, data []byte) []byte {
	n := len(data)
	return append(append(b, byte(n>>16), byte(n>>8), byte(n)), data...)
}
