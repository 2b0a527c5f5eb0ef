// Package crtsh is the crt.sh source: it searches crt.sh (or a mirror) for
// each watch, and downloads each certificate it has not seen before once.
package crtsh

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

const (
	// MaxRows is where crt.sh silently cuts a JSON result.
	MaxRows = 10000
	// A full 10,000-row answer is about 4 MB; anything near this cap is not crt.sh.
	crtshSearchLimit = 64 << 20
	crtshPEMLimit    = 1 << 20
)

// Source searches crt.sh (or a mirror) once per watch per poll, and downloads
// each certificate it has not seen before exactly once, to learn its
// tbs_sha256, key and SCTs — what crt.sh's JSON does not give.
type Source struct {
	name    string
	base    string
	http    *ctsource.Transport
	errs    ctsource.ErrorCounter
	watches *ctsource.WatchSchedule
}

// New returns a crt.sh source. gap spaces all its requests; retries back
// off up to interval; errs counts its failed attempts.
func New(name, baseURL string, interval, timeout, gap time.Duration, errs ctsource.ErrorCounter) (*Source, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("crtsh %s: invalid url %q", name, baseURL)
	}
	u.RawQuery, u.Fragment = "", ""
	if u.Path == "" {
		u.Path = "/"
	}
	return &Source{name: name, base: u.String(), http: ctsource.NewTransport(timeout, gap, interval, crtshSearchLimit, errs), errs: errs, watches: ctsource.NewWatchSchedule(interval)}, nil
}

// Name is the source label.
func (c *Source) Name() string { return c.name }

// Close drops idle connections.
func (c *Source) Close() { c.http.Close() }

// crtshRow is one certificate of a crt.sh JSON search result. Types are
// those crt.sh sends; a field of another type makes the answer bad.
type crtshRow struct {
	IssuerCAID     int64   `json:"issuer_ca_id"` // -1 when crt.sh does not know the issuer
	IssuerName     string  `json:"issuer_name"`
	CommonName     *string `json:"common_name"`
	NameValue      string  `json:"name_value"` // the identities that matched, "\n"-joined
	ID             uint64  `json:"id"`
	EntryTimestamp *string `json:"entry_timestamp"`
	NotBefore      string  `json:"not_before"`
	NotAfter       string  `json:"not_after"`
	SerialNumber   string  `json:"serial_number"`
	ResultCount    *int    `json:"result_count"`
}

// Poll searches every watch (see WatchSource).
func (c *Source) Poll(ctx context.Context, env *ctsource.Env) error { return c.pass(ctx, env, false) }

// RetryWatches searches the failing watches that are due (see WatchSource).
func (c *Source) RetryWatches(ctx context.Context, env *ctsource.Env) error {
	return c.pass(ctx, env, true)
}

// NextRetry is when a failing watch is due again (see WatchSource).
func (c *Source) NextRetry() time.Time { return c.watches.NextRetry() }

func (c *Source) pass(ctx context.Context, env *ctsource.Env, retries bool) error {
	return c.watches.Pass(ctx, env, "crtsh "+c.name, retries, func(w *watch.Watch) bool {
		if strings.Contains(w.Domain, "/") {
			// crt.sh searches identities as text; it cannot search a prefix.
			env.Logger.Debug("crt.sh cannot search an IP prefix; use a ctlog source for it", "watch", w.Domain)
			return false
		}
		return true
	}, func(w *watch.Watch) error { return c.pollWatch(ctx, env, w) })
}

func (c *Source) pollWatch(ctx context.Context, env *ctsource.Env, w *watch.Watch) error {
	rows, err := c.search(ctx, env, w.Domain)
	if err != nil {
		return err
	}
	truncated := len(rows) >= MaxRows
	relevant := rows[:0]
	for _, r := range rows {
		if r.ResultCount != nil && *r.ResultCount > len(rows) {
			truncated = true
		}
		if rowConcerns(&r, w) {
			relevant = append(relevant, r)
		}
	}
	// Lowest id first: a precertificate usually reaches crt.sh before its
	// final certificate, and is then recorded first.
	slices.SortFunc(relevant, func(a, b crtshRow) int { return cmp.Compare(a.ID, b.ID) })
	var errs []error
	for i := range relevant {
		if err := c.process(ctx, env, &relevant[i]); err != nil {
			if ctx.Err() != nil || ctsource.Retryable(ctsource.ReasonOf(err)) {
				return err
			}
			errs = append(errs, err)
		}
	}
	if truncated {
		c.errs.Count(ctsource.ReasonTruncated)
		env.Logger.Warn("crt.sh cut the result at 10,000 certificates: some certificates of this watch are not seen. "+
			"Narrow the watch (include_subdomains: false, or watch the busy subdomains separately) or add a ctlog source",
			"watch", w.Domain, "rows", len(rows))
		errs = append(errs, &ctsource.Error{Reason: ctsource.ReasonTruncated, Err: fmt.Errorf("%d rows: crt.sh truncated the result", len(rows))})
	}
	return errors.Join(errs...)
}

// rowConcerns filters crt.sh's substring matches (notexample.com for
// example.com) before anything is downloaded.
func rowConcerns(r *crtshRow, w *watch.Watch) bool {
	names := strings.Split(r.NameValue, "\n")
	if r.CommonName != nil {
		names = append(names, *r.CommonName)
	}
	for _, n := range names {
		n = watch.NormalizeName(strings.TrimSpace(n))
		if n != "" && !strings.Contains(n, "@") && w.MatchesName(n) {
			return true
		}
	}
	return false
}

func (c *Source) search(ctx context.Context, env *ctsource.Env, identity string) ([]crtshRow, error) {
	u := c.base + "?Identity=" + url.QueryEscape(identity) + "&exclude=expired&output=json"
	resp, err := c.http.Get(ctsource.OneAttempt(ctx), u, "application/json")
	if err != nil {
		return nil, err
	}
	rows, err := decodeCrtshRows(resp)
	if err != nil {
		c.errs.Count(ctsource.ReasonBadResponse)
		return nil, &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("search %s: %w", identity, err)}
	}
	return rows, nil
}

// decodeCrtshRows decodes a search answer, refusing anything that is not one
// complete JSON array: crt.sh sends HTML error pages with HTTP 200, and cut
// connections leave truncated JSON.
func decodeCrtshRows(resp *ctsource.Response) ([]crtshRow, error) {
	if strings.Contains(strings.ToLower(resp.ContentType), "html") {
		return nil, fmt.Errorf("crt.sh answered with an HTML page (HTTP %d), not JSON: it is probably overloaded: %.80q",
			resp.Status, resp.Body)
	}
	rows, err := ctsource.DecodeJSONArray[crtshRow](resp.Body)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		if rows[i].ID == 0 {
			return nil, fmt.Errorf("row %d has no id", i)
		}
	}
	return rows, nil
}

// process handles one crt.sh certificate: known ids cost no request.
func (c *Source) process(ctx context.Context, env *ctsource.Env, r *crtshRow) error {
	rec := env.Recorder
	tbs, seen, err := rec.Store.SeenID(c.name, r.ID)
	if err != nil {
		return err
	}
	if seen {
		known, err := rec.Store.Issuance(tbs)
		if err != nil || known == nil {
			return err
		}
		matches := rec.NewMatches(known)
		if len(matches) == 0 {
			return nil
		}
		// A watch added since this certificate was downloaded. One that
		// cannot be recorded is not marked: nothing of it was written, and
		// it is tried again at the next poll.
		return env.Commit(c.errs, &state.Commit{Source: c.name,
			Observations: []state.Observation{{Issuance: known, Matches: matches, Known: true}}})
	}

	crt, err := c.download(ctx, env, r.ID)
	if err != nil {
		var malformed *malformedError
		if !errors.As(err, &malformed) {
			return err
		}
		// Remember it, so that a certificate nothing can parse is not
		// downloaded on every poll.
		env.Logger.Warn("skipping a certificate that does not parse", "crtsh_id", r.ID, "err", err)
		return env.Commit(c.errs, &state.Commit{Source: c.name,
			IDs: []state.ProcessedID{{ID: r.ID, NotAfter: parseCrtshTime(r.NotAfter)}}})
	}
	// Marked even when it cannot be recorded: downloading it again would
	// not make it fit, and must not stop the other certificates.
	commit := &state.Commit{Source: c.name,
		IDs: []state.ProcessedID{{ID: r.ID, TBSSHA256: crt.TBSSHA256, NotAfter: crt.NotAfter}}}
	rec.Observe(commit, crt)
	return env.Commit(c.errs, commit)
}

type malformedError struct{ err error }

func (e *malformedError) Error() string { return e.err.Error() }

func (e *malformedError) Unwrap() error { return e.err }

func (c *Source) download(ctx context.Context, env *ctsource.Env, id uint64) (*cert.Certificate, error) {
	der, err := c.downloadDER(ctx, env, id)
	if err != nil {
		return nil, err
	}
	crt, err := cert.Read(der)
	if err != nil {
		c.errs.Count(ctsource.ReasonBadResponse)
		return nil, &malformedError{&ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("certificate %d: %w", id, err)}}
	}
	if crt.Precert {
		if err := c.resolvePSC(ctx, env, der, crt); err != nil {
			return nil, err
		}
	}
	return crt, nil
}

// downloadDER downloads the certificate crt.sh knows by id.
func (c *Source) downloadDER(ctx context.Context, env *ctsource.Env, id uint64) ([]byte, error) {
	u := c.base + "?d=" + strconv.FormatUint(id, 10)
	resp, err := c.http.Get(ctx, u, "application/pkix-crt")
	if err != nil {
		return nil, err
	}
	if len(resp.Body) > crtshPEMLimit {
		c.errs.Count(ctsource.ReasonBadResponse)
		return nil, &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("certificate %d: %d bytes is not a certificate", id, len(resp.Body))}
	}
	block, _ := pem.Decode(resp.Body)
	if block == nil || block.Type != "CERTIFICATE" {
		c.errs.Count(ctsource.ReasonBadResponse)
		return nil, &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("certificate %d: the answer is not a PEM certificate: %.80q", id, resp.Body)}
	}
	return block.Bytes, nil
}

// pscCandidates bounds the certificates downloaded to find a
// precertificate's issuer: a key identifier is shared by a CA's few
// certificates (renewals, cross-signs), not by hundreds.
const pscCandidates = 8

// resolvePSC gives a precertificate that a Precertificate Signing
// Certificate signed the identity and issuer of its final certificate.
// crt.sh has the PSC (it was logged in the precertificate's chain); it is
// found by its subject key identifier, which a precertificate's authority
// key identifier names, once per issuer (the answer is remembered).
func (c *Source) resolvePSC(ctx context.Context, env *ctsource.Env, der []byte, crt *cert.Certificate) error {
	issuer, keyID, ok := cert.PrecertIssuer(der)
	if !ok {
		return nil
	}
	pscs := &env.Recorder.PSCs
	p, known := pscs.Lookup(issuer, keyID)
	if !known {
		pre, err := ctx509.ParseCertificate(der)
		if pre == nil || ctx509.IsFatal(err) {
			// Its signature cannot be checked, so no PSC can be shown to
			// have signed it: it keeps the issuer it names.
			return nil
		}
		if p, err = c.findPSC(ctx, env, keyID, pre); err != nil {
			return err
		}
		pscs.Remember(issuer, keyID, p)
	}
	if p != nil {
		crt.RewriteForPSC(der, p)
	}
	return nil
}

func (c *Source) findPSC(ctx context.Context, env *ctsource.Env, keyID []byte, pre *ctx509.Certificate) (*cert.PSC, error) {
	u := c.base + "?ski=" + hex.EncodeToString(keyID) + "&output=json"
	resp, err := c.http.Get(ctx, u, "application/json")
	if ctsource.ReasonOf(err) == ctsource.ReasonHTTP4xx {
		// A mirror without this search: the precertificate keeps the
		// issuer it names, rather than the watch never being polled.
		env.Logger.Debug("crt.sh cannot search by subject key identifier; a precertificate signing certificate cannot be found", "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := decodeCrtshRows(resp)
	if err != nil {
		c.errs.Count(ctsource.ReasonBadResponse)
		return nil, &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("issuer with key identifier %x: %w", keyID, err)}
	}
	slices.SortFunc(rows, func(a, b crtshRow) int { return cmp.Compare(a.ID, b.ID) })
	for _, r := range rows[:min(len(rows), pscCandidates)] {
		der, err := c.downloadDER(ctx, env, r.ID)
		if err != nil {
			return nil, err
		}
		if p := cert.NewPSC(der, pre); p != nil {
			return p, nil
		}
	}
	return nil, nil
}

// parseCrtshTime reads crt.sh's zone-less UTC times with 0–3 (or more)
// fractional digits; Go's layout accepts the optional fraction.
func parseCrtshTime(s string) time.Time {
	t, err := time.Parse("2006-01-02T15:04:05", s)
	if err != nil {
		return time.Time{}
	}
	return t
}
