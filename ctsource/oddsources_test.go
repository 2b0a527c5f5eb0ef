package ctsource

import (
	"crypto/sha256"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/internal/certspotterfake"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/oddcert"
	"github.com/ct-exporter/ct_exporter/internal/staticlogfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// The adversarial corpus end to end, through every kind of source, each
// into a real state file: every certificate that names a watch is recorded
// once, for exactly the watches and with the verdicts the corpus expects,
// with a parse error when the strict parser refuses it; only entries with
// no readable name are malformed.

// oddEnv is a state file and what a source polls with, judged by the
// corpus's watches.
type oddEnv struct {
	store *state.Store
	env   *Env
}

func newOddEnv(t *testing.T) *oddEnv {
	t.Helper()
	set := oddPolicy(t)
	store, err := state.Open(filepath.Join(t.TempDir(), "odd.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 1000, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return Verdict(set, w, is)
	}}); err != nil {
		t.Fatal(err)
	}
	return &oddEnv{store: store, env: &Env{
		Recorder:   &Recorder{Store: store, Policy: func() *watch.Set { return set }},
		CountError: func(string) {},
		Logger:     promslog.NewNopLogger(),
	}}
}

// oddExpectation is what a source must have recorded of one issuance.
type oddExpectation struct {
	name       string            // the case (or cases) it comes from
	verdicts   map[string]string // watch → verdict
	issuer     string            // label
	parseError bool
	certSHA256 [][32]byte // the certificates whose hash may be its cert_sha256
}

// oddExpected gathers the corpus by issuance, keeping the watches keep(tc, watch) allows.
func oddExpected(cases []oddcert.Case, keep func(tc oddcert.Case, w string) bool) map[[32]byte]*oddExpectation {
	out := map[[32]byte]*oddExpectation{}
	for _, tc := range cases {
		v := map[string]string{}
		for w, verdict := range tc.Verdicts {
			if keep(tc, w) {
				v[w] = verdict
			}
		}
		if tc.Malformed || len(v) == 0 {
			continue
		}
		e := out[tc.TBSSHA256]
		if e == nil {
			e = &oddExpectation{name: tc.Name, verdicts: v, issuer: tc.IssuerLabel}
			out[tc.TBSSHA256] = e
		} else {
			e.name += "+" + tc.Name
			maps.Copy(e.verdicts, v)
		}
		e.parseError = e.parseError || tc.StrictFails
		e.certSHA256 = append(e.certSHA256, sha256.Sum256(tc.DER))
	}
	return out
}

// checkOddState compares the state file with the expectations: each
// issuance once, with its watches and verdicts; counters that add up.
func checkOddState(t *testing.T, store *state.Store, want map[[32]byte]*oddExpectation) {
	t.Helper()
	pairs, parseErrors := 0, map[string]uint64{}
	err := store.View(func(tx *state.Tx) error {
		for tbs, e := range want {
			is, err := tx.Issuance(tbs)
			if err != nil {
				return err
			}
			if is == nil {
				t.Errorf("%s: not recorded", e.name)
				continue
			}
			got := map[string]string{}
			for _, m := range is.Watches {
				got[m.Watch] = m.Verdict.String()
			}
			if !maps.Equal(got, e.verdicts) {
				t.Errorf("%s: recorded for %v, want %v", e.name, got, e.verdicts)
			}
			if is.Issuer.Label() != e.issuer {
				t.Errorf("%s: issuer %q, want %q", e.name, is.Issuer.Label(), e.issuer)
			}
			if (is.ParseError != "") != e.parseError {
				t.Errorf("%s: parse error %q, want one: %v", e.name, is.ParseError, e.parseError)
			}
			// Every source here gives the certificate, and a log's
			// precertificate matches its proven TBSCertificate (a PSC's
			// rewrite included).
			if !slices.Contains(e.certSHA256, is.CertSHA256) {
				t.Errorf("%s: cert_sha256 %x is none of its certificates'", e.name, is.CertSHA256)
			}
			pairs += len(e.verdicts)
			if e.parseError {
				for w := range e.verdicts {
					parseErrors[w]++
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	snap := store.Snapshot()
	var counted uint64
	gotParse := map[string]uint64{}
	for _, c := range snap.Counters {
		switch c.Name {
		case state.CounterNewCertificates:
			counted += c.Value
		case state.CounterParseErrors:
			gotParse[c.Labels[0]] = c.Value
		}
	}
	if counted != uint64(pairs) || snap.Certificates != uint64(len(want)) {
		t.Errorf("counted %d issuance-watch pairs in %d issuances, want %d in %d", counted, snap.Certificates, pairs, len(want))
	}
	if !maps.Equal(gotParse, parseErrors) {
		t.Errorf("parse errors by watch %v, want %v", gotParse, parseErrors)
	}
	t.Logf("%d issuances, %d issuance-watch pairs, parse errors by watch %v", len(want), pairs, gotParse)
}

// oddLogEntries are the corpus as a log holds it. A precertificate's entry
// is its TBSCertificate without the poison, rebuilt by ct-go as RFC 6962
// §3.2 says when a PSC signed it (the log's work, done here by another
// implementation than the one under test).
type oddLogEntry struct {
	tc        oddcert.Case
	tbs       []byte // precert entries: the TBSCertificate the log holds
	issuerKey [32]byte
	chain     [][]byte
}

func oddLogEntries(t *testing.T) []oddLogEntry {
	t.Helper()
	psc := oddcert.PSC()
	var out []oddLogEntry
	for _, tc := range append(oddcert.Cases(), psc.Precert, psc.Final) {
		e := oddLogEntry{tc: tc, chain: [][]byte{tc.Issuer}}
		if tc.Name == psc.Precert.Name {
			e.chain = append(e.chain, psc.CA)
		}
		if tc.Precert {
			pre, err := ctx509.ParseCertificate(tc.DER)
			if err != nil {
				t.Fatalf("%s: %v", tc.Name, err)
			}
			var preIssuer *ctx509.Certificate
			issuer, err := ctx509.ParseCertificate(tc.Issuer)
			if err != nil {
				t.Fatalf("%s: issuer: %v", tc.Name, err)
			}
			keyOf := issuer
			if tc.Name == psc.Precert.Name {
				preIssuer = issuer
				if keyOf, err = ctx509.ParseCertificate(psc.CA); err != nil {
					t.Fatal(err)
				}
			}
			if e.tbs, err = ctx509.BuildPrecertTBS(pre.RawTBSCertificate, preIssuer); err != nil {
				t.Fatalf("%s: %v", tc.Name, err)
			}
			e.issuerKey = sha256.Sum256(keyOf.RawSubjectPublicKeyInfo)
		}
		out = append(out, e)
	}
	return out
}

func oddLogCases() []oddcert.Case {
	psc := oddcert.PSC()
	return append(oddcert.Cases(), psc.Precert, psc.Final)
}

func everyWatch(oddcert.Case, string) bool { return true }

func malformedCases() uint64 {
	n := uint64(0)
	for _, tc := range oddcert.Cases() {
		if tc.Malformed {
			n++
		}
	}
	return n
}

// pollUntilCaughtUp polls a log until it has processed size entries.
func pollUntilCaughtUp(t *testing.T, l *CTLog, env *Env, size int64) {
	t.Helper()
	for i := 0; i < 5 && l.Status().Position < size; i++ {
		if err := l.Poll(t.Context(), env); err != nil {
			t.Fatalf("poll: %v", err)
		}
	}
	if s := l.Status(); s.Position != size {
		t.Fatalf("position %d of %d after 5 polls", s.Position, size)
	}
}

func logCounter(store *state.Store, name string) uint64 {
	for _, c := range store.Snapshot().Counters {
		if c.Name == name {
			return c.Value
		}
	}
	return 0
}

func TestOddCertificatesThroughRFC6962Log(t *testing.T) {
	fake := ctlogfake.New(t)
	for _, e := range oddLogEntries(t) {
		if e.tc.Precert {
			fake.AddPrecertEntry(e.tbs, e.issuerKey, e.tc.DER, e.chain...)
		} else {
			fake.AddCert(e.tc.DER, e.chain...)
		}
	}
	fake.Publish()
	o := newOddEnv(t)
	l, err := NewRFC6962Log("odd", fake.URL+"/", fake.PublicKeyDER(), LogOptions{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", Workers: 2, BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pollUntilCaughtUp(t, l, o.env, fake.Size())
	checkOddState(t, o.store, oddExpected(oddLogCases(), everyWatch))
	if got := logCounter(o.store, CounterLogMalformed); got != malformedCases() {
		t.Errorf("malformed entries %d, want %d", got, malformedCases())
	}
}

func TestOddCertificatesThroughStaticLog(t *testing.T) {
	fake := staticlogfake.New(t)
	for _, e := range oddLogEntries(t) {
		if e.tc.Precert {
			fake.AddPrecert(e.tbs, e.tc.DER, e.issuerKey, e.chain...)
		} else {
			fake.AddCert(e.tc.DER, e.chain...)
		}
	}
	fake.Publish()
	o := newOddEnv(t)
	l, err := NewStaticLog("odd", fake.MonitoringPrefix(), fake.PublicKeyDER(), LogOptions{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pollUntilCaughtUp(t, l, o.env, fake.Size())
	checkOddState(t, o.store, oddExpected(oddLogCases(), everyWatch))
	if got := logCounter(o.store, CounterLogMalformed); got != malformedCases() {
		t.Errorf("malformed entries %d, want %d", got, malformedCases())
	}
}

// searchable is what a search source can find: its searches are by domain
// (IP watches cannot be searched), and a certificate found by one watch's
// search is recorded for every watch it concerns. crt.sh searches names
// as text: an IDN name it stores in UTF-8 is not found by the A-label
// watch, so the bücher.example cases are found by the Cert Spotter API
// (which indexes names in punycode) only.
func searchable(punycode bool) func(tc oddcert.Case, w string) bool {
	return func(tc oddcert.Case, _ string) bool {
		for w := range tc.Verdicts {
			switch {
			case strings.Contains(w, "/"):
			case strings.HasPrefix(w, "xn--") && !punycode:
			default:
				return true
			}
		}
		return false
	}
}

func TestOddCertificatesThroughCrtsh(t *testing.T) {
	fake := crtshfake.New()
	defer fake.Close()
	for _, tc := range oddcert.Cases() {
		if !tc.Malformed {
			fake.Add(tc.DER)
		}
	}
	o := newOddEnv(t)
	src, err := NewCrtsh("crtsh", fake.URL, time.Minute, 5*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	poll := func() {
		t.Helper()
		if err := src.Poll(t.Context(), o.env); err != nil {
			t.Fatalf("poll: %v", err)
		}
	}
	poll()
	poll() // nothing new, nothing counted twice
	checkOddState(t, o.store, oddExpected(oddcert.Cases(), searchable(false)))

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
	checkOddState(t, o.store, oddExpected(append(oddcert.Cases(), psc.Precert, psc.Final), searchable(false)))
}

func TestOddCertificatesThroughCertspotter(t *testing.T) {
	fake := certspotterfake.New()
	defer fake.Close()
	fake.SetPageSize(7)
	for _, tc := range oddcert.Cases() {
		if _, err := fake.Add(tc.DER); err != nil && !tc.Malformed {
			t.Fatalf("%s: the fake refuses it: %v", tc.Name, err)
		}
	}
	o := newOddEnv(t)
	src, err := NewCertspotter("certspotter", fake.URL, "", time.Minute, 5*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	poll := func() {
		t.Helper()
		if err := src.Poll(t.Context(), o.env); err != nil {
			t.Fatalf("poll: %v", err)
		}
	}
	poll()
	poll()
	checkOddState(t, o.store, oddExpected(oddcert.Cases(), searchable(true)))

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
	checkOddState(t, o.store, oddExpected(append(oddcert.Cases(), psc.Precert, psc.Final), searchable(true)))
}

// All four kinds of source into one state file: each issuance once.
func TestOddCertificatesThroughEverySource(t *testing.T) {
	o := newOddEnv(t)
	psc := oddcert.PSC()
	cases := append(oddcert.Cases(), psc.Precert, psc.Final)

	crtsh := crtshfake.New()
	defer crtsh.Close()
	cs := certspotterfake.New()
	defer cs.Close()
	for _, tc := range oddcert.Cases() {
		if !tc.Malformed {
			crtsh.Add(tc.DER)
			if _, err := cs.Add(tc.DER); err != nil {
				t.Fatalf("%s: %v", tc.Name, err)
			}
		}
	}
	for _, der := range [][]byte{psc.CA, psc.PSC, psc.Precert.DER, psc.Final.DER} {
		crtsh.Add(der)
	}
	if _, err := cs.AddPrecertWithPSC(psc.Precert.DER, psc.PSC); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Add(psc.Final.DER); err != nil {
		t.Fatal(err)
	}
	rfc := ctlogfake.New(t)
	static := staticlogfake.New(t)
	for _, e := range oddLogEntries(t) {
		if e.tc.Precert {
			rfc.AddPrecertEntry(e.tbs, e.issuerKey, e.tc.DER, e.chain...)
			static.AddPrecert(e.tbs, e.tc.DER, e.issuerKey, e.chain...)
		} else {
			rfc.AddCert(e.tc.DER, e.chain...)
			static.AddCert(e.tc.DER, e.chain...)
		}
	}
	rfc.Publish()
	static.Publish()
	opts := LogOptions{Interval: time.Minute, Timeout: 5 * time.Second, Start: "beginning", Workers: 2, BatchSize: 5}
	rl, err := NewRFC6962Log("rfc6962", rfc.URL+"/", rfc.PublicKeyDER(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	sl, err := NewStaticLog("static", static.MonitoringPrefix(), static.PublicKeyDER(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	cr, err := NewCrtsh("crtsh", crtsh.URL, time.Minute, 5*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	csrc, err := NewCertspotter("certspotter", cs.URL, "", time.Minute, 5*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer csrc.Close()
	// The search sources first: what they record, the logs then find known.
	for _, src := range []Source{cr, csrc} {
		if err := src.Poll(t.Context(), o.env); err != nil {
			t.Fatalf("%s: %v", src.Name(), err)
		}
	}
	pollUntilCaughtUp(t, rl, o.env, rfc.Size())
	pollUntilCaughtUp(t, sl, o.env, static.Size())
	checkOddState(t, o.store, oddExpected(cases, everyWatch))
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
	pollUntilCaughtUp(t, l, h.env, h.fake.Size())
	if got := h.counter(CounterLogMalformed); got != 0 {
		t.Fatalf("%d malformed", got)
	}
	err := h.store.View(func(tx *state.Tx) error {
		for _, e := range entries {
			stripped, _, err := StripTBS(e.tbs)
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
	h.t.Helper()
	iss, err := h.ca.Issue(testpki.Leaf{DNSNames: []string{name}})
	if err != nil {
		h.t.Fatal(err)
	}
	p, err := ctx509.ParseCertificate(iss.Precert)
	if err != nil {
		h.t.Fatal(err)
	}
	tbs, err := ctx509.RemoveCTPoison(p.RawTBSCertificate)
	if err != nil {
		h.t.Fatal(err)
	}
	return precertFixture{tbs: tbs, pre: iss.Precert}
}

func appendUint24(b, data []byte) []byte {
	n := len(data)
	return append(append(b, byte(n>>16), byte(n>>8), byte(n)), data...)
}
