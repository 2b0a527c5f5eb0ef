package ctsource

import (
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
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
	PSCs cert.PSCs
}

// Record records a certificate in tx and returns the watches for which its
// issuance is new and, when there are any, the issuance as stored (what
// Env.announce passes on: first seen, and the SCTs of every certificate
// seen so far). A certificate the state cannot record is an error wrapping
// state.ErrUnrecordable; nothing of it was written, and tx can go on.
func (r *Recorder) Record(tx *state.Tx, c *cert.Certificate) (*state.Issuance, []state.Match, error) {
	is := IssuanceOf(c)
	matches := r.Matches(is)
	fresh, err := tx.Observe(is, matches)
	if err != nil {
		if errors.Is(err, state.ErrUnrecordable) {
			return nil, nil, &UnrecordedError{Matches: matches, Err: err}
		}
		return nil, nil, err
	}
	if len(fresh) == 0 {
		return nil, nil, nil
	}
	stored, err := tx.Issuance(c.TBSSHA256)
	return stored, fresh, err
}

// UnrecordedError is Record's error for a certificate the state cannot
// record, with the watches it concerns (for the log line).
type UnrecordedError struct {
	Matches []state.Match
	Err     error
}

func (e *UnrecordedError) Error() string { return e.Err.Error() }

func (e *UnrecordedError) Unwrap() error { return e.Err }

// found is an issuance a transaction recorded as new for some watches, to
// announce once the transaction committed.
type found struct {
	is    *state.Issuance
	fresh []state.Match
}

// unrecorded is a certificate a transaction could not record, to count
// and log once the transaction committed.
type unrecorded struct {
	cert *cert.Certificate
	err  error
}

// Recorded is what a transaction recorded, and what it could not.
type Recorded struct {
	news    []found
	skipped []unrecorded
}

// RecordAll records certificates in tx into out, emptied first (a
// transaction may run again). A certificate the state cannot record (a
// fault of the certificate, not of the store) is skipped: the others and
// the position go on, and Env.report counts it. Any other error fails the
// transaction.
func (r *Recorder) RecordAll(tx *state.Tx, certs []*cert.Certificate, out *Recorded) error {
	out.news, out.skipped = out.news[:0], out.skipped[:0]
	for _, c := range certs {
		is, fresh, err := r.Record(tx, c)
		if errors.Is(err, state.ErrUnrecordable) {
			out.skipped = append(out.skipped, unrecorded{c, err})
			continue
		}
		if err != nil {
			return err
		}
		if len(fresh) > 0 {
			out.news = append(out.news, found{is, fresh})
		}
	}
	return nil
}

// Report announces what a committed transaction recorded, and counts
// (ct_source_errors_total{reason="record"}, with errs) and logs what it
// could not.
func (e *Env) Report(source string, errs ErrorCounter, out *Recorded) {
	for _, u := range out.skipped {
		e.Unrecorded(source, errs, u.cert, u.err)
	}
	for _, n := range out.news {
		e.Announce(n.is, n.fresh)
	}
}

// Unrecorded counts and logs a certificate that could not be recorded.
func (e *Env) Unrecorded(source string, errs ErrorCounter, c *cert.Certificate, err error) {
	e.UnrecordedIssuance(source, errs, IssuanceOf(c), err)
}

// UnrecordedIssuance counts and logs an issuance that could not be
// recorded. It may name a watched domain: it is logged at error level with
// what identifies it, every value bounded (its fields are why it did not
// fit).
func (e *Env) UnrecordedIssuance(source string, errs ErrorCounter, is *state.Issuance, err error) {
	errs.Count(ReasonRecord)
	var watches []string
	var ue *UnrecordedError
	if errors.As(err, &ue) {
		for _, m := range ue.Matches {
			watches = append(watches, m.Watch)
		}
	}
	e.Logger.Error("a certificate could not be recorded: it is counted in ct_source_errors_total{reason=\"record\"} and skipped",
		"source", source, "watches", strings.Join(watches, ","),
		"tbs_sha256", hex.EncodeToString(is.TBSSHA256[:]), "cert_sha256", state.CertHex(is.CertSHA256),
		"serial", watch.Label(is.Serial), "issuer", watch.Label(is.Issuer.DN), "dns_names", len(is.DNSNames), "err", err)
}

// NewMatches returns the current watches that concern a stored issuance but
// that it has not been recorded for (watches added since it was seen).
func (r *Recorder) NewMatches(is *state.Issuance) []state.Match {
	var fresh []state.Match
	for _, m := range r.Matches(is) {
		if !hasWatch(is, m.Watch) {
			fresh = append(fresh, m)
		}
	}
	return fresh
}

func (r *Recorder) Matches(is *state.Issuance) []state.Match {
	set := r.Policy()
	names := cert.AppendNormalized(make([]string, 0, len(is.DNSNames)+len(is.OtherCNs)+1), is.DNSNames, is.OtherCNs...)
	names = cert.AppendNormalized(names, nil, is.SubjectCN)
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

func IssuanceOf(c *cert.Certificate) *state.Issuance {
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

// logNew logs an issuance new for the fresh watches, one line per watch.
func logNew(logger *slog.Logger, is *state.Issuance, fresh []state.Match) {
	for _, m := range fresh {
		logger.Info("new certificate", "watch", m.Watch, "verdict", m.Verdict.String(),
			"names", watch.Escape(strings.Join(is.DNSNames, ",")), "issuer", watch.Escape(is.Issuer.DN),
			"serial", is.Serial, "tbs_sha256", hex.EncodeToString(is.TBSSHA256[:]),
			"link", "https://crt.sh/?sha256="+hex.EncodeToString(is.CertSHA256[:]))
	}
}
