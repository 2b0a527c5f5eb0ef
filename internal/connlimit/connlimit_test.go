package connlimit

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

// serve runs an http.Server behind a Limiter of max connections and returns
// its address.
func serve(t *testing.T, max int) (string, *Limiter) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(max, nil)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		// Long: only the limiter may close a connection in these tests.
		ReadHeaderTimeout: time.Minute,
		ConnState:         l.ConnState,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l.Listen(inner)) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return inner.Addr().String(), l
}

// waitActive waits until n connections have a request in progress: a
// request sent is not yet one the server has read.
func waitActive(t *testing.T, l *Limiter, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d active connections", n), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		active := 0
		for c := range l.conns {
			if c.state == http.StateActive {
				active++
			}
		}
		return active == n
	})
}

type client struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one response, waiting at most d.
func (c *client) response(d time.Duration) (*http.Response, error) {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	res, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	return res, err
}

func (c *client) mustAnswer() {
	c.t.Helper()
	res, err := c.response(30 * time.Second)
	if err != nil {
		c.t.Fatalf("no answer: %v", err)
	}
	if res.StatusCode != 200 {
		c.t.Fatalf("answer %s", res.Status)
	}
}

// closedByServer fails unless the server closes the connection (a reset
// when it closed with a request unread).
func (c *client) closedByServer() {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.r.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("read %d bytes, %v; want the server to close the connection", n, err)
	}
}

const get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

// busy is a request whose body never comes: net/http reads it before the
// response goes out, so the connection stays active.
const busy = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n"

func TestSilentConnectionsMakeRoom(t *testing.T) {
	addr, _ := serve(t, 2)
	first, second := dial(t, addr), dial(t, addr)
	// The second has been answered and waits for another request.
	second.send(get)
	second.mustAnswer()

	third := dial(t, addr)
	third.send(get)
	third.mustAnswer()
	// The one silent longest went, the keep-alive one stays.
	first.closedByServer()
	second.send(get)
	second.mustAnswer()
}

func TestBusyConnectionsMakeTheNextWait(t *testing.T) {
	addr, l := serve(t, 2)
	a, b := dial(t, addr), dial(t, addr)
	a.send(busy)
	b.send(busy)
	waitActive(t, l, 2)

	c := dial(t, addr)
	c.send(get)
	// Absence over a window: the answer must not come while both are busy.
	if _, err := c.response(500 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("answered while every slot was busy: %v", err)
	}
	// a's body arrives: it is answered and idle, so c takes its place.
	a.send("x")
	a.mustAnswer()
	c.mustAnswer()
	a.closedByServer()

	// Closing a connection frees its slot too.
	c.send(busy)
	waitActive(t, l, 2)
	d := dial(t, addr)
	d.send(get)
	if _, err := d.response(500 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("answered while every slot was busy: %v", err)
	}
	b.Close()
	d.mustAnswer()
}

func TestTricklingConnectionIsClosedOnceSilent(t *testing.T) {
	addr, _ := serve(t, 1)
	slow := dial(t, addr)
	slow.send("GET / HTTP/1.1\r\n")
	next := dial(t, addr)
	next.send(get)
	next.mustAnswer()
	slow.closedByServer()
}

func TestWaitingAcceptEndsWithTheServer(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(1, nil)
	srv := &http.Server{Handler: http.NotFoundHandler(), ConnState: l.ConnState}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l.Listen(inner)) }()
	addr := inner.Addr().String()
	a := dial(t, addr)
	a.send(busy)
	waitActive(t, l, 1)
	waiting := dial(t, addr)
	waiting.send(get)
	if _, err := waiting.response(300 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("answered over the limit: %v", err)
	}
	srv.Close()
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	waiting.closedByServer()
}

func TestConnStateFindsTheConnectionUnderTLS(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &conn{Conn: a}
	if got := unwrap(tls.Server(c, &tls.Config{})); got != c {
		t.Fatalf("unwrap(*tls.Conn) = %v", got)
	}
	if got := unwrap(b); got != nil {
		t.Fatalf("unwrap of a connection not from a limited listener = %v", got)
	}
}

func TestFit(t *testing.T) {
	n, ok := descriptorLimit()
	if !ok {
		t.Skip("no descriptor limit on this system")
	}
	if got := Fit(1 << 30); uint64(got) != n/2 {
		t.Errorf("Fit(1<<30) = %d with %d descriptors", got, n)
	}
	if got := Fit(1); got != 1 {
		t.Errorf("Fit(1) = %d", got)
	}
}
