// Package connlimit bounds the HTTP connections a server holds, as
// Prometheus's --web.max-connections does, without letting idle ones lock
// out a client with a request to make.
//
// A plain limiting listener (golang.org/x/net/netutil.LimitListener) makes
// the connection over the limit wait in the kernel's backlog until one
// closes: a client that opens the limit's worth of connections and sends
// nothing (or is answered 401 and keeps its connection alive) holds
// Prometheus's scrape back until timeouts close them. Here, when every
// slot is taken, the connection idle for longest (no request under way:
// none yet, or between keep-alive requests) is closed to make room; only
// connections with a request under way make a new one wait (accepted, and
// held until a slot frees: one per listener at most).
package connlimit

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Limiter tracks the connections of one server. Wrap each of its listeners
// with Listener, and install ConnState as the server's ConnState hook.
type Limiter struct {
	slots chan struct{}

	mu   sync.Mutex
	idle map[net.Conn]time.Time // connections with no request under way, since when
}

// New returns a limiter of at most max simultaneous connections (max < 1:
// no limit).
func New(max int) *Limiter {
	l := &Limiter{idle: map[net.Conn]time.Time{}}
	if max > 0 {
		l.slots = make(chan struct{}, max)
	}
	return l
}

// ConnState is the server's ConnState hook: it tells idle connections,
// which may be closed to make room, from those serving a request.
func (l *Limiter) ConnState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s {
	case http.StateNew, http.StateIdle:
		l.idle[c] = time.Now()
	default:
		delete(l.idle, c)
	}
}

// evictIdle closes the connection idle for longest, if there is one.
func (l *Limiter) evictIdle() {
	l.mu.Lock()
	var oldest net.Conn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(l.idle, oldest)
	l.mu.Unlock()
	if oldest != nil {
		oldest.Close()
	}
}

// Listener returns ln, bounded by the limiter.
func (l *Limiter) Listener(ln net.Listener) net.Listener {
	if l.slots == nil {
		return ln
	}
	return &listener{Listener: ln, l: l}
}

type listener struct {
	net.Listener
	l *Limiter
}

// evictEvery is how often a full limiter looks again for an idle
// connection to close while every one is serving a request.
const evictEvery = 100 * time.Millisecond

// Accept takes the next connection, then a slot for it: making room only
// once a connection is waiting, so that a connection between its accept
// and its first request is not closed for nothing.
func (ln *listener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l := ln.l
	select {
	case l.slots <- struct{}{}:
	default:
		t := time.NewTicker(evictEvery)
		defer t.Stop()
		for acquired := false; !acquired; {
			l.evictIdle()
			select {
			case l.slots <- struct{}{}:
				acquired = true
			case <-t.C:
			}
		}
	}
	return &conn{Conn: c, release: func() { <-l.slots }}, nil
}

type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
