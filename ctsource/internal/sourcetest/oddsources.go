package sourcetest

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

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/internal/oddcert"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// The adversarial corpus end to end, through every kind of source, each
// into a real state file: every certificate that names a watch is recorded
// once, for exactly the watches and with the verdicts the corpus expects,
// with a parse error when the strict parser refuses it; only entries with
// no readable name are malformed.

// OddEnv is a state file and what a source polls with, judged by the
// corpus's watches.
type OddEnv struct {
	Store *state.Store
	Env   *ctsource.Env
}

func NewOddEnv(t *testing.T) *OddEnv {
	t.Helper()
	set := OddPolicy(t)
	store, err := state.Open(filepath.Join(t.TempDir(), "odd.state"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.SetPolicy(state.Policy{RecentWindow: time.Hour, SeriesLimit: 1000, Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
		return set.Verdict(w, is.Candidate())
	}}); err != nil {
		t.Fatal(err)
	}
	return &OddEnv{Store: store, Env: &ctsource.Env{
		Recorder: &ctsource.Recorder{Store: store, Policy: func() *watch.Set { return set }},
		Logger:   promslog.NewNopLogger(),
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

// OddExpected gathers the corpus by issuance, keeping the watches keep(tc, watch) allows.
func OddExpected(cases []oddcert.Case, keep func(tc oddcert.Case, w string) bool) map[[32]byte]*oddExpectation {
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

// CheckOddState compares the state file with the expectations: each
// issuance once, with its watches and verdicts; counters that add up.
func CheckOddState(t *testing.T, store *state.Store, want map[[32]byte]*oddExpectation) {
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
	Case      oddcert.Case
	TBS       []byte // precert entries: the TBSCertificate the log holds
	IssuerKey [32]byte
	Chain     [][]byte
}

func OddLogEntries(t *testing.T) []oddLogEntry {
	t.Helper()
	psc := oddcert.PSC()
	var out []oddLogEntry
	for _, tc := range append(oddcert.Cases(), psc.Precert, psc.Final) {
		e := oddLogEntry{Case: tc, Chain: [][]byte{tc.Issuer}}
		if tc.Name == psc.Precert.Name {
			e.Chain = append(e.Chain, psc.CA)
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
			if e.TBS, err = ctx509.BuildPrecertTBS(pre.RawTBSCertificate, preIssuer); err != nil {
				t.Fatalf("%s: %v", tc.Name, err)
			}
			e.IssuerKey = sha256.Sum256(keyOf.RawSubjectPublicKeyInfo)
		}
		out = append(out, e)
	}
	return out
}

func OddLogCases() []oddcert.Case {
	psc := oddcert.PSC()
	return append(oddcert.Cases(), psc.Precert, psc.Final)
}

func EveryWatch(oddcert.Case, string) bool { return true }

func MalformedCases() uint64 {
	n := uint64(0)
	for _, tc := range oddcert.Cases() {
		if tc.Malformed {
			n++
		}
	}
	return n
}

// PollUntilCaughtUp polls a log until it has processed size entries, as
// position tells.
func PollUntilCaughtUp(t *testing.T, l ctsource.Source, env *ctsource.Env, position func() int64, size int64) {
	t.Helper()
	for i := 0; i < 5 && position() < size; i++ {
		if err := l.Poll(t.Context(), env); err != nil {
			t.Fatalf("poll: %v", err)
		}
	}
	if p := position(); p != size {
		t.Fatalf("position %d of %d after 5 polls", p, size)
	}
}

func LogCounter(store *state.Store, name string) uint64 {
	for _, c := range store.Snapshot().Counters {
		if c.Name == name {
			return c.Value
		}
	}
	return 0
}

// Searchable is what a search source can find: its searches are by domain
// (IP watches cannot be searched), and a certificate found by one watch's
// search is recorded for every watch it concerns. crt.sh searches names
// as text: an IDN name it stores in UTF-8 is not found by the A-label
// watch, so the bücher.example cases are found by the Cert Spotter API
// (which indexes names in punycode) only.
func Searchable(punycode bool) func(tc oddcert.Case, w string) bool {
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
