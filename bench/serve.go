package main

// The server process: it generates the log, precomputes the answers of the
// protocols asked for, listens on loopback, and says so on stdout with one
// JSON line. Started by the measuring process, it exits when its stdin
// closes (so it never outlives its parent).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// serveEnv marks the re-executed server process.
const serveEnv = "CT_EXPORTER_BENCH_ROLE"

// Ready is what the server says once it serves.
type Ready struct {
	Addr      string
	PublicKey []byte // DER SubjectPublicKeyInfo, for both protocols
	TreeSize  int64
	Timestamp int64 // of the tree heads, ms
	// Seconds spent generating the entries and building each protocol's
	// answers, and the bytes precomputed.
	GenerateSeconds, RFC6962Seconds, StaticSeconds float64
	RFC6962Bytes, StaticBytes                      int64
	RFC6962Root, StaticRoot                        []byte
	RSS                                            int64 // after setup, bytes
}

type counter struct{ Requests, Bytes int64 }

// stats counts requests and bytes by kind; /stats serves them.
type stats struct {
	mu sync.Mutex
	m  map[string]*counter
}

func (s *stats) reply(w http.ResponseWriter, kind, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.Write(body)
	s.count(kind, len(body))
}

func (s *stats) count(kind string, bytes int) {
	s.mu.Lock()
	c := s.m[kind]
	if c == nil {
		c = &counter{}
		s.m[kind] = c
	}
	c.Requests++
	c.Bytes += int64(bytes)
	s.mu.Unlock()
}

func (s *stats) snapshot() map[string]counter {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]counter{}
	for k, c := range s.m {
		out[k] = *c
	}
	return out
}

// parallel runs f(0..n-1) on GOMAXPROCS goroutines.
func parallel(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// generate makes all the entries, in parallel.
func generate(g *Generator) []Entry {
	entries := make([]Entry, g.cfg.Entries)
	const chunk = 4096
	parallel(int((g.cfg.Entries+chunk-1)/chunk), func(c int) {
		for i := int64(c) * chunk; i < min(int64(c+1)*chunk, g.cfg.Entries); i++ {
			entries[i] = g.Entry(i)
		}
	})
	return entries
}

// serve runs the server process until its stdin closes (or forever when
// untilEOF is false).
func serve(o *options, untilEOF bool) error {
	// The answers are long-lived and pointer-free: collect often rather
	// than let the heap double.
	debug.SetGCPercent(25)
	g, err := NewGenerator(o.config())
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	rd := Ready{PublicKey: pub, TreeSize: o.entries, Timestamp: o.config().Epoch.Add(-time.Minute).UnixMilli()}
	st := &stats{m: map[string]*counter{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(st.snapshot())
	})

	if p := os.Getenv("CT_EXPORTER_BENCH_SETUP_PROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer f.Close()
	}
	t := time.Now()
	entries := generate(g)
	rd.GenerateSeconds = time.Since(t).Seconds()
	logf("generated %d entries in %.1fs", len(entries), rd.GenerateSeconds)
	if o.protocol != "static" {
		t := time.Now()
		l, err := buildRFC6962(g, entries, int64(o.batch), key, rd.Timestamp, st)
		if err != nil {
			return err
		}
		rd.RFC6962Seconds = time.Since(t).Seconds()
		for _, b := range l.bodies {
			rd.RFC6962Bytes += int64(len(b))
		}
		rd.RFC6962Root = l.root[:]
		l.register(mux)
		logf("rfc6962: %d get-entries answers, %.0f MB of JSON, in %.1fs", len(l.bodies), float64(rd.RFC6962Bytes)/1e6, rd.RFC6962Seconds)
	}
	if o.protocol != "rfc6962" {
		t := time.Now()
		l, err := buildStatic(g, entries, key, rd.Timestamp, o.gzipLevel, st)
		if err != nil {
			return err
		}
		rd.StaticSeconds = time.Since(t).Seconds()
		for _, b := range l.data {
			rd.StaticBytes += int64(len(b))
		}
		rd.StaticRoot = l.root[:]
		l.register(mux)
		logf("static: %d data tiles, %.0f MB gzipped (level %d), in %.1fs", len(l.data), float64(rd.StaticBytes)/1e6, o.gzipLevel, rd.StaticSeconds)
	}
	pprof.StopCPUProfile()
	entries = nil
	runtime.GC()
	debug.FreeOSMemory()
	rd.RSS = procStatus(os.Getpid(), "VmRSS")

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	rd.Addr = ln.Addr().String()
	line, _ := json.Marshal(rd)
	fmt.Printf("%s\n", line)
	var h http.Handler = mux
	if os.Getenv("CT_EXPORTER_BENCH_TRACE") != "" {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			logf("%s", r.URL.RequestURI())
			mux.ServeHTTP(w, r)
		})
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}
	if untilEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
	}
	return srv.Serve(ln)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench server: "+format+"\n", args...)
}
