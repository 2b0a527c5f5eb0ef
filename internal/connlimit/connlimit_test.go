package connlimit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// server is a test server whose requests for /slow wait until slow is
// closed; inSlow counts them as they begin.
type server struct {
	addr   string
	l      *Limiter
	slow   chan struct{}
	inSlow atomic.Int32
}

func serve(t *testing.T, max int) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), l: New(max), slow: make(chan struct{})}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				s.inSlow.Add(1)
				<-s.slow
			}
			io.WriteString(w, "ok")
		}),
		ConnState: s.l.ConnState,
	}
	go srv.Serve(s.l.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return s
}

// get sends one request on a new connection and reads the answer.
func get(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	return nil
}

// Connections that hold a slot without a request under way (none sent
// yet, or idle after one) are closed to make room: the request gets in.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	addr := serve(t, 10).addr
	var idle []net.Conn
	for i := range 30 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 { // a request answered, the connection kept alive
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
				t.Fatal(err)
			}
		}
		idle = append(idle, c)
	}
	if err := get(addr); err != nil {
		t.Fatalf("a request with every slot idle: %v", err)
	}
	// The oldest idle connections were the ones closed.
	idle[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("the oldest idle connection is still open")
	}
}

// Connections with a request under way are never closed: a new one waits
// for one of them to end. (A request still being sent is not under way: a
// client trickling its headers is closed to make room.)
func TestBusyConnectionsMakeNewOnesWait(t *testing.T) {
	s := serve(t, 2)
	addr := s.addr
	var busy []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		busy = append(busy, c)
	}
	for deadline := time.Now().Add(30 * time.Second); s.inSlow.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow requests never began")
		}
	}
	done := make(chan error, 1)
	go func() { done <- get(addr) }()
	select {
	case err := <-done:
		t.Fatalf("answered while both slots serve a request: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	close(s.slow) // both slow requests end; their connections stay (keep-alive), idle
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("not answered once the requests ended")
	}
	for _, c := range busy {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("a slow request was cut: %v", err)
		}
	}
}

func TestNoLimit(t *testing.T) {
	addr := serve(t, 0).addr
	for range 5 {
		if err := get(addr); err != nil {
			t.Fatal(err)
		}
	}
}
