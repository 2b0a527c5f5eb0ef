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
	"strconv"
	"sync"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

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

func newLog(name string, proto logProtocol, opts Options) *Log {
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
// A poll, in the order of this file: poll fetches the newest tree head and
// checks it against the verified one (checkHead); catchUp cuts what is new
// into batches, which workers download (batch) and match against the
// watches (process, matcher), and commits them strictly in order, once
// their leaves are proven to be in the verified tree (commit: the
// issuances and the position in one transaction).
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

// batchResult is what a worker found in one batch: the leaf hashes to
// prove, the certificates that concern a watch, and the entries no name
// could be read from.
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
	m := matcher{set: env.Recorder.Policy()}
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
		next, err = r.process(entries, next, &m, env.Logger)
		release()
		if err != nil {
			r.err = err
			return r
		}
	}
	return r
}

// process matches the entries fetched from next on into r, and returns
// where they end. Nothing it keeps refers to them, so that their buffers
// can be reused afterwards.
func (r *batchResult) process(entries []rawEntry, next int64, m *matcher, logger *slog.Logger) (int64, error) {
	for i := range entries {
		e := &entries[i]
		if e.index != next {
			return next, verifyFailed(CheckLeafHash, "asked for entry %d, got %d", next, e.index)
		}
		next++
		if r.hashes != nil {
			r.hashes = append(r.hashes, e.leafHash)
		}
		if e.err != nil {
			r.malformed++
			continue
		}
		c, bad := m.match(e)
		if bad {
			r.malformed++
			logger.Debug("malformed log entry skipped", "index", e.index)
		}
		if c != nil {
			r.certs = append(r.certs, c)
		}
	}
	return next, nil
}

// matcher matches the entries of a batch against the watches, reusing
// its scratch from entry to entry: an entry that concerns no watch (nearly
// all of them) costs no allocation. Each worker has its own.
type matcher struct {
	set   *watch.Set
	id    cert.Identifiers
	names []string
	idx   []int
}

// match returns the certificate of an entry that concerns a watch, or nil;
// bad reports an entry from which no name could be read.
func (m *matcher) match(e *rawEntry) (c *cert.Certificate, bad bool) {
	m.id.Reset()
	if err := cert.ExtractIdentifiers(e.der, e.precert, &m.id); err != nil && !strictIdentifiers(e.der, e.precert, &m.id) {
		return nil, true
	}
	m.names = cert.AppendNormalized(m.names[:0], m.id.Names) // the walk put the CNs among the names
	m.idx = m.set.Match(m.idx[:0], m.names, m.id.IPs)
	if len(m.idx) == 0 {
		return nil, false
	}
	c, err := readEntry(e)
	return c, err != nil
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
