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
