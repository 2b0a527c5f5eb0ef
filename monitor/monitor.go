// Package monitor runs the configured sources in the background, each on its
// own schedule, records what they find through one Recorder, and keeps the
// health of each source for the collector. Nothing a scrape does waits on it.
package monitor

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/loglist"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// PruneInterval is how often expired issuances are removed from the state.
const PruneInterval = time.Hour

// MaxFirstPollSpread bounds how long a log a log list names waits for its
// first poll: the first polls of the logs a list adds at once are spread over
// their interval, but never over more than this.
const MaxFirstPollSpread = time.Minute

// Store is the state the monitor records into and the metrics read: the
// state file (*state.Store) or PostgreSQL (*pgstate.Store).
type Store interface {
	ctsource.Store
	// SetPolicy installs the configuration's view of recent issuances and
	// judges the recent ones again.
	SetPolicy(state.Policy) error
	// Prune deletes what expired; it returns how many issuances.
	Prune() (int, error)
	Snapshot() state.Snapshot
	SnapshotWithoutRecent() state.Snapshot
	RecentVersion() (generation uint64, until time.Time)
	Close() error
}

var _ Store = (*state.Store)(nil)

// Monitor owns the running sources. Its life: New, Apply a configuration,
// Start, Apply again on each reload, Stop.
type Monitor struct {
	store  Store
	logger *slog.Logger
	policy atomic.Pointer[watch.Set]
	rec    *ctsource.Recorder

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	shard Shard

	mu      sync.Mutex
	metrics Metrics // where health is reported (ReportTo)
	cfg     *config.Config
	started bool
	pending *sourcePlan // the sources Apply made before Start
	runners map[string]*runner
	health  map[string]*health // kept across a source's restart on reload

	// Logs named by log lists, set by the lists' runners and applied by the
	// reconciler goroutine, so that a runner never waits on mu (which Apply
	// holds while it stops runners).
	discMu     sync.Mutex
	discovered map[string][]loglist.Log
	reconcile  chan struct{}

	// With leases (ShareWith): the sources whose lease is held, the CT
	// logs shared and every source shared, under discMu.
	leases    Leases
	renew     time.Duration
	leaseKick chan struct{}
	held      map[string]bool
	leased    map[string]bool
	shared    []string
}

// Shard is this replica's share of the CT logs: those whose log id hashes
// to Index mod Count. Search sources are not sharded.
type Shard struct{ Index, Count int }

// Follows reports whether this replica follows the log with this key.
func (s Shard) Follows(publicKeyDER []byte) bool {
	if s.Count <= 1 {
		return true
	}
	id := sha256.Sum256(publicKeyDER)
	return binary.BigEndian.Uint64(id[:8])%uint64(s.Count) == uint64(s.Index)
}

// New returns a monitor that records into store. Nothing runs before Start.
func New(store Store, logger *slog.Logger, shard Shard) *Monitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{
		shard:      shard,
		store:      store,
		logger:     logger,
		ctx:        ctx,
		cancel:     cancel,
		runners:    map[string]*runner{},
		health:     map[string]*health{},
		discovered: map[string][]loglist.Log{},
		reconcile:  make(chan struct{}, 1),
		leaseKick:  make(chan struct{}, 1),
		held:       map[string]bool{},
	}
	m.policy.Store(watch.NewSet(nil))
	m.rec = &ctsource.Recorder{Store: store, Policy: m.policy.Load}
	return m
}

// Apply installs a configuration: the new watches take effect for the next
// certificate recorded, and recent series are judged again. Every source it
// needs is made first: a configuration whose source cannot be made is
// refused whole, and the one in effect kept. Once the monitor is started,
// the sources whose configuration changed are restarted, and the sources
// polled by watch are polled at once when the watches changed, so that a
// new watch does not wait an interval; before, Start starts them.
func (m *Monitor) Apply(cfg *config.Config) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	plan, err := m.plan(cfg)
	if err != nil {
		return err
	}
	old, err := m.setPolicy(cfg)
	if err != nil {
		plan.discard()
		return err
	}
	m.cfg = cfg
	for _, h := range m.health {
		h.keepWatches(watched(cfg.Policy))
	}
	if !m.started {
		if m.pending != nil {
			m.pending.discard()
		}
		m.pending = plan
		return nil
	}
	m.run(plan, !sameDomains(old, cfg.Policy))
	return nil
}

// setPolicy makes cfg's watches those the recorder matches and the state
// judges by, with cfg's limits of recent series, and returns the watches
// they replace.
func (m *Monitor) setPolicy(cfg *config.Config) (*watch.Set, error) {
	set := cfg.Policy
	err := m.store.SetPolicy(state.Policy{
		RecentWindow:       time.Duration(cfg.RecentWindow),
		SeriesLimit:        cfg.RecentSeriesLimit,
		MaxIssuersPerWatch: cfg.MaxIssuersPerWatch,
		Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
			return set.Verdict(w, is.Candidate())
		},
	})
	if err != nil {
		return nil, err
	}
	return m.policy.Swap(set), nil
}

// Start runs the sources of the configuration applied (and, from then on,
// those of each configuration applied), prunes the state file now and every
// PruneInterval, and follows what log lists say, until Stop.
func (m *Monitor) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started = true
	m.wg.Add(2)
	go m.pruneLoop()
	go m.reconciler()
	if m.leases != nil {
		m.wg.Add(1)
		go m.leaseLoop()
	}
	if m.pending != nil {
		m.run(m.pending, false)
		m.pending = nil
	}
}

func (m *Monitor) pruneLoop() {
	defer m.wg.Done()
	t := time.NewTicker(PruneInterval)
	defer t.Stop()
	for {
		m.prune()
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Monitor) prune() {
	n, err := m.store.Prune()
	if err != nil {
		m.logger.Error("pruning the state file failed; it will be tried again", "err", err)
		return
	}
	if n > 0 {
		m.logger.Info("pruned expired issuances from the state file", "issuances", n)
	}
}

// Stop stops every source and waits for them.
func (m *Monitor) Stop() {
	// Cancel first: the reconciler must not start anything again.
	m.cancel()
	m.mu.Lock()
	for _, r := range m.runners {
		r.stop()
	}
	m.runners = map[string]*runner{}
	if m.pending != nil {
		m.pending.discard()
		m.pending = nil
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.releaseLeases()
}

// Health returns the health of every configured source.
func (m *Monitor) Health() []SourceHealth {
	m.mu.Lock()
	hs := maps.Clone(m.health)
	cfgs := make(map[string]spec, len(m.runners))
	for name, r := range m.runners {
		cfgs[name] = r.cfg
	}
	m.mu.Unlock()
	// A search that ended after its watch was removed on reload must not
	// bring the watch back.
	current := watched(m.policy.Load())
	out := make([]SourceHealth, 0, len(hs))
	for name, h := range hs {
		cfg := cfgs[name]
		s := h.snapshot(name, func(w string) bool { return searchType(cfg.Type) && current(w) })
		s.Type = cfg.Type
		s.Interval = time.Duration(cfg.Interval)
		out = append(out, s)
	}
	return out
}

// WatchSet returns the configured watches with their policies (expected
// issuers, authorized keys), as the status page shows them.
func (m *Monitor) WatchSet() *watch.Set { return m.policy.Load() }

// Watches returns the configured watch domains.
func (m *Monitor) Watches() []string {
	ws := m.policy.Load().Watches()
	out := make([]string, len(ws))
	for i := range ws {
		out[i] = ws[i].Domain
	}
	return out
}
