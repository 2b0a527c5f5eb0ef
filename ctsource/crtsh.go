package ctsource

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

const (
	// CrtshMaxRows is where crt.sh silently cuts a JSON result.
	CrtshMaxRows = 10000
	// A full 10,000-row answer is about 4 MB; anything near this cap is not crt.sh.
	crtshSearchLimit = 64 << 20
	crtshPEMLimit    = 1 << 20
)

// Crtsh searches crt.sh (or a mirror) once per watch per poll, and downloads
// each certificate it has not seen before exactly once, to learn its
// tbs_sha256, key and SCTs — what crt.sh's JSON does not give.
type Crtsh struct {
	name    string
	base    string
	http    *transport
	watches *watchSchedule
}

// NewCrtsh returns a crt.sh source. gap spaces all its requests; retries back
// off up to interval.
func NewCrtsh(name, baseURL string, interval, timeout, gap time.Duration) (*Crtsh, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("crtsh %s: invalid url %q", name, baseURL)
	}
	u.RawQuery, u.Fragment = "", ""
	if u.Path == "" {
		u.Path = "/"
	}
	return &Crtsh{name: name, base: u.String(), http: newTransport(timeout, gap, interval, crtshSearchLimit), watches: newWatchSchedule(interval)}, nil
}

// Name is the source label.
func (c *Crtsh) Name() string { return c.name }

// Close drops idle connections.
func (c *Crtsh) Close() { c.http.close() }

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
func (c *Crtsh) Poll(ctx context.Context, env *Env) error { return c.pass(ctx, env, false) }

// RetryWatches searches the failing watches that are due (see WatchSource).
func (c *Crtsh) RetryWatches(ctx context.Context, env *Env) error { return c.pass(ctx, env, true) }

// NextRetry is when a failing watch is due again (see WatchSource).
func (c *Crtsh) NextRetry() time.Time { return c.watches.NextRetry() }

func (c *Crtsh) pass(ctx context.Context, env *Env, retries bool) error {
	ctx = withErrorCounter(ctx, env.CountError)
	return c.watches.pass(ctx, env, "crtsh "+c.name, retries, func(w *watch.Watch) bool {
		if strings.Contains(w.Domain, "/") {
			// crt.sh searches identities as text; it cannot search a prefix.
			env.Logger.Debug("crt.sh cannot search an IP prefix; use a ctlog source for it", "watch", w.Domain)
			return false
		}
		return true
	}, func(w *watch.Watch) error { return c.pollWatch(ctx, env, w) })
}

func (c *Crtsh) pollWatch(ctx context.Context, env *Env, w *watch.Watch) error {
	rows, err := c.search(ctx, env, w.Domain)
	if err != nil {
		return err
	}
	truncated := len(rows) >= CrtshMaxRows
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
			if ctx.Err() != nil || retryable(ReasonOf(err)) {
				return err
			}
			errs = append(errs, err)
		}
	}
	if truncated {
		env.CountError(ReasonTruncated)
		env.Logger.Warn("crt.sh cut the result at 10,000 certificates: some certificates of this watch are not seen. "+
			"Narrow the watch (include_subdomains: false, or watch the busy subdomains separately) or add a ctlog source",
			"watch", w.Domain, "rows", len(rows))
		errs = append(errs, &Error{Reason: ReasonTruncated, Err: fmt.Errorf("%d rows: crt.sh truncated the result", len(rows))})
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

func (c *Crtsh) search(ctx context.Context, env *Env, identity string) ([]crtshRow, error) {
	u := c.base + "?Identity=" + url.QueryEscape(identity) + "&exclude=expired&output=json"
	resp, err := c.http.get(oneAttempt(ctx), u, "application/json")
	if err != nil {
		return nil, err
	}
	rows, err := decodeCrtshRows(resp)
	if err != nil {
		env.CountError(ReasonBadResponse)
		return nil, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("search %s: %w", identity, err)}
	}
	return rows, nil
}

// decodeCrtshRows decodes a search answer, refusing anything that is not one
// complete JSON array: crt.sh sends HTML error pages with HTTP 200, and cut
// connections leave truncated JSON.
func decodeCrtshRows(resp *response) ([]crtshRow, error) {
	if strings.Contains(strings.ToLower(resp.contentType), "html") {
		return nil, fmt.Errorf("crt.sh answered with an HTML page (HTTP %d), not JSON: it is probably overloaded: %.80q",
			resp.status, resp.body)
	}
	rows, err := decodeJSONArray[crtshRow](resp.body)
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
func (c *Crtsh) process(ctx context.Context, env *Env, r *crtshRow) error {
	rec := env.Recorder
	var known *state.Issuance
	var seen bool
	err := rec.Store.View(func(tx *state.Tx) error {
		var tbs [32]byte
		tbs, seen = tx.SeenID(c.name, r.ID)
		if !seen {
			return nil
		}
		var err error
		known, err = tx.Issuance(tbs)
		return err
	})
	if err != nil {
		return err
	}
	if seen {
		if known == nil || len(rec.NewMatches(known)) == 0 {
			return nil
		}
		// A watch added since this certificate was downloaded.
		var fresh []state.Match
		var unrecordable error
		err := rec.Store.Update(func(tx *state.Tx) error {
			is, err := tx.Issuance(known.TBSSHA256)
			if err != nil || is == nil {
				return err
			}
			matches := rec.NewMatches(is)
			fresh, err = tx.Observe(is, matches)
			if errors.Is(err, state.ErrUnrecordable) {
				unrecordable, err = &unrecordedError{matches: matches, err: err}, nil
			}
			return err
		})
		if err == nil && unrecordable != nil {
			// Nothing was written: it is tried again at the next poll.
			env.unrecordedIssuance(c.name, known, unrecordable)
		} else if err == nil {
			env.announce(known, fresh)
		}
		return err
	}

	cert, err := c.download(ctx, env, r.ID)
	if err != nil {
		var malformed *malformedError
		if !errors.As(err, &malformed) {
			return err
		}
		// Remember it, so that a certificate nothing can parse is not
		// downloaded on every poll.
		env.Logger.Warn("skipping a certificate that does not parse", "crtsh_id", r.ID, "err", err)
		return rec.Store.Update(func(tx *state.Tx) error {
			return tx.MarkID(c.name, r.ID, [32]byte{}, parseCrtshTime(r.NotAfter))
		})
	}
	var fresh []state.Match
	var is *state.Issuance
	var unrecordable error
	err = rec.Store.Update(func(tx *state.Tx) error {
		var err error
		is, fresh, err = rec.Record(tx, cert)
		if errors.Is(err, state.ErrUnrecordable) {
			// Marked all the same: downloading it again would not make
			// it fit, and must not stop the other certificates.
			unrecordable, err = err, nil
		}
		if err != nil {
			return err
		}
		return tx.MarkID(c.name, r.ID, cert.TBSSHA256, cert.NotAfter)
	})
	switch {
	case err == nil && unrecordable != nil:
		env.unrecorded(c.name, cert, unrecordable)
	case err == nil && is != nil:
		env.announce(is, fresh)
	}
	return err
}

type malformedError struct{ err error }

func (e *malformedError) Error() string { return e.err.Error() }
func (e *malformedError) Unwrap() error { return e.err }

func (c *Crtsh) download(ctx context.Context, env *Env, id uint64) (*Certificate, error) {
	der, err := c.downloadDER(ctx, env, id)
	if err != nil {
		return nil, err
	}
	cert, err := ReadCertificate(der)
	if err != nil {
		env.CountError(ReasonBadResponse)
		return nil, &malformedError{&Error{Reason: ReasonBadResponse, Err: fmt.Errorf("certificate %d: %w", id, err)}}
	}
	if cert.Precert {
		if err := c.resolvePSC(ctx, env, der, cert); err != nil {
			return nil, err
		}
	}
	return cert, nil
}

// downloadDER downloads the certificate crt.sh knows by id.
func (c *Crtsh) downloadDER(ctx context.Context, env *Env, id uint64) ([]byte, error) {
	u := c.base + "?d=" + strconv.FormatUint(id, 10)
	resp, err := c.http.get(ctx, u, "application/pkix-cert")
	if err != nil {
		return nil, err
	}
	if len(resp.body) > crtshPEMLimit {
		env.CountError(ReasonBadResponse)
		return nil, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("certificate %d: %d bytes is not a certificate", id, len(resp.body))}
	}
	block, _ := pem.Decode(resp.body)
	if block == nil || block.Type != "CERTIFICATE" {
		env.CountError(ReasonBadResponse)
		return nil, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("certificate %d: the answer is not a PEM certificate: %.80q", id, resp.body)}
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
func (c *Crtsh) resolvePSC(ctx context.Context, env *Env, der []byte, cert *Certificate) error {
	issuer, keyID, ok := precertIssuer(der)
	if !ok {
		return nil
	}
	pscs := &env.Recorder.PSCs
	p, known := pscs.lookup(issuer, keyID)
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
		pscs.remember(issuer, keyID, p)
	}
	if p != nil {
		cert.rewriteForPSC(der, p)
	}
	return nil
}

func (c *Crtsh) findPSC(ctx context.Context, env *Env, keyID []byte, pre *ctx509.Certificate) (*psc, error) {
	u := c.base + "?ski=" + hex.EncodeToString(keyID) + "&output=json"
	resp, err := c.http.get(ctx, u, "application/json")
	if ReasonOf(err) == ReasonHTTP4xx {
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
		env.CountError(ReasonBadResponse)
		return nil, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("issuer with key identifier %x: %w", keyID, err)}
	}
	slices.SortFunc(rows, func(a, b crtshRow) int { return cmp.Compare(a.ID, b.ID) })
	for _, r := range rows[:min(len(rows), pscCandidates)] {
		der, err := c.downloadDER(ctx, env, r.ID)
		if err != nil {
			return nil, err
		}
		if p := newPSC(der, pre); p != nil {
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

func logNew(logger *slog.Logger, is *state.Issuance, fresh []state.Match) {
	for _, m := range fresh {
		logger.Info("new certificate", "watch", m.Watch, "verdict", m.Verdict.String(),
			"names", watch.Escape(strings.Join(is.DNSNames, ",")), "issuer", watch.Escape(is.Issuer.DN),
			"serial", is.Serial, "tbs_sha256", hex.EncodeToString(is.TBSSHA256[:]),
			"link", "https://crt.sh/?sha256="+hex.EncodeToString(is.CertSHA256[:]))
	}
}
