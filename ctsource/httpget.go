package ctsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/common/version"
)

// maxRetryAfter bounds how long a Retry-After header can stall a source.
const maxRetryAfter = time.Hour

// getter makes GET requests the way a polite, robust client of a shared
// service must: one at a time, spaced, each with a timeout and a size cap,
// retried with backoff on errors that may pass, honouring Retry-After.
type getter struct {
	client      *http.Client
	timeout     time.Duration // per attempt
	gap         time.Duration // between the start of consecutive requests
	attempts    int           // per request
	backoffBase time.Duration
	backoffCap  time.Duration

	mu   sync.Mutex
	last time.Time
}

type response struct {
	status      int
	contentType string
	body        []byte
}

func newGetter(timeout, gap, interval time.Duration) *getter {
	return &getter{
		// Timeouts come from the per-attempt context; the transport's own
		// bound the phases that can hang before a body arrives.
		client: &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		}},
		timeout:     timeout,
		gap:         gap,
		attempts:    4,
		backoffBase: max(gap, time.Second),
		backoffCap:  interval,
	}
}

// get fetches url, retrying transient failures. Every failed attempt is
// counted with countError. It returns a 2xx response, or an *Error.
func (g *getter) get(ctx context.Context, url, accept string, limit int64, countError func(string)) (*response, error) {
	var last error
	for attempt := 1; attempt <= g.attempts; attempt++ {
		resp, err := g.once(ctx, url, accept, limit)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var e *Error
		if !errors.As(err, &e) {
			return nil, err
		}
		countError(e.Reason)
		last = err
		if !retryable(e.Reason) || attempt == g.attempts {
			break
		}
		wait := Backoff(attempt, g.backoffBase, g.backoffCap)
		if e.RetryAfter > 0 {
			wait = e.RetryAfter
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
	return nil, last
}

func retryable(reason string) bool {
	switch reason {
	case ReasonTimeout, ReasonNetwork, ReasonHTTP429, ReasonHTTP5xx:
		return true
	}
	return false
}

func (g *getter) once(ctx context.Context, url, accept string, limit int64) (*response, error) {
	if err := g.space(ctx); err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, url, nil)
	if err != nil {
		return nil, &Error{Reason: ReasonBadResponse, Err: err}
	}
	req.Header.Set("User-Agent", version.ComponentUserAgent("ct_exporter"))
	req.Header.Set("Accept", accept)
	res, err := g.client.Do(req)
	if err != nil {
		return nil, transportError(ctx, actx, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return nil, transportError(ctx, actx, fmt.Errorf("reading the body of %s: %w", url, err))
	}
	r := &response{status: res.StatusCode, contentType: res.Header.Get("Content-Type"), body: body}
	switch {
	case res.StatusCode == http.StatusTooManyRequests:
		return nil, &Error{Reason: ReasonHTTP429, RetryAfter: retryAfter(res.Header.Get("Retry-After")), Err: fmt.Errorf("GET %s: %s", url, res.Status)}
	case res.StatusCode >= 500:
		return nil, &Error{Reason: ReasonHTTP5xx, RetryAfter: retryAfter(res.Header.Get("Retry-After")), Err: fmt.Errorf("GET %s: %s", url, res.Status)}
	case res.StatusCode >= 400:
		return nil, &Error{Reason: ReasonHTTP4xx, Err: fmt.Errorf("GET %s: %s", url, res.Status)}
	case res.StatusCode < 200 || res.StatusCode > 299:
		return nil, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("GET %s: unexpected %s", url, res.Status)}
	case int64(len(body)) > limit:
		return nil, &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("GET %s: response larger than %d bytes", url, limit)}
	}
	return r, nil
}

// space waits until gap has passed since the previous request started.
func (g *getter) space(ctx context.Context) error {
	g.mu.Lock()
	wait := time.Until(g.last.Add(g.gap))
	g.last = time.Now().Add(max(wait, 0))
	g.mu.Unlock()
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
