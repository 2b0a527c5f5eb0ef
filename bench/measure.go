package main

// The measurement: the exporter's CT log follower, as ct_exporter runs it,
// follows the served log from the beginning into a fresh state file, and
// what it recorded is compared with the needles.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/ctlog"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/pgstate"
	"github.com/ct-exporter/ct_exporter/watch"
)

// serverProc is the server process.
type serverProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	Ready Ready
	Setup time.Duration // from start to ready
}

// startServer re-executes this binary as the server and waits until it serves.
func startServer(o *options, stderr io.Writer) (*serverProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, o.serverArgs()...)
	cmd.Env = append(os.Environ(), serveEnv+"=serve")
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &serverProc{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("server did not start: %v", err)
	}
	if err := json.Unmarshal(line, &s.Ready); err != nil {
		s.stop()
		return nil, fmt.Errorf("server said %q: %v", line, err)
	}
	s.Setup = time.Since(start)
	return s, nil
}

func (s *serverProc) pid() int { return s.cmd.Process.Pid }

// stop closes the server's stdin, on which it exits; it is killed if it
// has not after a few seconds.
func (s *serverProc) stop() {
	s.stdin.Close()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

func (s *serverProc) stats() map[string]counter {
	res, err := http.Get("http://" + s.Ready.Addr + "/stats")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var m map[string]counter
	json.NewDecoder(res.Body).Decode(&m)
	return m
}

// Result is one protocol's measurement, with the state in a file or in
// PostgreSQL.
type Result struct {
	Protocol     string
	PostgreSQL   bool
	Entries      int64
	Wall         time.Duration
	CPU          time.Duration // of the measuring process
	ServerCPU    time.Duration
	PeakRSS      int64 // bytes; since the reset, or of the whole process
	RSSReset     bool  // the peak was reset at the start
	BaselineRSS  int64
	Requests     map[string]counter // served during the run, by kind
	SourceErrors map[string]int     // ct_source_errors_total by reason
	Found        uint64             // issuances in the state file
	Needles      int
	Malformed    uint64
	WantMalform  int
	Problems     []string
}

// Name is the protocol, and /pg with the state in PostgreSQL.
func (r *Result) Name() string {
	if r.PostgreSQL {
		return r.Protocol + "/pg"
	}
	return r.Protocol
}

// benchStore is what a measurement uses of the state.
type benchStore interface {
	ctsource.Store
	Snapshot() state.Snapshot
	Close() error
}

// OK is true when exactly the needles were found and the malformed entries counted.
func (r *Result) OK() bool { return len(r.Problems) == 0 }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user+system CPU time of process pid.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: state is
	// field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ
	return time.Duration(ut+st) * time.Second / ticks
}

// procStatus reads a kB field of /proc/<pid>/status, in bytes.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS makes VmHWM start again from the current RSS.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// measure follows the log over protocol from the beginning and checks what
// was found.
func measure(ctx context.Context, o *options, srv *serverProc, protocol string, pg bool, needles []Needle, malformed int) (*Result, error) {
	dir, err := os.MkdirTemp("", "ct_exporter-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var store benchStore
	if pg {
		u, drop, err := freshDatabase(ctx, o.stateURL, protocol)
		if err != nil {
			return nil, fmt.Errorf("-state-url: %w", err)
		}
		defer drop()
		s, err := pgstate.Open(u, pgstate.Options{})
		if err != nil {
			return nil, err
		}
		store = s
	} else {
		s, err := state.Open(filepath.Join(dir, "bench.state"), state.Options{})
		if err != nil {
			return nil, err
		}
		store = s
	}
	defer store.Close()
	var ws []watch.Watch
	for _, d := range Watched {
		ws = append(ws, watch.NewWatch(d, true))
	}
	set := watch.NewSet(ws)
	var mu sync.Mutex
	sourceErrors := map[string]int{}
	env := &ctsource.Env{
		Recorder: &ctsource.Recorder{Store: store, Policy: func() *watch.Set { return set }},
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	name := "bench-" + protocol
	lo := ctlog.Options{
		Interval: time.Minute, Timeout: time.Minute, Start: "beginning",
		Workers: o.workers, BatchSize: o.batch, MMD: 24 * time.Hour,
		CountError: func(reason string) {
			mu.Lock()
			sourceErrors[reason]++
			mu.Unlock()
		},
	}
	var l *ctlog.Log
	base := "http://" + srv.Ready.Addr
	if protocol == "rfc6962" {
		l, err = ctlog.NewRFC6962(name, base+"/", srv.Ready.PublicKey, lo)
	} else {
		l, err = ctlog.NewStatic(name, base+"/log", srv.Ready.PublicKey, lo)
	}
	if err != nil {
		return nil, err
	}

	res := &Result{Protocol: protocol, PostgreSQL: pg, Entries: srv.Ready.TreeSize, Needles: len(needles), WantMalform: malformed}
	runtime.GC()
	debug.FreeOSMemory()
	res.BaselineRSS = procStatus(os.Getpid(), "VmRSS")
	res.RSSReset = resetPeakRSS()
	stats0 := srv.stats()
	if o.cpuprofile != "" {
		f, err := os.Create(profilePath(o, protocol))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	start, cpu0, srv0 := time.Now(), cpuTime(), procCPU(srv.pid())
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	for {
		if err := l.Poll(ctx, env); err != nil {
			pprof.StopCPUProfile()
			return nil, fmt.Errorf("%s: poll: %w", protocol, err)
		}
		if st := l.Status(); st.Known && st.Position >= st.TreeSize {
			break
		}
	}
	res.Wall, res.CPU, res.ServerCPU = time.Since(start), cpuTime()-cpu0, procCPU(srv.pid())-srv0
	pprof.StopCPUProfile()
	res.PeakRSS = procStatus(os.Getpid(), "VmHWM")
	res.Requests = diffStats(stats0, srv.stats())
	res.SourceErrors = sourceErrors
	res.Problems = check(store, l, name, needles, malformed, res)
	return res, nil
}

func profilePath(o *options, protocol string) string {
	if o.protocol != "both" {
		return o.cpuprofile
	}
	ext := filepath.Ext(o.cpuprofile)
	return strings.TrimSuffix(o.cpuprofile, ext) + "." + protocol + ext
}

func diffStats(before, after map[string]counter) map[string]counter {
	out := map[string]counter{}
	for k, a := range after {
		b := before[k]
		if d := (counter{a.Requests - b.Requests, a.Bytes - b.Bytes}); d.Requests > 0 {
			out[k] = d
		}
	}
	return out
}

// check compares the state file with the needles.
func check(store benchStore, l *ctlog.Log, name string, needles []Needle, malformed int, res *Result) []string {
	var problems []string
	snap := store.Snapshot()
	res.Found = snap.Certificates
	var processed uint64
	for _, c := range snap.Counters {
		if len(c.Labels) == 1 && c.Labels[0] == name {
			switch c.Name {
			case state.CounterLogMalformed:
				res.Malformed = c.Value
			case state.CounterLogProcessed:
				processed = c.Value
			}
		}
	}
	if processed != uint64(res.Entries) {
		problems = append(problems, fmt.Sprintf("%d entries processed, want %d", processed, res.Entries))
	}
	if res.Malformed != uint64(malformed) {
		problems = append(problems, fmt.Sprintf("%d malformed entries counted, want %d", res.Malformed, malformed))
	}
	for check, n := range l.Status().Failures {
		if n > 0 {
			problems = append(problems, fmt.Sprintf("verification check %s failed %d times", check, n))
		}
	}
	want := map[[32]byte]bool{}
	err := func() error {
		for _, n := range needles {
			want[n.TBSSHA256] = true
			is, err := store.Issuance(n.TBSSHA256)
			if err != nil {
				return err
			}
			if is == nil {
				problems = append(problems, fmt.Sprintf("needle %d (%s, entries %d and %d) not found", n.ID, n.Names[len(n.Names)-1], n.Precert, n.Final))
				continue
			}
			var got []string
			for _, m := range is.Watches {
				got = append(got, m.Watch)
			}
			slices.Sort(got)
			if !slices.Equal(got, n.Watches) {
				problems = append(problems, fmt.Sprintf("needle %d recorded for watches %v, want %v", n.ID, got, n.Watches))
			}
			if is.EmbeddedSCTs != n.SCTs {
				problems = append(problems, fmt.Sprintf("needle %d: %d embedded SCTs recorded, want %d (final certificate at %d not seen?)", n.ID, is.EmbeddedSCTs, n.SCTs, n.Final))
			}
		}
		return nil
	}()
	if err != nil {
		problems = append(problems, err.Error())
	}
	if snap.Certificates != uint64(len(want)) {
		problems = append(problems, fmt.Sprintf("%d issuances recorded, want the %d needles", snap.Certificates, len(want)))
		for _, r := range snap.Recent {
			if !want[r.TBSSHA256] {
				problems = append(problems, fmt.Sprintf("unexpected issuance for %s: %s", r.Watch, r.DNSNames))
			}
		}
	}
	return problems
}

var errMismatch = errors.New("the issuances found are not the needles")
