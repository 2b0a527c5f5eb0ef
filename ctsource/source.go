// Package ctsource is what every source of certificates shares: the Source
// interface and the Env a source polls with, the Recorder that turns the
// certificates a source finds into issuances in the state, the reasons a
// failure is counted under, the HTTP transport every request goes through,
// and the per-watch schedule of the search sources.
//
// The sources are its subpackages, one per kind: ctlog follows CT logs,
// crtsh and certspotter search crt.sh and the Cert Spotter API, loglist
// reads the log lists that name the logs to follow. cert reads
// certificates for all of them.
package ctsource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ct-exporter/ct_exporter/state"
)

// Reasons label ct_source_errors_total. The set is fixed (pinned): it must
// stay small and stable for alerting and dashboards.
const (
	ReasonTimeout     = "timeout"
	ReasonHTTP429     = "http_429"
	ReasonHTTP5xx     = "http_5xx"
	ReasonHTTP4xx     = "http_4xx"
	ReasonBadResponse = "bad_response"
	ReasonTruncated   = "truncated_results"
	ReasonNetwork     = "network"
	// ReasonRecord counts certificates that could not be recorded (their
	// record or keys exceed what the state file stores): skipped, so that
	// one certificate never stops a source.
	ReasonRecord = "record"
	// ReasonListTooLarge is a log list naming more logs than its max_logs:
	// it is refused whole, as a list that does not parse is.
	ReasonListTooLarge = "list_too_large"
	// ReasonBadSignature is a log list whose detached signature does not
	// verify with the source's public_key, or that has no signature: it is
	// refused whole, and the previous list kept.
	ReasonBadSignature = "bad_signature"
)

// Reasons lists every reason, so that each source's counters exist from the start.
var Reasons = []string{ReasonTimeout, ReasonHTTP429, ReasonHTTP5xx, ReasonHTTP4xx, ReasonBadResponse, ReasonTruncated, ReasonNetwork, ReasonRecord, ReasonListTooLarge, ReasonBadSignature}

// Error is a source failure with the reason it is counted under.
type Error struct {
	Reason     string
	RetryAfter time.Duration // from a Retry-After header, 0 when none
	Err        error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Reason, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// ErrorCounter counts one failed attempt of a source under
// ct_source_errors_total, by reason. A source is made with its counter,
// and gives it to its transport: every failure is counted there, as it
// happens, and the caller of Poll counts nothing.
type ErrorCounter func(reason string)

// Count counts one failed attempt; a nil ErrorCounter counts nothing.
func (c ErrorCounter) Count(reason string) {
	if c != nil {
		c(reason)
	}
}

// ReasonOf returns the reason of a source error, or "" for other errors.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Source is somewhere certificates come from.
type Source interface {
	Name() string
	// Poll records what is new since the last poll. It returns nil only
	// when the source answered completely; a partial answer is an error,
	// never "no certificates". A search source (WatchSource) returns nil
	// only when none of its watches is failing, those it did not search
	// because their retry is not due included; a *PausedError in the error
	// asks the caller to pause the whole source. Failed attempts are
	// counted with the ErrorCounter the source was made with, as they
	// happen, so the caller counts nothing.
	Poll(ctx context.Context, env *Env) error
	// Close releases what the source holds (idle connections) once it is
	// stopped.
	Close()
}

// Env is what a source polls with.
type Env struct {
	Recorder *Recorder
	Logger   *slog.Logger
	// NewIssuance, when set, is told of every issuance recorded as new for
	// some watches, after its transaction committed (ct_exporter check
	// prints them). It must not block.
	NewIssuance func(is *state.Issuance, fresh []state.Match)
	// WatchSearched, when set, is told of every successful search of a
	// watch by a search source, and when it ended
	// (ct_source_watch_last_success_timestamp_seconds).
	WatchSearched func(watch string, at time.Time)
	// LogListAccepted, when set, is told the log_list_timestamp of every
	// log list a loglist source accepts (the zero time when the list has
	// none): ct_loglist_timestamp_seconds.
	LogListAccepted func(timestamp time.Time)
	// Fence, when set, is the lease this replica holds on the source
	// (state in PostgreSQL, shared by replicas), nil once it is lost:
	// every Commit carries it, and the store refuses the commit (an error
	// wrapping state.ErrFenced) unless the lease is still this one.
	Fence func() *state.Fence
}

// Backoff returns how long to wait before attempt number failures+1: an
// exponential delay from base with full jitter, capped. Jitter keeps many
// exporters (or sources) from retrying in lockstep.
func Backoff(failures int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < failures && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	if d <= 0 {
		return 0
	}
	// Half fixed, half random: never retry immediately, never in lockstep.
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// DecodeJSONArray decodes an answer that must be one complete JSON array:
// search services answer errors with objects, and cut connections leave
// truncated JSON, neither of which may read as "nothing found".
func DecodeJSONArray[T any](body []byte) ([]T, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var out []T
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if out == nil {
		return nil, errors.New("the answer is not a JSON array")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON array")
	}
	return out, nil
}
