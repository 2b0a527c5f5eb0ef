package ctsource

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// A gzip bomb (a small answer that inflates to 100 MB) stops at the size
// cap and is a bad_response; a normal gzip answer is inflated.
func TestTransportBoundsDecompression(t *testing.T) {
	var bomb, small bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(make([]byte, 100<<20))
	zw.Close()
	zw = gzip.NewWriter(&small)
	zw.Write([]byte("hello, tile"))
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "gzip" {
			t.Errorf("Accept-Encoding %q", r.Header.Get("Accept-Encoding"))
		}
		w.Header().Set("Content-Encoding", "gzip")
		if r.URL.Path == "/bomb" {
			w.Write(bomb.Bytes())
			return
		}
		w.Write(small.Bytes())
	}))
	defer srv.Close()
	counted := map[string]int{}
	tr := NewTransport(5*time.Second, 0, time.Second, 1<<20, func(r string) { counted[r]++ })
	ctx := context.Background()
	if _, err := tr.Get(ctx, srv.URL+"/bomb", "*/*"); ReasonOf(err) != ReasonBadResponse || counted[ReasonBadResponse] != 1 {
		t.Fatalf("bomb (%d bytes compressed): %v, %v", bomb.Len(), err, counted)
	}
	resp, err := tr.Get(ctx, srv.URL+"/tile", "*/*")
	if err != nil || string(resp.Body) != "hello, tile" {
		t.Fatalf("gzip answer: %v, %v", resp, err)
	}
}

// A server that trickles its answer (slow loris) is cut off by the
// per-attempt timeout, body included; an answer over the size cap is a
// bad_response, not an out-of-memory.
func TestTransportSlowAndOversized(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/huge" {
			w.Write(make([]byte, 2<<20))
			return
		}
		w.WriteHeader(200)
		for i := 0; i < 100; i++ {
			if _, err := w.Write([]byte("{")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()
	counted := map[string]int{}
	tr := NewTransport(300*time.Millisecond, 0, time.Second, 1<<20, func(r string) { counted[r]++ })
	tr.BackoffBase = time.Millisecond
	ctx := context.Background()
	start := time.Now()
	if _, err := tr.Get(ctx, srv.URL+"/trickle", "*/*"); ReasonOf(err) != ReasonTimeout || counted[ReasonTimeout] != tr.Attempts {
		t.Fatalf("trickling server: %v, %v", err, counted)
	}
	if took := time.Since(start); took > time.Duration(tr.Attempts)*time.Second {
		t.Fatalf("a trickling server held the request %v", took)
	}
	if _, err := tr.Get(ctx, srv.URL+"/huge", "*/*"); ReasonOf(err) != ReasonBadResponse {
		t.Fatalf("oversized answer: %v", err)
	}
}

// A Content-Length is a claim: a server that announces 60 MiB, sends a few
// bytes and then stalls or hangs up must not make the transport allocate
// for 60 MiB. Compressed (the size a guess from it) or not.
func TestTransportBufferGrowsWithData(t *testing.T) {
	const claimed = 60 << 20
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gzip") != "" {
			w.Header().Set("Content-Encoding", "gzip")
		}
		w.Header().Set("Content-Length", strconv.Itoa(claimed))
		w.WriteHeader(200)
		w.Write([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff{\"entries\":["))
		w.(http.Flusher).Flush()
		if r.URL.Query().Get("stall") == "" {
			panic(http.ErrAbortHandler) // hang up mid-body
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	tr := NewTransport(200*time.Millisecond, 0, time.Second, 64<<20, nil)
	tr.Attempts = 1
	defer tr.Close()
	for _, q := range []string{"", "stall=1", "gzip=1", "gzip=1&stall=1"} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := tr.Get(context.Background(), srv.URL+"/?"+q, "*/*")
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("%s: a truncated body was taken for an answer", q)
		}
		// A few MiB at most: the 1 MiB start, the server's side, the client's.
		if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
			t.Errorf("%s: %d bytes allocated for a body of a few bytes claiming %d", q, got, claimed)
		}
	}
}

// Bodies are read whole however they arrive: byte by byte, with or without
// a Content-Length, shorter or longer than a gzip guess, and cut at the
// size limit; a recycled buffer large enough is used as it is.
func TestReadBody(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 300000) // 4.8 MB
	for _, tc := range []struct {
		name        string
		n           int
		size, limit int64
	}{
		{"known size", len(data), int64(len(data)), 64 << 20},
		{"unknown size", len(data), 0, 64 << 20},
		{"underestimated", len(data), 1000, 64 << 20},
		{"overestimated", 10, 1 << 30, 64 << 20},
		{"empty", 0, 0, 64 << 20},
		{"over the limit", len(data), int64(len(data)), 1 << 20},
		{"exactly the limit", 1 << 20, 1 << 20, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := data[:tc.n]
			if int64(len(want)) > tc.limit+1 {
				want = want[:tc.limit+1]
			}
			for _, r := range []io.Reader{bytes.NewReader(data[:tc.n]), iotest.OneByteReader(bytes.NewReader(data[:tc.n])), iotest.DataErrReader(bytes.NewReader(data[:tc.n]))} {
				got, err := readBody(nil, r, tc.size, tc.limit)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%T: %d bytes, %v; want %d", r, len(got), err, len(want))
				}
				if tc.size >= int64(tc.n) && tc.n > 0 && int64(cap(got)) > min(tc.size, tc.limit+1)+bytes.MinRead {
					t.Errorf("%T: a buffer of %d for a body of %d", r, cap(got), tc.n)
				}
			}
		})
	}
	recycled := make([]byte, 0, 8<<20)
	got, err := readBody(recycled, bytes.NewReader(data), int64(len(data)), 64<<20)
	if err != nil || !bytes.Equal(got, data) || &got[:1][0] != &recycled[:1][0] {
		t.Fatalf("recycled buffer not used: %v", err)
	}
	if _, err := readBody(nil, iotest.ErrReader(io.ErrUnexpectedEOF), 10, 100); err != io.ErrUnexpectedEOF {
		t.Fatalf("read error: %v", err)
	}
}

// One request holds its source at most max(interval, 1h), retries
// included: a Retry-After beyond what is left of that budget ends the
// request with its reason counted, rather than waiting an hour three times.
func TestTransportRetryBudget(t *testing.T) {
	var served atomic.Int32
	retryAfter := "3600"
	okAfter := int32(-1) // answer 200 from this request on (never when -1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		if okAfter >= 0 && n >= okAfter {
			w.Write([]byte("ok"))
			return
		}
		w.Header().Set("Retry-After", retryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	var mu sync.Mutex
	counted := map[string]int{}
	count := func(r string) { mu.Lock(); counted[r]++; mu.Unlock() }
	ctx := context.Background()
	try := func(tr *Transport) error {
		t.Helper()
		served.Store(0)
		clear(counted)
		done := make(chan error, 1)
		go func() { _, err := tr.Get(ctx, srv.URL, "*/*"); done <- err }()
		select {
		case err := <-done:
			return err
		case <-time.After(time.Minute):
			t.Fatal("the request is still waiting")
			return nil
		}
	}

	// The defaults: an interval under an hour gets an hour, so a
	// Retry-After of an hour does not fit after the first attempt.
	tr := NewTransport(5*time.Second, 0, time.Minute, 1<<20, count)
	defer tr.Close()
	if tr.budget != time.Hour || NewTransport(time.Second, 0, 2*time.Hour, 1, nil).budget != 2*time.Hour {
		t.Fatalf("budgets %v and %v, want 1h and the 2h interval", tr.budget, NewTransport(time.Second, 0, 2*time.Hour, 1, nil).budget)
	}
	err := try(tr)
	if ReasonOf(err) != ReasonHTTP429 || served.Load() != 1 || counted[ReasonHTTP429] != 1 || !strings.Contains(err.Error(), "budget of 1h0m0s") {
		t.Fatalf("Retry-After: 3600 = %v after %d requests, counted %v; want one http_429 and no wait", err, served.Load(), counted)
	}

	// Waits that fit are waited, until the next one does not: with 3 s,
	// one wait of 2 s fits, a second does not.
	tr.budget = 3 * time.Second
	retryAfter = "2"
	err = try(tr)
	if ReasonOf(err) != ReasonHTTP429 || served.Load() != 2 || counted[ReasonHTTP429] != 2 {
		t.Fatalf("Retry-After: 2 in a budget of 3s = %v after %d requests, counted %v; want two", err, served.Load(), counted)
	}
	var e *Error
	if !errors.As(err, &e) || e.RetryAfter != 2*time.Second {
		t.Fatalf("the Retry-After is lost: %#v", e)
	}

	// Within the budget a Retry-After is honoured and the request succeeds.
	tr.budget = time.Minute
	retryAfter = "1"
	okAfter = 2
	if err := try(tr); err != nil || served.Load() != 2 || counted[ReasonHTTP429] != 1 {
		t.Fatalf("one 429 with Retry-After: 1 = %v after %d requests, counted %v", err, served.Load(), counted)
	}

	// An attempt's own timeout is cut to what is left of the budget.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()
	tr = NewTransport(time.Hour, 0, time.Minute, 1<<20, count)
	defer tr.Close()
	tr.budget = 300 * time.Millisecond
	clear(counted)
	done := make(chan error, 1)
	go func() { _, err := tr.Get(ctx, slow.URL, "*/*"); done <- err }()
	select {
	case err := <-done:
		if ReasonOf(err) != ReasonTimeout || counted[ReasonTimeout] != 1 {
			t.Fatalf("a hanging server with 300ms of budget: %v, counted %v", err, counted)
		}
	case <-time.After(time.Minute):
		t.Fatal("an attempt ran past the budget")
	}
}

// Spacing counts against the budget too: a request whose turn comes only
// after its budget ends at once, as a timeout, without a request.
func TestTransportSpacingWithinBudget(t *testing.T) {
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer srv.Close()
	counted := map[string]int{}
	tr := NewTransport(5*time.Second, time.Hour, time.Minute, 1<<20, func(r string) { counted[r]++ })
	defer tr.Close()
	tr.budget = time.Minute
	ctx := context.Background()
	if _, err := tr.Get(ctx, srv.URL, "*/*"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := tr.Get(ctx, srv.URL, "*/*"); done <- err }()
	select {
	case err := <-done:
		if ReasonOf(err) != ReasonTimeout || served.Load() != 1 {
			t.Fatalf("a request whose slot is an hour away with a minute of budget: %v, %d served", err, served.Load())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the request waited for its slot past its budget")
	}
	if counted[ReasonTimeout] != 1 {
		t.Fatalf("counted %v", counted)
	}
}

// BenchmarkTransportBody reads a get-entries-sized answer (4 MB, with its
// Content-Length) through the transport: into a recycled buffer, as the
// hot path does, and into a fresh one, as after a garbage collection
// emptied the pool.
func BenchmarkTransportBody(b *testing.B) {
	body := bytes.Repeat([]byte(`{"leaf_input":"AAAA","extra_data":"BBBB"},`), 4<<20/42)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	defer srv.Close()
	tr := NewTransport(time.Minute, 0, time.Minute, 64<<20, nil)
	defer tr.Close()
	ctx := context.Background()
	b.Run("pooled", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			resp, release, err := tr.GetPooled(ctx, srv.URL, "*/*")
			if err != nil || len(resp.Body) != len(body) {
				b.Fatal(err)
			}
			release()
		}
	})
	b.Run("fresh", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			resp, err := tr.Get(ctx, srv.URL, "*/*")
			if err != nil || len(resp.Body) != len(body) {
				b.Fatal(err)
			}
		}
	})
}

// A request made under a lease asks it just before going out: once the
// lease is lost, nothing is sent, the check's error comes back unchanged
// and no source error is counted.
func TestTransportWithLease(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	var counted []string
	tr := NewTransport(time.Second, 0, time.Minute, 1<<10, func(reason string) { counted = append(counted, reason) })
	defer tr.Close()
	held := true
	lost := errors.New("lease lost")
	ctx := WithLease(context.Background(), func() error {
		if held {
			return nil
		}
		return lost
	})
	if _, err := tr.Get(ctx, srv.URL, "text/plain"); err != nil {
		t.Fatal(err)
	}
	held = false
	if _, err := tr.Get(ctx, srv.URL, "text/plain"); err != lost {
		t.Fatalf("a request without the lease: %v, want the check's error", err)
	}
	if n := served.Load(); n != 1 {
		t.Fatalf("the server saw %d requests, want 1 (none once the lease is lost)", n)
	}
	if len(counted) != 0 {
		t.Fatalf("errors counted: %v", counted)
	}
}
