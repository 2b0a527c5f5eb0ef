// Package certspotter is the source that asks SSLMate's Cert Spotter API for
// the issuances of each watch, resuming after the last one it recorded.
package certspotter

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// certspotterPageLimit caps one answer: a page of issuances with their DER
// is well under a megabyte.
const certspotterPageLimit = 32 << 20

// Source asks SSLMate's Cert Spotter API for the issuances of each
// watch, resuming after the last issuance id it recorded: the API numbers
// issuances in the order it discovers them, so after= never skips one.
type Source struct {
	name    string
	base    string
	http    *ctsource.Transport
	errs    ctsource.ErrorCounter
	watches *ctsource.WatchSchedule
}

// New returns a Cert Spotter API source. token may be empty
// (anonymous, low volume). gap spaces all its requests, which is how the
// free tier's limit of about 10 include_subdomains queries an hour is kept.
func New(name, baseURL, token string, interval, timeout, gap time.Duration, errs ctsource.ErrorCounter) (*Source, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("certspotter %s: invalid url %q", name, baseURL)
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/issuances"
	tr := ctsource.NewTransport(timeout, gap, interval, certspotterPageLimit, errs)
	if token != "" {
		tr.Header = http.Header{"Authorization": {"Bearer " + token}}
	}
	return &Source{name: name, base: u.String(), http: tr, errs: errs, watches: ctsource.NewWatchSchedule(interval)}, nil
}

// Name is the source label.
func (c *Source) Name() string { return c.name }

// Close drops idle connections.
func (c *Source) Close() { c.http.Close() }

// csIssuance is one issuance of the API's answer.
type csIssuance struct {
	ID        string `json:"id"`
	TBSSHA256 string `json:"tbs_sha256"`
	CertDER   []byte `json:"cert_der"`
	Issuer    *struct {
		Name string `json:"name"`
	} `json:"issuer"`
}

// Poll queries every watch (see WatchSource); IP addresses cannot be
// queried.
func (c *Source) Poll(ctx context.Context, env *ctsource.Env) error { return c.pass(ctx, env, false) }

// RetryWatches queries the failing watches that are due (see WatchSource).
func (c *Source) RetryWatches(ctx context.Context, env *ctsource.Env) error {
	return c.pass(ctx, env, true)
}

// NextRetry is when a failing watch is due again (see WatchSource).
func (c *Source) NextRetry() time.Time { return c.watches.NextRetry() }

func (c *Source) pass(ctx context.Context, env *ctsource.Env, retries bool) error {
	return c.watches.Pass(ctx, env, "certspotter "+c.name, retries, func(w *watch.Watch) bool {
		if w.IsIP() {
			env.Logger.Debug("the Cert Spotter API searches domains only; use a ctlog source for an IP address", "watch", w.Domain)
			return false
		}
		return true
	}, func(w *watch.Watch) error { return c.pollWatch(ctx, env, w) })
}

// cursorKey names a query's cursor: a query is a domain and whether it
// includes subdomains, and each has its own sequence of answers.
func cursorKey(w *watch.Watch) string {
	return w.Domain + "?include_subdomains=" + strconv.FormatBool(w.IncludeSubdomains)
}

func (c *Source) pollWatch(ctx context.Context, env *ctsource.Env, w *watch.Watch) error {
	key := cursorKey(w)
	cursors, err := c.cursors(env)
	if err != nil {
		return err
	}
	after := cursors[key]
	for {
		page, err := c.page(ctx, env, w, after)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		prev, _ := strconv.ParseUint(after, 10, 64)
		for i := range page {
			id, err := strconv.ParseUint(page[i].ID, 10, 64)
			if err != nil || id <= prev {
				// Paging on would loop or skip: the answer is not what the API sends.
				c.errs.Count(ctsource.ReasonBadResponse)
				return &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("issuance id %q does not follow %q", page[i].ID, after)}
			}
			prev = id
		}
		if err := c.record(env, key, page); err != nil {
			return err
		}
		after = page[len(page)-1].ID
	}
}

func (c *Source) page(ctx context.Context, env *ctsource.Env, w *watch.Watch, after string) ([]csIssuance, error) {
	q := url.Values{}
	q.Set("domain", w.Domain)
	q.Set("include_subdomains", strconv.FormatBool(w.IncludeSubdomains))
	q.Set("match_wildcards", "true")
	q["expand"] = []string{"dns_names", "issuer", "cert_der"}
	if after != "" {
		q.Set("after", after)
	}
	res, err := c.http.Get(ctsource.OneAttempt(ctx), c.base+"?"+q.Encode(), "application/json")
	if err != nil {
		var e *ctsource.Error
		if errors.As(err, &e) && (e.Reason == ctsource.ReasonHTTP4xx) {
			// The API says why in JSON: an unknown token, a domain it refuses.
			return nil, fmt.Errorf("%w (is the token in token_file valid, and the domain a registrable name?)", err)
		}
		return nil, err
	}
	page, err := decodeIssuances(res.ContentType, res.Body)
	if err != nil {
		c.errs.Count(ctsource.ReasonBadResponse)
		return nil, &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("issuances of %s: %w", w.Domain, err)}
	}
	return page, nil
}

// decodeIssuances refuses anything but one complete JSON array.
func decodeIssuances(contentType string, body []byte) ([]csIssuance, error) {
	if strings.Contains(strings.ToLower(contentType), "html") {
		return nil, fmt.Errorf("the API answered with an HTML page, not JSON: %.80q", body)
	}
	return ctsource.DecodeJSONArray[csIssuance](body)
}

// record records a page of issuances and moves the query's cursor past it
// in one transaction, so that a crash keeps the whole page or none of it.
func (c *Source) record(env *ctsource.Env, key string, page []csIssuance) error {
	commit := &state.Commit{Source: c.name}
	for i := range page {
		if crt := c.certificate(env, &page[i]); crt != nil {
			env.Recorder.Observe(commit, crt)
		}
	}
	// Only this source writes its cursors, one page at a time: what is
	// read here is what the commit replaces.
	cursors, err := c.cursors(env)
	if err != nil {
		return err
	}
	cursors[key] = page[len(page)-1].ID
	if commit.Cursor, err = json.Marshal(cursors); err != nil {
		return err
	}
	return env.Commit(c.errs, commit)
}

// cursors returns the source's cursors: the last issuance id recorded, by
// query.
func (c *Source) cursors(env *ctsource.Env) (map[string]string, error) {
	b, err := env.Recorder.Store.Cursor(c.name)
	if err != nil {
		return nil, err
	}
	return decodeCursors(b)
}

// certificate reads an issuance's certificate, or counts and logs why it
// cannot (the cursor passes it all the same: asking again gives the same).
func (c *Source) certificate(env *ctsource.Env, is *csIssuance) *cert.Certificate {
	if len(is.CertDER) == 0 {
		c.errs.Count(ctsource.ReasonBadResponse)
		env.Logger.Warn("skipping an issuance without cert_der", "source", c.name, "id", is.ID)
		return nil
	}
	crt, err := cert.Read(is.CertDER)
	if err != nil {
		c.errs.Count(ctsource.ReasonBadResponse)
		env.Logger.Warn("skipping an issuance whose certificate cannot be read", "source", c.name, "id", is.ID, "err", err)
		return nil
	}
	if hex.EncodeToString(crt.TBSSHA256[:]) != strings.ToLower(is.TBSSHA256) && !c.signedByPSC(env, is, crt) {
		// Ours is what every other source computes: it keeps the dedup.
		c.errs.Count(ctsource.ReasonBadResponse)
		env.Logger.Warn("the API's tbs_sha256 differs from the certificate's; using the certificate's",
			"source", c.name, "id", is.ID, "api_tbs_sha256", watch.Escape(is.TBSSHA256),
			"tbs_sha256", hex.EncodeToString(crt.TBSSHA256[:]))
	}
	return crt
}

// signedByPSC reports a precertificate whose tbs_sha256 differs from the
// API's because a Precertificate Signing Certificate signed it: the API
// gives the identity RFC 6962 §3.2 defines (that of the final
// certificate), and its issuer. crt takes them: rebuilt and checked when
// the PSC is known (another source found it), else from the API, when the
// API names another issuer than the precertificate does — the mark of a
// PSC.
func (c *Source) signedByPSC(env *ctsource.Env, is *csIssuance, crt *cert.Certificate) bool {
	if !crt.Precert {
		return false
	}
	api, err := hex.DecodeString(is.TBSSHA256)
	if err != nil || len(api) != 32 {
		return false
	}
	if issuer, keyID, ok := cert.PrecertIssuer(is.CertDER); ok {
		if p, _ := env.Recorder.PSCs.Lookup(issuer, keyID); p != nil {
			rebuilt := *crt
			if rebuilt.RewriteForPSC(is.CertDER, p) && bytes.Equal(rebuilt.TBSSHA256[:], api) {
				*crt = rebuilt
				return true
			}
		}
	}
	if is.Issuer == nil || is.Issuer.Name == "" {
		return false
	}
	named := issuerFromString(is.Issuer.Name)
	if named.CN == "" && named.O == "" || strings.EqualFold(named.CN, crt.Issuer.CN) && strings.EqualFold(named.O, crt.Issuer.O) {
		return false
	}
	env.Logger.Info("a precertificate signing certificate signed this precertificate: its identity and issuer are the API's",
		"source", c.name, "id", is.ID, "psc", watch.Escape(crt.Issuer.DN), "issuer", watch.Escape(named.DN))
	crt.TBSSHA256, crt.Issuer = [32]byte(api), named
	return true
}

// issuerFromString reads an issuer DN written as text (RFC 4514's most
// specific first, or the opposite order OpenSSL prints), into what
// expected_issuers compares, the DN in FormatDN's order.
func issuerFromString(s string) watch.Issuer {
	var rdns []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			cur.WriteByte(s[i])
			cur.WriteByte(s[i+1])
			i++
		case s[i] == ',':
			rdns = append(rdns, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	rdns = append(rdns, strings.TrimSpace(cur.String()))
	typeOf := func(rdn string) string {
		t, _, _ := strings.Cut(rdn, "=")
		return strings.ToUpper(strings.TrimSpace(t))
	}
	if len(rdns) > 1 && (typeOf(rdns[0]) == "C" || typeOf(rdns[0]) == "DC") && typeOf(rdns[len(rdns)-1]) != "C" {
		slices.Reverse(rdns)
	}
	var i watch.Issuer
	for _, rdn := range rdns {
		for _, atv := range strings.Split(rdn, "+") {
			t, v, _ := strings.Cut(atv, "=")
			v = strings.TrimSpace(strings.ReplaceAll(v, "\\", ""))
			switch strings.ToUpper(strings.TrimSpace(t)) {
			case "CN":
				if i.CN == "" {
					i.CN = v
				}
			case "O":
				i.O = v
			}
		}
	}
	i.DN = strings.Join(rdns, ", ")
	return i
}

// decodeCursors reads a source's cursors: the last issuance id recorded,
// by query.
func decodeCursors(b []byte) (map[string]string, error) {
	m := map[string]string{}
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("certspotter: cursor in the state file: %w", err)
	}
	return m, nil
}
