package ctsource

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// Recorder turns certificates into issuances: it matches them against the
// current watches, judges them, and records them in the store. Every
// source records through it, so the same issuance found anywhere is one.
type Recorder struct {
	Store  Store
	Policy func() *watch.Set // the current watches; changes on reload
	// PSCs are the precertificate signing certificates found so far, for
	// every source to give PSC-signed precertificates their final identity.
	PSCs cert.PSCs
}

// Observe adds a certificate to c: its issuance, with the current watches
// it concerns and the verdict of each.
func (r *Recorder) Observe(c *state.Commit, crt *cert.Certificate) {
	is := issuanceOf(crt)
	c.Observations = append(c.Observations, state.Observation{Issuance: is, Matches: r.matches(is)})
}

// Commit writes c in one transaction, then tells what it recorded: an
// issuance recorded as new for some watches is logged and announced; one
// the store could not record is counted (reason="record", with errs) and
// logged; the rest of c was written without it.
func (e *Env) Commit(errs ErrorCounter, c *state.Commit) error {
	if e.Fence != nil {
		c.Fence = e.Fence()
		if c.Fence == nil {
			return fmt.Errorf("%s: %w", c.Source, state.ErrFenced)
		}
	}
	res, err := e.Recorder.Store.Commit(c)
	if err != nil {
		return err
	}
	for i := range res {
		if res[i].Err != nil {
			e.unrecorded(c.Source, errs, &c.Observations[i], res[i].Err)
		}
	}
	for i := range res {
		if len(res[i].Fresh) > 0 {
			e.announce(res[i].Stored, res[i].Fresh)
		}
	}
	return nil
}

// announce logs an issuance new for the fresh watches, and passes it on.
func (e *Env) announce(is *state.Issuance, fresh []state.Match) {
	logNew(e.Logger, is, fresh)
	if e.NewIssuance != nil {
		e.NewIssuance(is, fresh)
	}
}

// unrecorded counts and logs an issuance the store could not record. It
// may name a watched domain: it is logged at error level with what
// identifies it, every value bounded (its fields are why it did not fit).
func (e *Env) unrecorded(source string, errs ErrorCounter, o *state.Observation, err error) {
	errs.Count(ReasonRecord)
	watches := make([]string, len(o.Matches))
	for i, m := range o.Matches {
		watches[i] = m.Watch
	}
	is := o.Issuance
	e.Logger.Error("a certificate could not be recorded: it is counted in ct_source_errors_total{reason=\"record\"} and skipped",
		"source", source, "watches", strings.Join(watches, ","),
		"tbs_sha256", hex.EncodeToString(is.TBSSHA256[:]), "cert_sha256", state.CertHex(is.CertSHA256),
		"serial", watch.Label(is.Serial), "issuer", watch.Label(is.Issuer.DN), "dns_names", len(is.DNSNames), "err", err)
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

// matches returns the current watches an issuance concerns, each with its
// verdict.
func (r *Recorder) matches(is *state.Issuance) []state.Match {
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

// issuanceOf is what the state keeps of a certificate.
func issuanceOf(c *cert.Certificate) *state.Issuance {
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

// logNew logs an issuance new for the fresh watches, one line per watch.
func logNew(logger *slog.Logger, is *state.Issuance, fresh []state.Match) {
	for _, m := range fresh {
		logger.Info("new certificate", "watch", m.Watch, "verdict", m.Verdict.String(),
			"names", watch.Escape(strings.Join(is.DNSNames, ",")), "issuer", watch.Escape(is.Issuer.DN),
			"serial", is.Serial, "tbs_sha256", hex.EncodeToString(is.TBSSHA256[:]),
			"link", "https://crt.sh/?sha256="+hex.EncodeToString(is.CertSHA256[:]))
	}
}
