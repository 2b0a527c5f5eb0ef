package ctsource

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
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
	tr := newTransport(5*time.Second, 0, time.Second, 1<<20)
	counted := map[string]int{}
	ctx := withErrorCounter(context.Background(), func(r string) { counted[r]++ })
	if _, err := tr.get(ctx, srv.URL+"/bomb", "*/*"); ReasonOf(err) != ReasonBadResponse || counted[ReasonBadResponse] != 1 {
		t.Fatalf("bomb (%d bytes compressed): %v, %v", bomb.Len(), err, counted)
	}
	resp, err := tr.get(ctx, srv.URL+"/tile", "*/*")
	if err != nil || string(resp.body) != "hello, tile" {
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
	tr := newTransport(300*time.Millisecond, 0, time.Second, 1<<20)
	tr.backoffBase = time.Millisecond
	counted := map[string]int{}
	ctx := withErrorCounter(context.Background(), func(r string) { counted[r]++ })
	start := time.Now()
	if _, err := tr.get(ctx, srv.URL+"/trickle", "*/*"); ReasonOf(err) != ReasonTimeout || counted[ReasonTimeout] != tr.attempts {
		t.Fatalf("trickling server: %v, %v", err, counted)
	}
	if took := time.Since(start); took > time.Duration(tr.attempts)*time.Second {
		t.Fatalf("a trickling server held the request %v", took)
	}
	if _, err := tr.get(ctx, srv.URL+"/huge", "*/*"); ReasonOf(err) != ReasonBadResponse {
		t.Fatalf("oversized answer: %v", err)
	}
}
