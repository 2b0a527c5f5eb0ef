// Package ctlog follows CT logs, RFC 6962 and static-ct-api (tiled) alike:
// it verifies every new tree head against the last, downloads the new
// entries in parallel, matches them against the watches without a full
// parse, and records what concerns a watch together with the log's
// position, in order, once the entries are proven to be in a verified tree.
package ctlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"strconv"
	"sync"
	"time"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// Verification checks, the check label of ct_log_verification_failures_total.
const (
	CheckSTHSignature = "sth_signature" // a tree head's signature does not verify
	CheckConsistency  = "consistency"   // a new tree head is not an extension of the last verified one (a fork)
	CheckRollback     = "rollback"      // a new tree head is smaller than the last verified one, and not its prefix
	CheckLeafHash     = "leaf_hash"     // the entries served do not hash to the verified tree
	CheckInclusion    = "inclusion"     // a proof served to start inside the log does not verify
	CheckTreeSize     = "tree_size"     // a correctly signed tree head of 2^63 entries or more
)

// Checks lists every check, so that each log's counters exist from the start.
var Checks = []string{CheckSTHSignature, CheckConsistency, CheckRollback, CheckLeafHash, CheckInclusion, CheckTreeSize}

// verifyError is a log misbehaving: counted by check, never retried past.
type verifyError struct {
	check string
	err   error
}

func (e *verifyError) Error() string {
	return fmt.Sprintf("verification failed (%s): %v", e.check, e.err)
}

func (e *verifyError) Unwrap() error { return e.err }

func verifyFailed(check string, format string, args ...any) error {
	return &verifyError{check: check, err: fmt.Errorf(format, args...)}
}

// rawEntry is a log entry as fetched, before any X.509 parsing.
type rawEntry struct {
	index    int64
	leafHash [32]byte // RFC 6962 logs: SHA-256(0x00 || leaf_input)
	precert  bool
	// der is the certificate, or for a precertificate the TBSCertificate
	// the log holds (poison removed, final issuer).
	der []byte
	// The full precertificate of a precert entry, for cert_sha256: pre
	// when the log gives it as is (static-ct-api), else extra, the RFC 6962
	// extra_data still in base64, decoded only for an entry that matches.
	pre, extra []byte
	err        error // the entry could not be decoded
}

func (e *rawEntry) hasPrecertificate() bool { return e.pre != nil || e.extra != nil }

// precertificate returns the full precertificate, nil when the log gives none.
func (e *rawEntry) precertificate() ([]byte, error) {
	if e.pre != nil || e.extra == nil {
		return e.pre, nil
	}
	return precertificateOf(e.extra)
}

// logProtocol is what differs between RFC 6962 and static-ct-api logs.
type logProtocol interface {
	// head fetches the newest tree head and verifies its signature.
	head(ctx context.Context) (treeHead, error)
	// consistent verifies that tree old is a prefix of tree new.
	consistent(ctx context.Context, old, new treeHead) error
	// fetch returns entries of tree from start, at most up to end; it may
	// return fewer, never none without an error. The entries are valid until
	// release is called.
	fetch(ctx context.Context, tree treeHead, start, end int64) (entries []rawEntry, release func(), err error)
	// verifiesLeaves is true when fetch only returns entries it proved to
	// be in tree; otherwise the follower checks the leaf hashes itself.
	verifiesLeaves() bool
	// rangeAt returns the compact range of [0, k) proven against tree.
	rangeAt(ctx context.Context, tree treeHead, k int64) ([][32]byte, error)
	// provePrefix verifies that the tree of size k with root is a prefix of tree.
	provePrefix(ctx context.Context, k int64, root [32]byte, tree treeHead) error
	close()
}

// FinalTreeHead is a readonly log's last tree.
type FinalTreeHead struct {
	Size int64
	Root [32]byte
}

// Options tune how a log is followed.
type Options struct {
	Interval          time.Duration
	Timeout           time.Duration
	Start             string // end, beginning or an entry index
	Workers           int
	BatchSize         int
	RequestsPerSecond float64
	MMD               time.Duration
	// CommitEvery bounds how much work a crash can lose: the position is
	// committed at least this often during a catch-up.
	CommitEvery time.Duration
	// Final is set for a readonly log: it must end exactly there.
	Final *FinalTreeHead
	// CountError counts the log's failed attempts
	// (ct_source_errors_total); nil counts nothing.
	CountError ctsource.ErrorCounter
	// ProgressEvery is how often a catch-up logs its progress (entries,
	// rate, ETA) at info level: a catch-up of millions of entries takes
	// minutes, and a silent one looks hung.
	ProgressEvery time.Duration
}

// Log follows one CT log: it verifies every new tree head against the
// last, fetches the new entries in parallel, matches them without a full
// parse, and commits issuances and position together, in order, once the
// entries are proven to be in a verified tree.
type Log struct {
	name  string
	proto logProtocol
	opts  Options

	mu     sync.Mutex
	status Status
}

// Status is a log's state for the ct_log_* metrics.
type Status struct {
	Log       string
	Known     bool // a verified tree head exists
	TreeSize  int64
	STHTime   time.Time
	Position  int64 // entries processed
	MMD       time.Duration
	Readonly  bool              // a log list gave it a final tree head
	Failures  map[string]uint64 // by check
	Verifying bool              // false while the last check failed
	// OlderTreeHeads counts correctly signed tree heads smaller than the
	// verified one and proven its prefix: caching frontends serve them, so
	// they are ignored rather than failed as rollbacks.
	OlderTreeHeads uint64
}

func newCTLog(name string, proto logProtocol, opts Options) *Log {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 256
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 10 * time.Second
	}
	if opts.CommitEvery <= 0 {
		opts.CommitEvery = time.Second
	}
	l := &Log{name: name, proto: proto, opts: opts}
	l.status = Status{Log: name, MMD: opts.MMD, Readonly: opts.Final != nil, Failures: map[string]uint64{}, Verifying: true}
	for _, c := range Checks {
		l.status.Failures[c] = 0
	}
	return l
}

// Name is the source and log label.
func (l *Log) Name() string { return l.name }

// Close drops idle connections.
func (l *Log) Close() { l.proto.close() }

// Status returns the log's state for the metrics.
func (l *Log) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	s.Failures = maps.Clone(s.Failures)
	return s
}

func (l *Log) update(f func(s *Status)) {
	l.mu.Lock()
	f(&l.status)
	l.mu.Unlock()
}

// Poll verifies the newest tree head and processes every entry up to it.
func (l *Log) Poll(ctx context.Context, env *ctsource.Env) error {
	err := l.poll(ctx, env)
	var ve *verifyError
	if errors.As(err, &ve) {
		l.update(func(s *Status) { s.Failures[ve.check]++; s.Verifying = false })
		env.Logger.Error("CT log verification failed: the log may be misbehaving or showing a split view; its position does not advance",
			"check", ve.check, "err", ve.err)
	} else if err == nil {
		l.update(func(s *Status) { s.Verifying = true })
	}
	return err
}

func (l *Log) poll(ctx context.Context, env *ctsource.Env) error {
	pos, err := l.load(env)
	if err != nil {
		return err
	}
	if pos != nil {
		l.update(func(s *Status) {
			s.Known, s.TreeSize, s.STHTime, s.Position = true, pos.Head.Size, pos.Head.Time, pos.Size
		})
	}
	head, err := l.proto.head(ctx)
	if err != nil {
		return err
	}
	if pos == nil {
		if pos, err = l.initial(ctx, head); pos == nil || err != nil {
			return err
		}
	} else if older, err := l.checkHead(ctx, pos.Head, head); err != nil {
		return err
	} else if older {
		// Nothing to do and nothing to write: the stored position and head
		// stay, and the next fresh tree head is checked against them.
		l.update(func(s *Status) { s.OlderTreeHeads++ })
		env.Logger.Debug("ignored an older tree head, a proven prefix of the verified one (a caching frontend serves it)",
			"tree_size", head.Size, "verified_tree_size", pos.Head.Size)
		return nil
	} else if pos.Head.same(head) && pos.Size >= head.Size {
		// Nothing new, and the stored position says so already: no write
		// (a readonly log, or a log between tree heads, would otherwise
		// cost a commit with fsync every poll).
		l.update(func(s *Status) { s.Known, s.TreeSize, s.STHTime = true, head.Size, head.Time })
		return nil
	}
	if f := l.opts.Final; f != nil && (head.Size > f.Size || head.Size == f.Size && head.Root != f.Root) {
		return verifyFailed(CheckConsistency, "readonly log: tree head of size %d (%x), but the log list says it ended at size %d (%x)",
			head.Size, head.Root, f.Size, f.Root)
	}
	l.update(func(s *Status) { s.Known, s.TreeSize, s.STHTime = true, head.Size, head.Time })
	return l.catchUp(ctx, env, pos, head)
}

func (l *Log) load(env *ctsource.Env) (*logPosition, error) {
	raw, err := env.Recorder.Store.LogPosition(l.name)
	if err != nil || raw == nil {
		return nil, err
	}
	return decodePosition(raw)
}

// initial places a log seen for the first time where its start option says.
func (l *Log) initial(ctx context.Context, head treeHead) (*logPosition, error) {
	var k int64
	switch l.opts.Start {
	case "", "end":
		k = head.Size
	case "beginning":
		k = 0
	default:
		n, err := strconv.ParseInt(l.opts.Start, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("ctlog %s: invalid start %q", l.name, l.opts.Start)
		}
		if n > head.Size {
			return nil, fmt.Errorf("ctlog %s: start %d is beyond the log's size %d; waiting for the log to grow", l.name, n, head.Size)
		}
		k = n
	}
	pos := &logPosition{Size: k, Head: head}
	if !l.proto.verifiesLeaves() {
		r, err := l.proto.rangeAt(ctx, head, k)
		if err != nil {
			return nil, err
		}
		pos.Range = r
	}
	return pos, nil
}

// checkHead verifies that a new tree head extends the last verified one.
// older reports a smaller tree head proven to be a prefix of the verified
// one: not a failure, and not to be followed either.
func (l *Log) checkHead(ctx context.Context, old, new treeHead) (older bool, err error) {
	switch {
	case new.Size < old.Size:
		return true, l.checkOlder(ctx, old, new)
	case new.Size == old.Size && new.Root != old.Root:
		return false, verifyFailed(CheckConsistency, "two different roots for tree size %d: %x and %x", new.Size, old.Root, new.Root)
	case new.Size > old.Size && old.Size > 0:
		return false, l.proto.consistent(ctx, old, new)
	}
	return false, nil
}

// checkOlder proves that a tree head smaller than the verified one is its
// prefix, with the consistency proof the other way round. Caching frontends
// serve such heads (letsencrypt/ct-woodpecker#61, #63); only one that is
// not a prefix is a rollback. A proof that cannot be fetched stays a
// transient error.
func (l *Log) checkOlder(ctx context.Context, verified, older treeHead) error {
	if older.Size == 0 {
		if older.Root != emptyTreeRoot {
			return verifyFailed(CheckRollback, "tree size went back from %d to an empty tree whose root is %x", verified.Size, older.Root)
		}
		return nil
	}
	err := l.proto.consistent(ctx, older, verified)
	var ve *verifyError
	if errors.As(err, &ve) {
		return verifyFailed(CheckRollback, "tree size went back from %d to %d: %v", verified.Size, older.Size, ve.err)
	}
	return err
}

type batchResult struct {
	start, end int64
	hashes     [][32]byte
	certs      []*cert.Certificate
	malformed  uint64
	err        error
}

// catchUp processes [pos.Size, head.Size): batches are fetched and matched
// by parallel workers, and committed strictly in order. At most 2×workers
// batches are in flight, so nothing downstream (a slow disk, a scrape)
// makes memory grow.
func (l *Log) catchUp(ctx context.Context, env *ctsource.Env, pos *logPosition, head treeHead) error {
	rng, err := compactRange(pos.Size, pos.Range)
	if err != nil && !l.proto.verifiesLeaves() {
		return fmt.Errorf("ctlog %s: stored position: %w", l.name, err)
	}
	if pos.Size >= head.Size {
		pos.Head = head
		return l.commit(env, pos, nil, 0, 0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	window := make(chan struct{}, 2*l.opts.Workers)
	jobs := make(chan [2]int64)
	results := make(chan batchResult, 2*l.opts.Workers)
	go func() {
		defer close(jobs)
		// Batches end on multiples of the batch size, not batch-size steps
		// from wherever the position is: batches of a tiled log then never
		// share a tile, which each would download (with its hash tiles).
		b := int64(l.opts.BatchSize)
		for s := pos.Size; s < head.Size; {
			e := min((s/b+1)*b, head.Size)
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- [2]int64{s, e}:
			case <-ctx.Done():
				return
			}
			s = e
		}
	}()
	var wg sync.WaitGroup
	for range l.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				r := l.batch(ctx, env, head, j[0], j[1])
				select {
				case results <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	pending := map[int64]batchResult{}
	next := pos.Size
	var certs []*cert.Certificate
	var malformed uint64
	lastCommit := time.Now()
	progress := newProgress(l.name, pos.Size, head.Size, l.opts.ProgressEvery)
	defer progress.done(env.Logger, &next)
	for r := range results {
		if r.err != nil {
			return r.err
		}
		pending[r.start] = r
		for {
			r, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			<-window
			if !l.proto.verifiesLeaves() {
				for i := range r.hashes {
					if err := rng.Append(r.hashes[i][:], nil); err != nil {
						return err
					}
				}
			}
			certs = append(certs, r.certs...)
			malformed += r.malformed
			next = r.end
			if next < head.Size && time.Since(lastCommit) < l.opts.CommitEvery {
				continue
			}
			if !l.proto.verifiesLeaves() {
				root, err := rangeRoot(rng)
				if err != nil {
					return err
				}
				if next == head.Size && root != head.Root {
					return verifyFailed(CheckLeafHash, "entries [%d, %d) hash to %x, the verified tree head of size %d has %x", pos.Size, next, root, head.Size, head.Root)
				}
				if next < head.Size {
					if err := l.proto.provePrefix(ctx, next, root, head); err != nil {
						return err
					}
				}
			}
			processed := uint64(next - pos.Size)
			newPos := &logPosition{Size: next, Head: head}
			if !l.proto.verifiesLeaves() {
				newPos.Range = rangeHashes(rng)
			}
			if err := l.commit(env, newPos, certs, processed, malformed); err != nil {
				return err
			}
			pos, certs, malformed, lastCommit = newPos, nil, 0, time.Now()
			progress.report(env.Logger, next)
		}
	}
	if next != head.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("ctlog %s: stopped at %d of %d", l.name, next, head.Size)
	}
	return nil
}

// batch fetches and matches [start, end). Only entries that concern a watch
// are parsed in full.
func (l *Log) batch(ctx context.Context, env *ctsource.Env, head treeHead, start, end int64) batchResult {
	r := batchResult{start: start, end: end}
	if !l.proto.verifiesLeaves() {
		// The follower proves these leaves itself; a tiled log's were.
		r.hashes = make([][32]byte, 0, end-start)
	}
	set := env.Recorder.Policy()
	var id cert.Identifiers
	var names []string
	var idx []int
	for next := start; next < end; {
		entries, release, err := l.proto.fetch(ctx, head, next, end)
		if err == nil && len(entries) == 0 {
			release()
			err = fmt.Errorf("ctlog %s: no entries at %d", l.name, next)
		}
		if err != nil {
			r.err = err
			return r
		}
		err = l.process(env, entries, &next, &r, set, &id, &names, &idx)
		release()
		if err != nil {
			r.err = err
			return r
		}
	}
	return r
}

// process matches fetched entries; nothing it keeps refers to them, so
// their buffers can be reused afterwards.
func (l *Log) process(env *ctsource.Env, entries []rawEntry, next *int64, r *batchResult, set *watch.Set, id *cert.Identifiers, names *[]string, idx *[]int) error {
	for i := range entries {
		e := &entries[i]
		if e.index != *next {
			return verifyFailed(CheckLeafHash, "asked for entry %d, got %d", *next, e.index)
		}
		*next++
		if r.hashes != nil {
			r.hashes = append(r.hashes, e.leafHash)
		}
		if e.err != nil {
			r.malformed++
			continue
		}
		c, bad := matchEntry(e, set, id, names, idx)
		if bad {
			r.malformed++
			env.Logger.Debug("malformed log entry skipped", "index", e.index)
		}
		if c != nil {
			r.certs = append(r.certs, c)
		}
	}
	return nil
}

// matchEntry returns the certificate of an entry that concerns a watch, or
// nil; bad reports an entry from which no name could be read.
func matchEntry(e *rawEntry, set *watch.Set, id *cert.Identifiers, names *[]string, idx *[]int) (*cert.Certificate, bool) {
	id.Reset()
	if err := cert.ExtractIdentifiers(e.der, e.precert, id); err != nil && !strictIdentifiers(e.der, e.precert, id) {
		return nil, true
	}
	*names = cert.AppendNormalized((*names)[:0], id.Names) // the walk put the CNs among the names
	*idx = set.Match((*idx)[:0], *names, id.IPs)
	if len(*idx) == 0 {
		return nil, false
	}
	c, err := readEntry(e)
	return c, err != nil
}

// strictIdentifiers reads the identifiers with the strict parser, for an
// entry the walk cannot read: the walk must never be stricter than it.
func strictIdentifiers(der []byte, tbs bool, id *cert.Identifiers) bool {
	var p *ctx509.Certificate
	var err error
	if tbs {
		p, err = ctx509.ParseTBSCertificate(der)
	} else {
		p, err = ctx509.ParseCertificate(der)
	}
	if p == nil || ctx509.IsFatal(err) {
		return false
	}
	for _, atv := range p.Subject.Names {
		if cn, ok := atv.Value.(string); ok && atv.Type.String() == "2.5.4.3" {
			id.Names = append(id.Names, cn)
		}
	}
	id.Names = append(id.Names, p.DNSNames...)
	for _, ip := range p.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			id.IPs = append(id.IPs, a.Unmap())
		}
	}
	return true
}

// readEntry reads the certificate of an entry. A precert entry is read
// from the TBSCertificate the tree proves, whatever its precertificate (in
// extra_data, which nothing proves) holds.
func readEntry(e *rawEntry) (*cert.Certificate, error) {
	if !e.precert {
		return cert.Read(e.der)
	}
	pre, err := e.precertificate()
	if err != nil {
		pre = nil
	}
	return cert.ReadPrecertEntry(e.der, pre)
}

// commit records certificates and the new position in one transaction.
func (l *Log) commit(env *ctsource.Env, pos *logPosition, certs []*cert.Certificate, processed, malformed uint64) error {
	c := &state.Commit{Source: l.name, LogPosition: pos.encode(), Processed: processed, Malformed: malformed}
	for _, crt := range certs {
		env.Recorder.Observe(c, crt)
	}
	if err := env.Commit(l.opts.CountError, c); err != nil {
		return err
	}
	l.update(func(s *Status) { s.Position = pos.Size })
	return nil
}

// progress logs a long catch-up: every `every`, and once at the end when it
// logged before, so that the log shows where it stands, how fast it goes
// and when it will be done.
type progress struct {
	log         string
	start, end  int64
	began, last time.Time
	every       time.Duration
	lastAt      int64
	reported    bool
}

func newProgress(log string, start, end int64, every time.Duration) *progress {
	now := time.Now()
	return &progress{log: log, start: start, end: end, began: now, last: now, every: every, lastAt: start}
}

func (p *progress) report(logger *slog.Logger, at int64) {
	now := time.Now()
	if at >= p.end || now.Sub(p.last) < p.every {
		return
	}
	// The rate over the last period, not since the start: it follows a log
	// that slows down (rate limits) or a disk that speeds up (page cache).
	rate := float64(at-p.lastAt) / now.Sub(p.last).Seconds()
	args := []any{"log", p.log, "position", at, "tree_size", p.end, "entries_behind", p.end - at,
		"done_percent", fmt.Sprintf("%.1f", 100*float64(at-p.start)/float64(p.end-p.start)),
		"entries_per_second", int64(rate)}
	if rate > 0 {
		args = append(args, "eta", time.Duration(float64(p.end-at)/rate*float64(time.Second)).Round(time.Second).String())
	}
	logger.Info("catching up", args...)
	p.last, p.lastAt, p.reported = now, at, true
}

func (p *progress) done(logger *slog.Logger, at *int64) {
	if !p.reported {
		return
	}
	elapsed := time.Since(p.began)
	logger.Info("catch-up ended", "log", p.log, "position", *at, "tree_size", p.end, "entries", *at-p.start,
		"took", elapsed.Round(time.Millisecond).String(),
		"entries_per_second", int64(float64(*at-p.start)/elapsed.Seconds()))
}
