// Command bench measures how fast ct_exporter follows a CT log: it
// generates a realistic log (deterministically, from -seed), serves it over
// RFC 6962 and static-ct-api from a separate server process with
// precomputed answers, follows it from the beginning with the exporter's
// own follower (ctsource/ctlog) into a fresh state file, and reports throughput,
// CPU per entry, peak memory, and whether exactly the planted issuances for
// the watched domains were found.
//
//	go run ./bench -entries 1000000 -protocol both
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

type options struct {
	entries    int64
	seed       uint64
	epoch      string
	batch      int
	workers    int
	protocol   string
	cpuprofile string
	gzipLevel  int
	listen     string
	timeout    time.Duration
	serve      bool
	stateURL   string
}

func parseOptions(args []string, errOut io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Int64Var(&o.entries, "entries", 1000000, "entries in the log")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the generated log")
	fs.StringVar(&o.epoch, "epoch", "", "day the log is made for, YYYY-MM-DD (default today, UTC): certificates are valid on it")
	fs.IntVar(&o.batch, "batch", 1000, "entries per get-entries request and per batch of the follower")
	fs.IntVar(&o.workers, "workers", 4, "parallel fetches of the follower")
	fs.StringVar(&o.protocol, "protocol", "both", "rfc6962, static or both")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the measuring process (per protocol: NAME.rfc6962.EXT, NAME.static.EXT for both)")
	fs.IntVar(&o.gzipLevel, "gzip-level", 6, "gzip level of the static data tiles (6 is Sunlight's, the default)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "server address (loopback only)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up a measurement after this long")
	fs.BoolVar(&o.serve, "serve", false, "only run the server, printing its address and public key, until killed")
	fs.StringVar(&o.stateURL, "state-url", "", "also measure each protocol with the state in PostgreSQL: a URL (or key=value string) whose role may CREATE DATABASE; each measurement uses a fresh database, dropped after")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case o.protocol != "rfc6962" && o.protocol != "static" && o.protocol != "both":
		return nil, fmt.Errorf("-protocol must be rfc6962, static or both")
	case o.entries < MinEntries:
		return nil, fmt.Errorf("-entries must be at least %d", MinEntries)
	case o.batch < 1 || o.workers < 1:
		return nil, fmt.Errorf("-batch and -workers must be positive")
	case !strings.HasPrefix(o.listen, "127.") && !strings.HasPrefix(o.listen, "localhost:") && !strings.HasPrefix(o.listen, "[::1]:"):
		return nil, fmt.Errorf("-listen must be a loopback address")
	}
	if o.epoch == "" {
		o.epoch = time.Now().UTC().Format(time.DateOnly)
	}
	if _, err := time.Parse(time.DateOnly, o.epoch); err != nil {
		return nil, fmt.Errorf("-epoch: %v", err)
	}
	return o, nil
}

func (o *options) config() Config {
	epoch, _ := time.Parse(time.DateOnly, o.epoch)
	return Config{Entries: o.entries, Seed: o.seed, Epoch: epoch}
}

// serverArgs are the flags the server process needs.
func (o *options) serverArgs() []string {
	return []string{
		"-entries", strconv.FormatInt(o.entries, 10), "-seed", strconv.FormatUint(o.seed, 10),
		"-epoch", o.epoch, "-batch", strconv.Itoa(o.batch), "-protocol", o.protocol,
		"-gzip-level", strconv.Itoa(o.gzipLevel), "-listen", o.listen,
	}
}

func main() {
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if os.Getenv(serveEnv) == "serve" || o.serve {
		if err := serve(o, !o.serve); err != nil {
			fmt.Fprintln(os.Stderr, "bench server:", err)
			os.Exit(1)
		}
		return
	}
	if _, err := run(context.Background(), o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run starts the server, measures each protocol and reports. It fails when
// a measurement did not find exactly the needles.
func run(ctx context.Context, o *options, out, errOut io.Writer) ([]*Result, error) {
	t := time.Now()
	g, err := NewGenerator(o.config())
	if err != nil {
		return nil, err
	}
	needles, err := g.Expected()
	if err != nil {
		return nil, err
	}
	plan := g.Plan()
	fmt.Fprintf(out, "log: %d entries (seed %d, epoch %s): %d needle issuances (%d entries), %d decoys, %d malformed; expected set computed in %v\n",
		o.entries, o.seed, o.epoch, len(needles), 2*len(needles), len(plan.Decoys), len(plan.Malformed), time.Since(t).Round(time.Millisecond))

	srv, err := startServer(o, errOut)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	rd := srv.Ready
	if rd.TreeSize != o.entries {
		return nil, fmt.Errorf("server serves %d entries, want %d", rd.TreeSize, o.entries)
	}
	fmt.Fprintf(out, "server (pid %d): generated the entries in %.1fs", srv.pid(), rd.GenerateSeconds)
	if rd.RFC6962Bytes > 0 {
		fmt.Fprintf(out, "; RFC 6962 answers (%.0f MB JSON) in %.1fs", float64(rd.RFC6962Bytes)/1e6, rd.RFC6962Seconds)
	}
	if rd.StaticBytes > 0 {
		fmt.Fprintf(out, "; static tiles (%.0f MB gzip level %d) in %.1fs", float64(rd.StaticBytes)/1e6, o.gzipLevel, rd.StaticSeconds)
	}
	fmt.Fprintf(out, "; ready after %.1fs, RSS %.1f GB\n", srv.Setup.Seconds(), float64(rd.RSS)/1e9)
	fmt.Fprintf(out, "follower: %d workers, batch %d, Go %s, GOMAXPROCS %d\n\n", o.workers, o.batch, goVersion(), gomaxprocs())

	var results []*Result
	for _, p := range []string{"rfc6962", "static"} {
		if o.protocol != "both" && o.protocol != p {
			continue
		}
		for _, pg := range []bool{false, true} {
			if pg && o.stateURL == "" {
				continue
			}
			r, err := measure(ctx, o, srv, p, pg, needles, len(plan.Malformed))
			if err != nil {
				return results, err
			}
			results = append(results, r)
		}
	}
	report(out, results)
	for _, r := range results {
		if !r.OK() {
			return results, fmt.Errorf("%s: %w", r.Name(), errMismatch)
		}
	}
	return results, nil
}

func report(out io.Writer, results []*Result) {
	fmt.Fprintf(out, "%-11s %9s %8s %10s %9s %22s %15s %9s %9s %9s %s\n",
		"store", "entries", "wall", "entries/s", "cpu µs/e", "server cpu", "peak RSS", "requests", "MB served", "found", "malformed")
	for _, r := range results {
		var reqs, bytes int64
		for _, c := range r.Requests {
			reqs += c.Requests
			bytes += c.Bytes
		}
		rss := fmt.Sprintf("%.0f MiB", float64(r.PeakRSS)/(1<<20))
		if !r.RSSReset { // the process's peak, less its RSS at the start
			rss = fmt.Sprintf("%.0f MiB (-)", float64(r.PeakRSS-r.BaselineRSS)/(1<<20))
		}
		fmt.Fprintf(out, "%-11s %9d %8s %10.0f %9.1f %22s %15s %9d %9.0f %4d/%-4d %d/%d\n",
			r.Name(), r.Entries, r.Wall.Round(10*time.Millisecond), float64(r.Entries)/r.Wall.Seconds(),
			float64(r.CPU.Microseconds())/float64(r.Entries),
			fmt.Sprintf("%.2fs (%.0f%% of client)", r.ServerCPU.Seconds(), 100*r.ServerCPU.Seconds()/r.CPU.Seconds()),
			rss, reqs, float64(bytes)/1e6, r.Found, r.Needles, r.Malformed, r.WantMalform)
	}
	for _, r := range results {
		if !r.RSSReset {
			fmt.Fprintf(out, "\n%s: peak RSS could not be reset (/proc/self/clear_refs): shown as VmHWM minus the RSS at the start", r.Name())
		}
		fmt.Fprintf(out, "\n%s: requests served:", r.Name())
		for _, k := range sortedKeys(r.Requests) {
			c := r.Requests[k]
			fmt.Fprintf(out, " %s %d (%.1f MB)", k, c.Requests, float64(c.Bytes)/1e6)
		}
		if len(r.SourceErrors) > 0 {
			fmt.Fprintf(out, "; source errors: %v", r.SourceErrors)
		}
		if r.OK() {
			fmt.Fprintf(out, "\n%s: OK: exactly the %d needles found, %d malformed entries counted\n", r.Name(), r.Needles, r.Malformed)
			continue
		}
		fmt.Fprintf(out, "\n%s: MISMATCH:\n", r.Name())
		for i, p := range r.Problems {
			if i == 20 {
				fmt.Fprintf(out, "  … %d more\n", len(r.Problems)-i)
				break
			}
			fmt.Fprintf(out, "  %s\n", p)
		}
	}
}

func goVersion() string { return runtime.Version() }

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
