// Package loglist reads v3 CT log lists (Google's and Apple's format) and
// tells the monitor which logs to follow.
package loglist

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/certificate-transparency-go/loglist3"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/ctlog"
)

// maxListSize caps a log list: Google's is about 100 kB.
const maxListSize = 64 << 20

// maxSignatureSize caps a detached signature: an RSA-4096 signature is 512
// bytes, an ECDSA one about 140.
const maxSignatureSize = 64 << 10

// EndedShardGrace is how long after its temporal interval ended a shard is
// still followed: certificates in it have expired by then.
const EndedShardGrace = 30 * 24 * time.Hour

// Log is a CT log found in a log list.
type Log struct {
	Name string // the description as a label value
	// Tiled is a static-ct-api log (the list's tiled_logs), whose URL is
	// its monitoring prefix; the others speak RFC 6962.
	Tiled     bool
	URL       string
	PublicKey []byte // DER SubjectPublicKeyInfo
	MMD       time.Duration
	// Final is the final tree head of a readonly log: it is followed up to
	// there, and must end exactly there.
	Final *ctlog.FinalTreeHead
}

// List reads a v3 log list (Google's or Apple's format), from a URL or a
// file, and tells the monitor which logs to follow. A list that cannot be
// read or parsed, or that names more than maxLogs logs to follow, keeps the
// previous one in effect: every log followed costs goroutines, connections
// and memory, so whoever controls the list must not decide how many. With a
// public key (RequireSignature), a list whose detached signature does not
// verify is refused the same way.
type List struct {
	name     string
	location string
	states   []loglist3.LogStatus
	maxLogs  int
	http     *ctsource.Transport
	errs     ctsource.ErrorCounter
	found    func(list string, logs []Log)
	// etag and last are those of the list in effect: a refused list is
	// fetched (and refused) again at the next poll, not answered 304.
	etag string
	last []byte
	// key, when set, must verify the signature at sigLocation over the
	// exact bytes of a list before it is accepted.
	key         crypto.PublicKey
	sigLocation string
	sigHTTP     *ctsource.Transport
}

// States names the states a log list may give a log.
var States = map[string]loglist3.LogStatus{
	"pending":   loglist3.PendingLogStatus,
	"qualified": loglist3.QualifiedLogStatus,
	"usable":    loglist3.UsableLogStatus,
	"readonly":  loglist3.ReadOnlyLogStatus,
	"retired":   loglist3.RetiredLogStatus,
	"rejected":  loglist3.RejectedLogStatus,
}

// New returns a log list source; states are States keys, maxLogs
// the most logs it may name to follow. errs counts its failed attempts;
// found receives the logs the list names (replacing those it named before).
func New(name, location string, states []string, maxLogs int, interval, timeout time.Duration, errs ctsource.ErrorCounter, found func(list string, logs []Log)) (*List, error) {
	if maxLogs < 1 {
		return nil, fmt.Errorf("loglist %s: max_logs must be positive, not %d", name, maxLogs)
	}
	l := &List{name: name, location: location, maxLogs: maxLogs, found: found, errs: errs, http: ctsource.NewTransport(timeout, 0, interval, maxListSize, errs)}
	// A signature URL answering 4xx (404: there is no signature) is a list
	// that cannot be verified: counted as bad_signature, not http_4xx.
	l.sigHTTP = ctsource.NewTransport(timeout, 0, interval, maxSignatureSize, func(reason string) {
		if reason == ctsource.ReasonHTTP4xx {
			reason = ctsource.ReasonBadSignature
		}
		errs.Count(reason)
	})
	for _, s := range states {
		st, ok := States[s]
		if !ok {
			return nil, fmt.Errorf("loglist %s: unknown state %q", name, s)
		}
		l.states = append(l.states, st)
	}
	return l, nil
}

// RequireSignature makes the list accepted only when the detached signature
// at location (a URL, or a file path) verifies over the exact bytes of the
// list with keyDER, a DER SubjectPublicKeyInfo: RSASSA-PKCS1-v1_5 with
// SHA-256 for an RSA key (as Google signs log_list.json), ECDSA with
// SHA-256 (an ASN.1 signature) for an ECDSA key. A list that does not
// verify, or whose signature is missing, is refused (bad_signature) and the
// previous one kept. Call it before the first Poll.
func (l *List) RequireSignature(keyDER []byte, location string) error {
	key, err := ParseSignatureKey(keyDER)
	if err != nil {
		return fmt.Errorf("loglist %s: %w", l.name, err)
	}
	if location == "" {
		return fmt.Errorf("loglist %s: a public key without a signature location", l.name)
	}
	l.key, l.sigLocation = key, location
	return nil
}

// ParseSignatureKey parses a log list's signing key, a DER
// SubjectPublicKeyInfo: RSA (2048 bits or more) or ECDSA.
func ParseSignatureKey(der []byte) (crypto.PublicKey, error) {
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("the public key is not a DER SubjectPublicKeyInfo: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("the RSA public key has %d bits, fewer than 2048", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
	default:
		return nil, fmt.Errorf("the public key is a %T: a log list is signed with RSA or ECDSA", key)
	}
	return key, nil
}

// verify checks sig over data with key: RSASSA-PKCS1-v1_5 with SHA-256 for
// an RSA key, ECDSA with SHA-256 (ASN.1 DER signature, nothing after it)
// for an ECDSA key.
func verify(key crypto.PublicKey, data, sig []byte) error {
	digest := sha256.Sum256(data)
	switch k := key.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest[:], sig) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	}
	return fmt.Errorf("unsupported key type %T", key)
}

// Name is the source label.
func (l *List) Name() string { return l.name }

// Close drops idle connections.
func (l *List) Close() {
	l.http.Close()
	l.sigHTTP.Close()
}

// Poll fetches the list and, when it changed, passes its logs to
// the function it was made with. The logs counted against maxLogs are those it would follow:
// in the states followed, not long-ended shards, with a URL it may use. They
// are counted before --shard splits them, so that every replica accepts or
// refuses the same list.
func (l *List) Poll(ctx context.Context, env *ctsource.Env) error {
	data, etag, err := l.fetch(ctx)
	if err != nil {
		return err
	}
	if data == nil {
		return nil // unchanged: the list in effect, verified when accepted
	}
	if l.key != nil {
		if err := l.checkSignature(ctx, data); err != nil {
			return err
		}
	}
	list, err := loglist3.NewFromJSON(data)
	if err != nil {
		l.errs.Count(ctsource.ReasonBadResponse)
		return &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("loglist %s: %w; keeping the previous list", l.name, err)}
	}
	logs, skipped := l.pick(list, time.Now())
	if len(logs) > l.maxLogs {
		l.errs.Count(ctsource.ReasonListTooLarge)
		return &ctsource.Error{Reason: ctsource.ReasonListTooLarge, Err: fmt.Errorf(
			"loglist %s: the list names %d logs to follow, more than max_logs (%d); keeping the previous list: raise max_logs on this source if the list is right",
			l.name, len(logs), l.maxLogs)}
	}
	if len(skipped) > 0 {
		l.reportSkipped(env, skipped)
	}
	if len(logs) == 0 {
		l.errs.Count(ctsource.ReasonBadResponse)
		return &ctsource.Error{Reason: ctsource.ReasonBadResponse, Err: fmt.Errorf("loglist %s: no log in the states followed; keeping the previous list", l.name)}
	}
	if l.found == nil {
		return fmt.Errorf("loglist %s: nothing to give the logs to", l.name)
	}
	l.found(l.name, logs)
	l.last, l.etag = data, etag
	if env.LogListAccepted != nil {
		env.LogListAccepted(list.LogListTimestamp)
	}
	return nil
}

// checkSignature fetches the list's detached signature and verifies it over
// data, the exact bytes fetched. A signature that does not verify, or that
// is missing (a 4xx, no such file), is a bad_signature, counted here (a 4xx
// by sigHTTP's counter). A signature that cannot be fetched for another
// reason (5xx, timeout, network) is counted under that reason by the
// transport: the list is not accepted either, and the next poll tries
// again.
func (l *List) checkSignature(ctx context.Context, data []byte) error {
	refuse := func(format string, args ...any) error {
		return &ctsource.Error{Reason: ctsource.ReasonBadSignature, Err: fmt.Errorf("loglist %s: %s; keeping the previous list", l.name, fmt.Sprintf(format, args...))}
	}
	sig, err := l.fetchSignature(ctx)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.errs.Count(ctsource.ReasonBadSignature)
		return refuse("the list has no signature: %v", err)
	case errors.Is(err, errSignatureTooLarge):
		l.errs.Count(ctsource.ReasonBadSignature)
		return refuse("the signature file %s is %v", l.sigLocation, err)
	case ctsource.ReasonOf(err) == ctsource.ReasonHTTP4xx: // counted as bad_signature by sigHTTP
		return refuse("the list has no signature at %s: %v", l.sigLocation, err)
	case err != nil:
		return fmt.Errorf("loglist %s: fetching the signature: %w; keeping the previous list", l.name, err)
	}
	if err := verify(l.key, data, sig); err != nil {
		l.errs.Count(ctsource.ReasonBadSignature)
		return refuse("the list's signature (%s) does not verify with the configured public key: %v", l.sigLocation, err)
	}
	return nil
}

// fetchSignature reads the signature, from a URL or a file.
func (l *List) fetchSignature(ctx context.Context) ([]byte, error) {
	if !isURL(l.sigLocation) {
		f, err := os.Open(l.sigLocation)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sig, err := io.ReadAll(io.LimitReader(f, maxSignatureSize+1))
		if err == nil && len(sig) > maxSignatureSize {
			err = errSignatureTooLarge
		}
		return sig, err
	}
	res, err := l.sigHTTP.Get(ctx, l.sigLocation, "*/*")
	if err != nil {
		return nil, err
	}
	return res.Body, nil
}

// errSignatureTooLarge is a signature file too large to be one.
var errSignatureTooLarge = fmt.Errorf("larger than %d bytes: not a signature", maxSignatureSize)

func isURL(location string) bool {
	return strings.HasPrefix(location, "http://") || strings.HasPrefix(location, "https://")
}

// skippedLog is a log of the list that is not followed, and why.
type skippedLog struct {
	name, url string
	why       error
}

// reportSkipped counts each log left out for its URL under bad_response (the
// list is not what a log list should be) and logs one line for them all: a
// hostile list of thousands must not flood the log.
func (l *List) reportSkipped(env *ctsource.Env, skipped []skippedLog) {
	examples := make([]string, 0, 3)
	for i, s := range skipped {
		l.errs.Count(ctsource.ReasonBadResponse)
		if i < cap(examples) {
			// Cut: a hostile list's descriptions and URLs can be megabytes.
			examples = append(examples, fmt.Sprintf("%.100s %.200q: %.200v", s.name, s.url, s.why))
		}
	}
	if env.Logger != nil {
		env.Logger.Warn("the log list names logs whose URL is not https (plain http is allowed only to a loopback address); they are not followed",
			"list", l.name, "skipped", len(skipped), "examples", examples)
	}
}

// fetch returns the list and its ETag, or a nil list when it did not change.
func (l *List) fetch(ctx context.Context) ([]byte, string, error) {
	if !isURL(l.location) {
		data, err := os.ReadFile(l.location)
		if err != nil {
			return nil, "", fmt.Errorf("loglist %s: %w", l.name, err)
		}
		if bytes.Equal(data, l.last) {
			return nil, "", nil
		}
		return data, "", nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.location, nil)
	if err != nil {
		return nil, "", fmt.Errorf("loglist %s: %w", l.name, err)
	}
	req.Header.Set("Accept", "application/json")
	if l.etag != "" && l.last != nil {
		req.Header.Set("If-None-Match", l.etag)
	}
	res, err := l.http.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotModified {
		return nil, "", nil
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(res.Body); err != nil {
		return nil, "", err
	}
	if bytes.Equal(body.Bytes(), l.last) {
		l.etag = res.Header.Get("ETag") // the list in effect, under a new tag
		return nil, "", nil
	}
	return body.Bytes(), res.Header.Get("ETag"), nil
}

func (l *List) follows(st *loglist3.LogStates, ti *loglist3.TemporalInterval, now time.Time) bool {
	if !slices.Contains(l.states, st.LogStatus()) {
		return false
	}
	return ti == nil || ti.EndExclusive.IsZero() || ti.EndExclusive.After(now.Add(-EndedShardGrace))
}

func (l *List) pick(list *loglist3.LogList, now time.Time) ([]Log, []skippedLog) {
	var out []Log
	var skipped []skippedLog
	seen := map[string]bool{}
	add := func(d Log, st *loglist3.LogStates) {
		if err := checkLogURL(d.URL); err != nil {
			skipped = append(skipped, skippedLog{name: d.Name, url: d.URL, why: err})
			return
		}
		if ro := st.ReadOnly; ro != nil && len(ro.FinalTreeHead.SHA256RootHash) == 32 {
			d.Final = &ctlog.FinalTreeHead{Size: ro.FinalTreeHead.TreeSize, Root: [32]byte(ro.FinalTreeHead.SHA256RootHash)}
		}
		// Two logs cannot share a label: the second gets a suffix.
		base := d.Name
		for i := 2; seen[d.Name]; i++ {
			d.Name = fmt.Sprintf("%s_%d", base, i)
		}
		seen[d.Name] = true
		out = append(out, d)
	}
	for _, op := range list.Operators {
		for _, lg := range op.Logs {
			if l.follows(lg.State, lg.TemporalInterval, now) {
				add(Log{Name: Label(lg.Description), URL: lg.URL, PublicKey: lg.Key,
					MMD: time.Duration(lg.MMD) * time.Second}, lg.State)
			}
		}
		for _, lg := range op.TiledLogs {
			if l.follows(lg.State, lg.TemporalInterval, now) {
				add(Log{Name: Label(lg.Description), Tiled: true, URL: lg.MonitoringURL, PublicKey: lg.Key,
					MMD: time.Duration(lg.MMD) * time.Second}, lg.State)
			}
		}
	}
	return out, skipped
}

// checkLogURL refuses a log URL that a list may not make the exporter use:
// anything but https, except plain http to this host (test logs, local
// mirrors). Over plain http anyone on the path could stall or hold back what
// a log serves: signatures prove what a log said, not that nothing was
// withheld.
func checkLogURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("plain http to a host that is not loopback")
	}
	return fmt.Errorf("scheme %q is not https", u.Scheme)
}

// isLoopback reports whether host names this machine without a lookup:
// localhost, 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Label makes a log's description into a label value and source name:
// "Google 'Argon2026h1' log" becomes "google_argon2026h1_log".
func Label(description string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(description) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			under = false
		} else if !under && b.Len() > 0 {
			b.WriteByte('_')
			under = true
		}
	}
	s := strings.TrimSuffix(b.String(), "_")
	if s == "" {
		return "log"
	}
	return s
}
