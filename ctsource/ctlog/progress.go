package ctlog

import (
	"fmt"
	"log/slog"
	"time"
)

// progress logs a long catch-up: every `every`, and once at the end when it
// logged before, so that the log shows where it stands, how fast it goes
// and when it will be done.
type progress struct {
	log         string
	start, end  int64
	began, last time.Time
	every       time.Duration
	lastAt      int64
	reported    bool
}

func newProgress(log string, start, end int64, every time.Duration) *progress {
	now := time.Now()
	return &progress{log: log, start: start, end: end, began: now, last: now, every: every, lastAt: start}
}

func (p *progress) report(logger *slog.Logger, at int64) {
	now := time.Now()
	if at >= p.end || now.Sub(p.last) < p.every {
		return
	}
	// The rate over the last period, not since the start: it follows a log
	// that slows down (rate limits) or a disk that speeds up (page cache).
	rate := float64(at-p.lastAt) / now.Sub(p.last).Seconds()
	args := []any{"log", p.log, "position", at, "tree_size", p.end, "entries_behind", p.end - at,
		"done_percent", fmt.Sprintf("%.1f", 100*float64(at-p.start)/float64(p.end-p.start)),
		"entries_per_second", int64(rate)}
	if rate > 0 {
		args = append(args, "eta", time.Duration(float64(p.end-at)/rate*float64(time.Second)).Round(time.Second).String())
	}
	logger.Info("catching up", args...)
	p.last, p.lastAt, p.reported = now, at, true
}

func (p *progress) done(logger *slog.Logger, at *int64) {
	if !p.reported {
		return
	}
	elapsed := time.Since(p.began)
	logger.Info("catch-up ended", "log", p.log, "position", *at, "tree_size", p.end, "entries", *at-p.start,
		"took", elapsed.Round(time.Millisecond).String(),
		"entries_per_second", int64(float64(*at-p.start)/elapsed.Seconds()))
}
