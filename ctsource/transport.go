package ctsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/common/version"
)

// maxRetryAfter bounds how long one Retry-After header can stall a source.
const maxRetryAfter = time.Hour

// minBudget is the least time one request, retries included, may take:
// its source's interval when that is longer.
const minBudget = time.Hour

// Transport is the http.RoundTripper every source's requests go through. It
// applies the manners a shared service needs — requests spaced, each with a
// timeout and a size cap, transient failures retried with backoff, and
// Retry-After honoured — and counts every failed attempt by reason, with
// the ErrorCounter it was made with. It reads the body itself, so that a
// slow or oversized body is caught here too. A response that is not 2xx
// after the retries is an *Error, never a response, so no caller can take
// an error page for an answer.
//
// NewTransport sets the exported fields; a source (an API key in Header) or
// a test (a faster backoff) may change them before the first request.
type Transport struct {
	Base        http.RoundTripper
	Timeout     time.Duration // per attempt, body included
	Attempts    int
	BackoffBase time.Duration
	Header      http.Header // sent with every request Get makes (an API key)

	gap        time.Duration // between the starts of consecutive requests
	maxBody    int64
	backoffCap time.Duration
	// budget bounds one request, its attempts, backoffs and Retry-After
	// waits together: a server answering 429 with Retry-After: 3600 each
	// time would otherwise hold its source for hours.
	budget time.Duration
	errs   ErrorCounter

	mu   sync.Mutex
	last time.Time
}

// NewTransport returns a transport whose attempts each take at most
// timeout, whose requests start gap apart, whose backoff grows up to the
// source's interval, and whose answers are cut at maxBody bytes; errs
// counts its failed attempts.
func NewTransport(timeout, gap, interval time.Duration, maxBody int64, errs ErrorCounter) *Transport {
	return &Transport{
		Base: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			// Decompressed below: faster than net/http's, and bounded.
			DisableCompression: true,
		},
		Timeout:     timeout,
		Attempts:    4,
		BackoffBase: max(gap, time.Second),
		gap:         gap,
		maxBody:     maxBody,
		backoffCap:  interval,
		budget:      max(interval, minBudget),
		errs:        errs,
	}
}

// Close drops idle connections: a source stopped on reload must not leave
// its keep-alive connections (and their goroutines) behind.
func (t *Transport) Close() {
	if ht, ok := t.Base.(*http.Transport); ok {
		ht.CloseIdleConnections()
	}
}

type oneAttemptKey struct{}

// OneAttempt marks the requests made with ctx as not to be retried, but
// for a rate limit (429, which pauses the whole source anyway): a
// search source retries a failed watch on the watch's own schedule, with
// its own backoff, and retrying inside the request would hold every other
// watch of the source behind the failing one (a hanging search, four
// times its timeout).
func OneAttempt(ctx context.Context) context.Context {
	return context.WithValue(ctx, oneAttemptKey{}, true)
}

type leaseKey struct{}

// WithLease makes every request sent with ctx through a Transport call
// check first, just before it goes out, and fail with check's error
// without being sent. A replica that no longer holds the lease on a
// source, or may no longer hold it (a stall since its last renewal),
// sends that source nothing more: a search is polled by one replica at a
// time.
func WithLease(ctx context.Context, check func() error) context.Context {
	return context.WithValue(ctx, leaseKey{}, check)
}

// Get fetches url and returns its body; any failure is an *Error.
func (t *Transport) Get(ctx context.Context, url, accept string) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, &Error{Reason: ReasonBadResponse, Err: err}
	}
	req.Header.Set("Accept", accept)
	for k, v := range t.Header {
		req.Header[k] = v
	}
	res, body, err := t.roundTrip(req)
	if err != nil {
		return nil, err
	}
	return &Response{Status: res.StatusCode, ContentType: res.Header.Get("Content-Type"), Body: body}, nil
}

type Response struct {
	Status      int
	ContentType string
	Body        []byte
}

// RoundTrip sends a GET (only idempotent requests are retried).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, body, err := t.roundTrip(req)
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	return res, nil
}

// roundTrip is RoundTrip giving the body read.
func (t *Transport) roundTrip(req *http.Request) (*http.Response, []byte, error) {
	return t.roundTripInto(req, nil)
}

// bodies recycles response buffers (*[]byte) on the hot paths (see getPooled).
var bodies sync.Pool

// GetPooled is get with the body read into a recycled buffer: release it
// once nothing refers to the body any more.
func (t *Transport) GetPooled(ctx context.Context, url, accept string) (*Response, func(), error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, &Error{Reason: ReasonBadResponse, Err: err}
	}
	req.Header.Set("Accept", accept)
	buf, _ := bodies.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	res, body, err := t.roundTripInto(req, buf)
	if err != nil {
		bodies.Put(buf)
		return nil, nil, err
	}
	return &Response{Status: res.StatusCode, ContentType: res.Header.Get("Content-Type"), Body: body}, func() { bodies.Put(buf) }, nil
}

// roundTripInto reads the body into *buf, which keeps the grown buffer for
// the next use (a fresh buffer when buf is nil).
func (t *Transport) roundTripInto(req *http.Request, buf *[]byte) (*http.Response, []byte, error) {
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		// Logs rate-limit clients that give no contact (Skylight: an e-mail
		// address, https:// or github.com/).
		req.Header.Set("User-Agent", version.ComponentUserAgent("ct_exporter")+" (+https://github.com/ct-exporter/ct_exporter)")
	}
	ctx := req.Context()
	attempts := t.Attempts
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		attempts = 1
	}
	oneTry := ctx.Value(oneAttemptKey{}) != nil
	deadline := time.Now().Add(t.budget)
	var last error
	for attempt := 1; attempt <= attempts; attempt++ {
		res, body, err := t.once(req, buf, deadline)
		if err == nil {
			return res, body, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		var e *Error
		if !errors.As(err, &e) {
			return nil, nil, err
		}
		t.errs.Count(e.Reason)
		last = err
		if !Retryable(e.Reason) || attempt == attempts || errors.Is(err, errPastBudget) ||
			oneTry && e.Reason != ReasonHTTP429 { // a rate limit holds the whole source anyway
			break
		}
		wait := Backoff(attempt, t.BackoffBase, t.backoffCap)
		if e.RetryAfter > 0 {
			wait = e.RetryAfter
		}
		if left := time.Until(deadline); wait >= left {
			// Already counted: the source's next poll tries again.
			last = &Error{Reason: e.Reason, RetryAfter: e.RetryAfter, Err: fmt.Errorf(
				"%w; gave up after %d attempts: waiting %v more would take the request past its budget of %v",
				e.Err, attempt, wait.Round(time.Second), t.budget)}
			break
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, last
}

func Retryable(reason string) bool {
	switch reason {
	case ReasonTimeout, ReasonNetwork, ReasonHTTP429, ReasonHTTP5xx:
		return true
	}
	return false
}

// once makes one attempt, cut at deadline (the request's budget) if that
// comes before its own timeout.
func (t *Transport) once(req *http.Request, buf *[]byte, deadline time.Time) (*http.Response, []byte, error) {
	if buf == nil {
		buf = new([]byte)
	}
	ctx := req.Context()
	if err := t.space(ctx, deadline); err != nil {
		return nil, nil, err
	}
	if check, ok := ctx.Value(leaseKey{}).(func() error); ok {
		if err := check(); err != nil {
			return nil, nil, err
		}
	}
	end := time.Now().Add(t.Timeout)
	if deadline.Before(end) {
		end = deadline
	}
	actx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	req = req.WithContext(actx)
	if req.Header.Get("Accept-Encoding") == "" {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	res, err := t.Base.RoundTrip(req)
	if err != nil {
		return nil, nil, transportError(ctx, actx, err)
	}
	defer res.Body.Close()
	var src io.Reader = res.Body
	size := res.ContentLength
	if strings.EqualFold(res.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gunzip(res.Body)
		if err != nil {
			return nil, nil, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("%s: gzip: %w", req.URL.Redacted(), err)}
		}
		defer gzipReaders.Put(zr)
		src = zr
		size = 4 * size // a guess: tiles compress about 3:1
		res.Header.Del("Content-Encoding")
		res.Header.Del("Content-Length")
	}
	// The cap applies to what is decompressed: a gzip bomb stops at maxBody.
	body, err := readBody((*buf)[:0], src, size, t.maxBody)
	*buf = body[:0]
	if err != nil {
		if ctx.Err() == nil && actx.Err() == nil && !isNetError(err) {
			return nil, nil, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("reading the body of %s: %w", req.URL.Redacted(), err)}
		}
		return nil, nil, transportError(ctx, actx, fmt.Errorf("reading the body of %s: %w", req.URL.Redacted(), err))
	}
	what := func(s string) error { return fmt.Errorf("%s %s: %s", req.Method, req.URL.Redacted(), s) }
	switch {
	case res.StatusCode == http.StatusTooManyRequests:
		return nil, nil, &Error{Reason: ReasonHTTP429, RetryAfter: retryAfter(res.Header.Get("Retry-After")), Err: what(res.Status)}
	case res.StatusCode >= 500:
		return nil, nil, &Error{Reason: ReasonHTTP5xx, RetryAfter: retryAfter(res.Header.Get("Retry-After")), Err: what(res.Status)}
	case res.StatusCode >= 400:
		return nil, nil, &Error{Reason: ReasonHTTP4xx, Err: what(res.Status)}
	case res.StatusCode == http.StatusNotModified: // a conditional GET's answer
	case res.StatusCode < 200 || res.StatusCode > 299:
		return nil, nil, &Error{Reason: ReasonBadResponse, Err: what("unexpected " + res.Status)}
	case int64(len(body)) > t.maxBody:
		return nil, nil, &Error{Reason: ReasonBadResponse, Err: what(fmt.Sprintf("response larger than %d bytes", t.maxBody))}
	}
	return res, body, nil
}

// upfront is the most a body's buffer is given before its bytes arrive: a
// Content-Length is only a claim, and a server that announces 60 MiB and
// then stalls must not cost 60 MiB per request.
const upfront = 1 << 20

// claimTrust is how far a claimed size is believed ahead of the bytes
// that arrived: a buffer full of what the server sent grows this many
// times over, up to the claim. A get-entries answer (0.5–5 MB) then takes
// one growth from the upfront MiB instead of three doublings.
const claimTrust = 8

// readBody appends r's bytes to buf, at most limit+1 of them (so that the
// caller sees a body over the limit). size, when positive, is the expected
// length: the buffer starts at min(size, upfront) and grows claimTrust
// times over as data arrives, never past size while short of it, so that
// an honest answer ends in a buffer of its own size; past it, or with no
// size, it doubles. A recycled buffer already large enough is not grown.
func readBody(buf []byte, r io.Reader, size, limit int64) ([]byte, error) {
	if size > 0 {
		// The slack lets the read that sees EOF find room without a doubling.
		want := int(min(size, upfront, limit+1)) + bytes.MinRead
		if cap(buf)-len(buf) < want {
			buf = append(make([]byte, 0, len(buf)+want), buf...)
		}
	}
	for {
		if int64(len(buf)) > limit {
			return buf, nil
		}
		if len(buf) == cap(buf) {
			n := max(2*cap(buf), len(buf)+bytes.MinRead)
			if int64(len(buf)) < size {
				n = min(max(n, claimTrust*len(buf)), int(min(size, limit+1))+bytes.MinRead)
			}
			buf = append(make([]byte, 0, n), buf...)
		}
		room := buf[len(buf):cap(buf)]
		if left := limit + 1 - int64(len(buf)); int64(len(room)) > left {
			room = room[:left]
		}
		m, err := r.Read(room)
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

var gzipReaders sync.Pool

func gunzip(r io.Reader) (*gzip.Reader, error) {
	if zr, ok := gzipReaders.Get().(*gzip.Reader); ok {
		if err := zr.Reset(r); err != nil {
			gzipReaders.Put(zr)
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(r)
}

// isNetError tells a connection failing mid-body (a network error, a cut
// stream) from a body that is not what it claims (a corrupt gzip stream).
func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF)
}

// errPastBudget is a request that would end after its budget.
var errPastBudget = errors.New("past the request's budget")

// space waits until gap has passed since the previous request started. A
// slot only free after deadline is not taken: the request ends as a
// timeout rather than hold its source past its budget.
func (t *Transport) space(ctx context.Context, deadline time.Time) error {
	if t.gap <= 0 {
		return nil
	}
	t.mu.Lock()
	now := time.Now()
	wait := t.last.Add(t.gap).Sub(now)
	if !now.Add(wait).Before(deadline) {
		t.mu.Unlock()
		return &Error{Reason: ReasonTimeout, Err: fmt.Errorf("the next request slot, in %v: %w", wait.Round(time.Second), errPastBudget)}
	}
	t.last = now.Add(max(wait, 0))
	t.mu.Unlock()
	return sleep(ctx, wait)
}

func transportError(ctx, actx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if actx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return &Error{Reason: ReasonTimeout, Err: err}
	}
	return &Error{Reason: ReasonNetwork, Err: err}
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(time.Until(t), 0), maxRetryAfter)
	}
	return 0
}
