// Package connlimit bounds the connections an HTTP server holds open, across
// all its listeners, without letting idle connections lock others out.
//
// A plain limit (golang.org/x/net/netutil.LimitListener, as Prometheus uses)
// stops accepting at the limit, so whoever holds the connections open decides
// who is served: 512 connections that send nothing keep an authorized scrape
// waiting in the kernel's backlog until timeouts close them. Here, at the
// limit, a new connection takes the place of the one that has been silent the
// longest without a request in progress (the way nginx reuses keep-alive
// connections when it runs out). Only when every connection is busy, or was
// accepted or answered within the last tenth of a second, does the new one
// wait.
package connlimit

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// silence is how long a connection that has started sending (a request
// header, a TLS handshake) may then send nothing and still be treated as busy.
// A client sends a request header in one go; one that pauses this long is idle
// or trickling bytes to hold its connection.
const silence = time.Second

// grace is how long a connection is left after it was accepted or answered
// before it counts as silent: a request can be on its way, or read by the
// server but not yet marked heard. Short, because a connection flood is
// accepted at most max per grace while every connection is that young.
const grace = 100 * time.Millisecond

// Limiter counts the connections of the listeners it wraps together. Set its
// ConnState as the http.Server's ConnState: that is how it knows which
// connections have a request in progress.
type Limiter struct {
	max    int
	logger *slog.Logger

	mu       sync.Mutex
	conns    map[*conn]struct{}
	waiters  int
	changed  chan struct{} // closed when a slot may have become free
	evicted  uint64
	lastWarn time.Time
}

// New returns a Limiter of at most max connections (at least 1). The logger
// hears when the limit is reached, at most once a minute.
func New(max int, logger *slog.Logger) *Limiter {
	if max < 1 {
		max = 1
	}
	return &Limiter{max: max, logger: logger, conns: map[*conn]struct{}{}, changed: make(chan struct{})}
}

// Listen wraps a listener so that its connections count against the limit.
func (l *Limiter) Listen(inner net.Listener) net.Listener {
	return &listener{Listener: inner, limiter: l, closed: make(chan struct{})}
}

// ConnState records what an http.Server is doing with a connection.
func (l *Limiter) ConnState(nc net.Conn, state http.ConnState) {
	c := unwrap(nc)
	if c == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch state {
	case http.StateNew, http.StateIdle:
		c.state = state
		c.since = time.Now().UnixNano()
		l.notifyLocked()
	case http.StateActive, http.StateHijacked:
		c.state = state
	case http.StateClosed:
		l.releaseLocked(c)
	}
}

// notifyLocked wakes the accepts waiting for a slot.
func (l *Limiter) notifyLocked() {
	if l.waiters > 0 {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

func (l *Limiter) releaseLocked(c *conn) {
	if _, ok := l.conns[c]; ok {
		delete(l.conns, c)
		l.notifyLocked()
	}
}

// admit gives c a slot, evicting an idle connection if there is none free,
// or waiting for one; false when done closes first.
func (l *Limiter) admit(c *conn, done <-chan struct{}) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.mu.Lock()
		if len(l.conns) < l.max {
			l.conns[c] = struct{}{}
			l.mu.Unlock()
			return true
		}
		now := time.Now().UnixNano()
		victim, next := l.victimLocked(now)
		for victim != nil && pending(victim.Conn) {
			victim.heard.Store(now)
			victim, next = l.victimLocked(now)
		}
		if victim != nil {
			delete(l.conns, victim)
			l.conns[c] = struct{}{}
			l.evicted++
			l.warnLocked(now)
			l.mu.Unlock()
			// Its server goroutine sees the read fail and ends; its own Close
			// then finds nothing to release.
			victim.Conn.Close()
			return true
		}
		changed := l.changed
		l.waiters++
		l.warnLocked(now)
		l.mu.Unlock()

		wait := time.Duration(next - now)
		if next == 0 {
			wait = time.Hour
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		var closed bool
		select {
		case <-changed:
		case <-timer.C:
		case <-done:
			closed = true
		}
		l.mu.Lock()
		l.waiters--
		l.mu.Unlock()
		if closed {
			return false
		}
	}
}

// victimLocked is the connection silent the longest among those with no
// request in progress, or nil; next is when the first that does not qualify
// yet will have been silent long enough (0 if none will).
func (l *Limiter) victimLocked(now int64) (victim *conn, next int64) {
	var quietSince int64
	for c := range l.conns {
		if c.state != http.StateNew && c.state != http.StateIdle {
			continue
		}
		q, wait := c.since, grace
		if heard := c.heard.Load(); heard > q {
			q, wait = heard, silence
		}
		if at := q + int64(wait); at > now {
			if next == 0 || at < next {
				next = at
			}
			continue
		}
		if victim == nil || q < quietSince {
			victim, quietSince = c, q
		}
	}
	return victim, next
}

func (l *Limiter) warnLocked(now int64) {
	if l.logger == nil || time.Duration(now-l.lastWarn.UnixNano()) < time.Minute {
		return
	}
	l.lastWarn = time.Unix(0, now)
	l.logger.Warn("HTTP connection limit reached: idle connections are closed to make room, and new ones wait while every connection is busy",
		"max_connections", l.max, "idle_connections_closed", l.evicted)
}

// unwrap finds the limited connection under a server's (e.g. a *tls.Conn).
func unwrap(nc net.Conn) *conn {
	for {
		switch v := nc.(type) {
		case *conn:
			return v
		case interface{ NetConn() net.Conn }:
			nc = v.NetConn()
		default:
			return nil
		}
	}
}

type listener struct {
	net.Listener
	limiter   *Limiter
	closeOnce sync.Once
	closed    chan struct{}
}

func (ln *listener) Accept() (net.Conn, error) {
	nc, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, limiter: ln.limiter, state: http.StateNew, since: time.Now().UnixNano()}
	if !ln.limiter.admit(c, ln.closed) {
		nc.Close()
		return nil, net.ErrClosed
	}
	return c, nil
}

func (ln *listener) Close() error {
	ln.closeOnce.Do(func() { close(ln.closed) })
	return ln.Listener.Close()
}

type conn struct {
	net.Conn
	limiter *Limiter
	heard   atomic.Int64 // when a read last returned data, Unix ns

	// Guarded by limiter.mu.
	state http.ConnState
	since int64 // when it entered state, Unix ns
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.heard.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.limiter.mu.Lock()
	c.limiter.releaseLocked(c)
	c.limiter.mu.Unlock()
	return err
}

// CloseWrite keeps the half-close net/http uses so that a client reads a
// response before the connection is reset.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
