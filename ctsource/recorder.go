package ctsource

import (
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// Recorder turns certificates into issuances: it matches them against the
// current watches, judges them, and records them in the state file. Every
// source records through it, so the same issuance found anywhere is one.
type Recorder struct {
	Store  *state.Store
	Policy func() *watch.Set // the current watches; changes on reload
	// PSCs are the precertificate signing certificates found so far, for
	// every source to give PSC-signed precertificates their final identity.
	PSCs PSCs
}

// Record records a certificate in tx and returns the watches for which its
// issuance is new and, when there are any, the issuance as stored (what
// Env.announce passes on: first seen, and the SCTs of every certificate
// seen so far).
func (r *Recorder) Record(tx *state.Tx, c *Certificate) (*state.Issuance, []state.Match, error) {
	is := issuanceOf(c)
	fresh, err := tx.Observe(is, r.matches(is))
	if err != nil || len(fresh) == 0 {
		return nil, fresh, err
	}
	stored, err := tx.Issuance(c.TBSSHA256)
	return stored, fresh, err
}

// found is an issuance a transaction recorded as new for some watches, to
// announce once the transaction committed.
type found struct {
	is    *state.Issuance
	fresh []state.Match
}

// RecordAll records certificates in tx and returns what is new, appended to
// news[:0] (a transaction may run again).
func (r *Recorder) RecordAll(tx *state.Tx, certs []*Certificate, news []found) ([]found, error) {
	news = news[:0]
	for _, c := range certs {
		is, fresh, err := r.Record(tx, c)
		if err != nil {
			return nil, err
		}
		if len(fresh) > 0 {
			news = append(news, found{is, fresh})
		}
	}
	return news, nil
}

// NewMatches returns the current watches that concern a stored issuance but
// that it has not been recorded for (watches added since it was seen).
func (r *Recorder) NewMatches(is *state.Issuance) []state.Match {
	var fresh []state.Match
	for _, m := range r.matches(is) {
		if !hasWatch(is, m.Watch) {
			fresh = append(fresh, m)
		}
	}
	return fresh
}

func (r *Recorder) matches(is *state.Issuance) []state.Match {
	set := r.Policy()
	names := appendNormalized(make([]string, 0, len(is.DNSNames)+len(is.OtherCNs)+1), is.DNSNames, is.OtherCNs...)
	names = appendNormalized(names, nil, is.SubjectCN)
	idx := set.Match(nil, names, is.IPs)
	if len(idx) == 0 {
		return nil
	}
	ws := set.Watches()
	cand := is.Candidate()
	out := make([]state.Match, len(idx))
	for i, j := range idx {
		out[i] = state.Match{Watch: ws[j].Domain, Verdict: ws[j].Verdict(cand)}
	}
	return out
}

func hasWatch(is *state.Issuance, w string) bool {
	for _, m := range is.Watches {
		if m.Watch == w {
			return true
		}
	}
	return false
}

func issuanceOf(c *Certificate) *state.Issuance {
	return &state.Issuance{
		TBSSHA256:    c.TBSSHA256,
		CertSHA256:   c.CertSHA256,
		SPKISHA256:   c.SPKISHA256,
		Serial:       c.Serial,
		Issuer:       c.Issuer,
		SubjectCN:    c.SubjectCN,
		OtherCNs:     c.OtherCNs,
		DNSNames:     c.DNSNames,
		IPs:          c.IPAddresses,
		NotBefore:    c.NotBefore,
		NotAfter:     c.NotAfter,
		EmbeddedSCTs: c.EmbeddedSCTs,
		ParseError:   c.ParseError,
	}
}

// Verdict judges a stored issuance for a watch by the current policy; false
// when no such watch is configured. It is the state's Policy.Verdict.
func Verdict(set *watch.Set, watchName string, is *state.Issuance) (watch.Verdict, bool) {
	w, ok := set.Get(watchName)
	if !ok {
		return 0, false
	}
	return w.Verdict(is.Candidate()), true
}
