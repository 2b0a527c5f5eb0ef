// Package sunlightlog runs a real Certificate Transparency log on loopback for
// tests: Sunlight (the static-ct-api write path: add-chain, add-pre-chain)
// and Skylight (the read path: checkpoint, tiles, issuers), at the versions
// pinned by the repository's tools module.
//
// The programs are built from <repo>/tools with the go command the first time
// they are needed on a machine (cgo and a C compiler are required; a cold
// build takes a minute or two) and cached in the user cache directory, keyed
// by the tools module's contents. Setting CT_EXPORTER_SKIP_SUNLIGHT=1 makes
// [Start] skip the test instead.
package sunlightlog

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/sunlight"
	ct "github.com/google/certificate-transparency-go"
	ctls "github.com/google/certificate-transparency-go/tls"
	yaml "go.yaml.in/yaml/v3"
)

// SkipEnv is the environment variable that, set to "1", makes [Start] skip
// the calling test instead of building and running Sunlight.
const SkipEnv = "CT_EXPORTER_SKIP_SUNLIGHT"

// UserAgent is what this package sends to the log. Skylight rate-limits
// clients whose User-Agent has neither an email address nor a URL to 75
// requests a second, and the sunlight client library refuses to run without
// one.
const UserAgent = "ct_exporter-test (+https://github.com/ct-exporter/ct_exporter)"

const (
	shortName = "testlog"
	// host is what the log's prefixes name. Sunlight and Skylight route on
	// the request's Host without its port, so naming the loopback address
	// lets plain requests to 127.0.0.1:PORT reach the log, with no Host
	// header games.
	host = "127.0.0.1"
	// period is the time between sequencing rounds: an add-chain returns at
	// the end of the next round, and the checkpoint is re-signed every round.
	period = 100 * time.Millisecond

	startTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
	pollInterval = 20 * time.Millisecond
	logTail      = 48 << 10
)

// Log is a running Sunlight log. Its methods may be called from any
// goroutine.
type Log struct {
	t          testing.TB
	bin        string
	dir        string
	httpClient *http.Client
	client     *sunlight.Client

	sunlightAddr string // 127.0.0.1:PORT
	skylightAddr string

	keyDER []byte
	key    crypto.PublicKey
	logID  [32]byte
	origin string

	mu       sync.Mutex
	procs    []*process
	logFiles []string
	seq      int
}

// SCT is the signed certificate timestamp the log returned for a submission.
type SCT struct {
	Timestamp uint64   // milliseconds since the epoch
	LeafIndex int64    // from the leaf_index extension (c2sp.org/static-ct-api)
	LogID     [32]byte // SHA-256 of the log's public key
	// Raw is the TLS encoding of the SignedCertificateTimestamp (RFC 6962
	// §3.2), as an SCT list in a certificate carries it.
	Raw []byte
}

// HTTPError is a submission the log answered with a status other than 200.
type HTTPError struct {
	StatusCode int
	Body       string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("sunlightlog: log answered %d %s: %s",
		e.StatusCode, http.StatusText(e.StatusCode), strings.TrimSpace(e.Body))
}

// Start builds Sunlight and Skylight if needed (once per machine), and starts
// them serving a fresh log whose only accepted roots are roots. The log takes
// certificates whose NotAfter is within ten years of today, either way. It
// fails the test on any problem, and skips it only when CT_EXPORTER_SKIP_SUNLIGHT=1.
// The servers are stopped and their files removed when the test ends; their
// logs are printed if the test failed.
func Start(t testing.TB, roots ...*x509.Certificate) *Log {
	t.Helper()
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("%s=1: not running a Sunlight log", SkipEnv)
	}
	if len(roots) == 0 {
		t.Fatal("sunlightlog: Start needs at least one root")
	}
	bin, err := binaries()
	if err != nil {
		t.Fatal(err)
	}

	base := t.TempDir()
	// Cleanups run last-registered first: stop the servers, print their logs
	// if the test failed, clear the immutable flags Sunlight may have set, and
	// only then (t.TempDir's own cleanup) remove the files.
	t.Cleanup(func() { clearImmutable(base) })
	l := &Log{
		t:   t,
		bin: bin,
		httpClient: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16},
		},
	}
	t.Cleanup(l.dumpLogsIfFailed)
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Error(err)
		}
		l.httpClient.CloseIdleConnections()
	})

	var errs []error
	for attempt := 1; attempt <= 3; attempt++ {
		err := l.start(filepath.Join(base, fmt.Sprintf("attempt%d", attempt)), roots)
		if err == nil {
			return l
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", attempt, err))
		if stopErr := l.Stop(); stopErr != nil {
			errs = append(errs, stopErr)
		}
		if !errors.Is(err, errRetry) {
			break
		}
	}
	t.Fatalf("sunlightlog: starting the log: %v", errors.Join(errs...))
	return nil
}

// errRetry marks a start failure that a new attempt may not hit: a port
// taken between choosing it and the server binding it, or the date changing
// between writing the config and Sunlight reading it.
var errRetry = errors.New("transient")

func (l *Log) start(dir string, roots []*x509.Certificate) error {
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	seed := make([]byte, 32) // what sunlight-keygen -f writes
	if _, err := rand.Read(seed); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "seed.bin"), seed, 0o600); err != nil {
		return err
	}
	var rootsPEM bytes.Buffer
	for _, r := range roots {
		pem.Encode(&rootsPEM, &pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})
	}
	if err := os.WriteFile(filepath.Join(dir, "roots.pem"), rootsPEM.Bytes(), 0o644); err != nil {
		return err
	}
	if err := l.createCheckpointsDB(filepath.Join(dir, "checkpoints.db")); err != nil {
		return err
	}

	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	l.sunlightAddr = net.JoinHostPort(host, fmt.Sprint(ports[0]))
	l.skylightAddr = net.JoinHostPort(host, fmt.Sprint(ports[1]))
	l.dir = dir

	// Sunlight creates the log only on its inception date, in its local time
	// zone: run it in UTC and name today's UTC date.
	now := time.Now().UTC()
	year := now.Year()
	sunlightConfig := map[string]any{
		"listen":      []string{l.sunlightAddr},
		"checkpoints": filepath.Join(dir, "checkpoints.db"),
		"logs": []map[string]any{{
			"shortname":        shortName,
			"inception":        now.Format(time.DateOnly),
			"submissionprefix": "https://" + host + "/" + shortName,
			"monitoringprefix": l.MonitoringPrefix(),
			"secret":           filepath.Join(dir, "seed.bin"),
			"roots":            filepath.Join(dir, "roots.pem"),
			"cache":            filepath.Join(dir, "cache.db"),
			"localdirectory":   dataDir,
			"period":           int(period / time.Millisecond),
			"poolsize":         0, // no limit: tests never get 503 "pool full"
			"notafterstart":    time.Date(year-10, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339),
			"notafterlimit":    time.Date(year+11, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339),
		}},
	}
	skylightConfig := map[string]any{
		"listen": []string{l.skylightAddr},
		"logs": []map[string]any{{
			"shortname": shortName,
			// Skylight insists on https here; it only serves files under
			// the prefix's path for requests to its host.
			"monitoringprefix": "https://" + host + "/" + shortName,
			"localdirectory":   dataDir,
		}},
	}
	for name, c := range map[string]any{"sunlight.yaml": sunlightConfig, "skylight.yaml": skylightConfig} {
		y, err := yaml.Marshal(c)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), y, 0o644); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := l.launch(ctx); err != nil {
		return err
	}

	// The log's public key, as Sunlight derives it from the seed (HKDF and
	// filippo.io/keygen), is published in log.v3.json.
	body, err := l.get(ctx, l.MonitoringPrefix()+"/log.v3.json")
	if err != nil {
		return err
	}
	var info struct {
		Description string `json:"description"`
		Key         []byte `json:"key"`
		LogID       []byte `json:"log_id"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return fmt.Errorf("log.v3.json: %w", err)
	}
	key, err := x509.ParsePKIXPublicKey(info.Key)
	if err != nil {
		return fmt.Errorf("log.v3.json key: %w", err)
	}
	l.keyDER, l.key, l.origin = info.Key, key, info.Description
	l.logID = sha256.Sum256(info.Key)
	if !bytes.Equal(info.LogID, l.logID[:]) {
		return fmt.Errorf("log.v3.json: log_id %x is not the hash of key (%x)", info.LogID, l.logID)
	}
	l.client, err = sunlight.NewClient(&sunlight.ClientConfig{
		MonitoringPrefix: l.MonitoringPrefix(),
		PublicKey:        key,
		HTTPClient:       l.httpClient,
		UserAgent:        UserAgent,
		Timeout:          30 * time.Second,
	})
	if err != nil {
		return err
	}
	cp, _, err := l.client.Checkpoint(ctx)
	if err != nil {
		return err
	}
	if cp.Origin != l.origin {
		return fmt.Errorf("checkpoint origin %q, log.v3.json says %q", cp.Origin, l.origin)
	}
	return nil
}

// launch starts Skylight, waits for it to answer, then starts Sunlight (which
// on a restart compares its checkpoint with the one Skylight serves) and
// waits until it answers and Skylight serves a checkpoint.
func (l *Log) launch(ctx context.Context) error {
	sky, err := l.spawn("skylight")
	if err != nil {
		return err
	}
	if err := l.poll(ctx, []*process{sky}, func() error {
		_, err := l.get(ctx, "http://"+l.skylightAddr+"/logs.json")
		return err
	}); err != nil {
		return err
	}
	sun, err := l.spawn("sunlight")
	if err != nil {
		return err
	}
	return l.poll(ctx, []*process{sky, sun}, func() error {
		if _, err := l.get(ctx, l.SubmissionPrefix()+"/ct/v1/get-roots"); err != nil {
			return err
		}
		_, err := l.get(ctx, l.MonitoringPrefix()+"/checkpoint")
		return err
	})
}

func (l *Log) createCheckpointsDB(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Sunlight won't create its lock database, on purpose; the tools module
	// has a helper that does, so no sqlite3 program is needed.
	out, err := exec.CommandContext(ctx, filepath.Join(l.bin, "sunlight-checkpointsdb"+exeSuffix()), path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("creating %s: %v: %s", path, err, out)
	}
	return nil
}

type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // set before done is closed
}

func (l *Log) spawn(name string) (*process, error) {
	l.mu.Lock()
	l.seq++
	logPath := filepath.Join(l.dir, fmt.Sprintf("%s.%d.log", name, l.seq))
	jsonPath := filepath.Join(l.dir, fmt.Sprintf("%s.%d.json", name, l.seq))
	l.logFiles = append(l.logFiles, logPath)
	l.mu.Unlock()

	stderr, err := os.Create(logPath) // human-readable log
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	stdout, err := os.Create(jsonPath) // the same, as JSON
	if err != nil {
		return nil, err
	}
	defer stdout.Close()

	cmd := exec.Command(filepath.Join(l.bin, name+exeSuffix()), "-c", filepath.Join(l.dir, name+".yaml"))
	cmd.Dir = l.dir
	cmd.Env = append(os.Environ(), "TZ=UTC")
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// poll calls ready until it succeeds, failing early if one of procs exits.
func (l *Log) poll(ctx context.Context, procs []*process, ready func() error) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		for _, p := range procs {
			select {
			case <-p.done:
				log, _ := os.ReadFile(p.logPath)
				err := fmt.Errorf("%s exited during startup (%v); its log:\n%s", p.name, p.err, tail(log))
				if bytes.Contains(log, []byte("address already in use")) ||
					bytes.Contains(log, []byte("today is not the Inception date")) {
					err = fmt.Errorf("%w: %w", errRetry, err)
				}
				return err
			default:
			}
		}
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", startTimeout, err)
		case <-tick.C:
		}
	}
}

func (l *Log) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", UserAgent)
	resp, err := l.httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// Stop stops Sunlight and Skylight (gracefully, then by force), leaving the
// log's files in place for [Log.Restart]. It is safe to call more than once.
func (l *Log) Stop() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	var errs []error
	// Sunlight first, so that it doesn't sequence with nobody serving reads.
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		select {
		case <-p.done:
			continue
		default:
		}
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			p.cmd.Process.Kill()
			<-p.done
			errs = append(errs, fmt.Errorf("sunlightlog: %s did not stop within %v of SIGINT; killed", p.name, stopTimeout))
		}
	}
	return errors.Join(errs...)
}

// Restart stops the servers if they are running and starts them again on the
// same ports over the same log, as a log operator's restart would.
func (l *Log) Restart(ctx context.Context) error {
	if err := l.Stop(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := l.launch(ctx); err != nil {
		return fmt.Errorf("sunlightlog: restart: %w", err)
	}
	return nil
}

// MonitoringPrefix is the c2sp.org/static-ct-api monitoring prefix, without a
// trailing slash: <prefix>/checkpoint, <prefix>/tile/..., <prefix>/issuer/...
func (l *Log) MonitoringPrefix() string { return "http://" + l.skylightAddr + "/" + shortName }

// SubmissionPrefix is the submission prefix, without a trailing slash:
// <prefix>/ct/v1/add-chain, <prefix>/ct/v1/add-pre-chain, <prefix>/ct/v1/get-roots.
func (l *Log) SubmissionPrefix() string { return "http://" + l.sunlightAddr + "/" + shortName }

// PublicKey is the log's public key as a DER SubjectPublicKeyInfo (ECDSA P-256).
func (l *Log) PublicKey() []byte { return bytes.Clone(l.keyDER) }

// LogID is the RFC 6962 log ID: the SHA-256 of [Log.PublicKey].
func (l *Log) LogID() [32]byte { return l.logID }

// Origin is the checkpoint's origin line (and the log's name), "127.0.0.1/testlog".
func (l *Log) Origin() string { return l.origin }

// Dir is the directory holding the log's configuration, databases, server
// logs, and under data/ the files Skylight serves.
func (l *Log) Dir() string { return l.dir }

// AddChain submits a certificate chain (leaf first, root last) to add-chain
// and returns the SCT. Sunlight answers once the entry is sequenced, which
// takes up to one sequencing period (100ms).
func (l *Log) AddChain(ctx context.Context, chain ...[]byte) (*SCT, error) {
	return l.submit(ctx, "add-chain", chain)
}

// AddPreChain submits a precertificate chain (precertificate first, root
// last) to add-pre-chain and returns the SCT.
func (l *Log) AddPreChain(ctx context.Context, chain ...[]byte) (*SCT, error) {
	return l.submit(ctx, "add-pre-chain", chain)
}

func (l *Log) submit(ctx context.Context, endpoint string, chain [][]byte) (*SCT, error) {
	reqBody, err := json.Marshal(struct {
		Chain [][]byte `json:"chain"`
	}{chain})
	if err != nil {
		return nil, err
	}
	url := l.SubmissionPrefix() + "/ct/v1/" + endpoint
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(reqBody))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	resp, err := l.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sunlightlog: %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("sunlightlog: %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{StatusCode: resp.StatusCode, Body: string(body)}
	}
	var rsp ct.AddChainResponse
	if err := json.Unmarshal(body, &rsp); err != nil {
		return nil, fmt.Errorf("sunlightlog: %s response: %w", endpoint, err)
	}
	sct, err := rsp.ToSignedCertificateTimestamp()
	if err != nil {
		return nil, fmt.Errorf("sunlightlog: %s response: %w", endpoint, err)
	}
	ext, err := sunlight.ParseExtensions(sct.Extensions)
	if err != nil {
		return nil, fmt.Errorf("sunlightlog: %s response extensions %q: %w",
			endpoint, base64.StdEncoding.EncodeToString(sct.Extensions), err)
	}
	raw, err := ctls.Marshal(*sct)
	if err != nil {
		return nil, err
	}
	return &SCT{Timestamp: sct.Timestamp, LeafIndex: ext.LeafIndex, LogID: sct.LogID.KeyID, Raw: raw}, nil
}

// WaitSize polls the checkpoint, verifying its signature, until the tree has
// at least n entries, or ctx is done.
func (l *Log) WaitSize(ctx context.Context, n int64) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	var size int64 = -1
	for {
		cp, _, err := l.client.Checkpoint(ctx)
		if err == nil && cp.N >= n {
			return nil
		}
		if err == nil {
			size = cp.N
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sunlightlog: waiting for tree size %d (last seen %d, last error %v): %w",
				n, size, last, ctx.Err())
		case <-tick.C:
		}
	}
}

func (l *Log) dumpLogsIfFailed() {
	if !l.t.Failed() {
		return
	}
	l.mu.Lock()
	files := append([]string(nil), l.logFiles...)
	l.mu.Unlock()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			l.t.Logf("sunlightlog: %v", err)
			continue
		}
		l.t.Logf("sunlightlog: %s:\n%s", f, tail(b))
	}
}

func tail(b []byte) []byte {
	if len(b) <= logTail {
		return b
	}
	b = b[len(b)-logTail:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return append([]byte("[...]\n"), b...)
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
