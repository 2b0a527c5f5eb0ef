// Package monitor runs the configured sources in the background, each on its
// own schedule, records what they find through one Recorder, and keeps the
// health of each source for the collector. Nothing a scrape does waits on it.
package monitor

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// PruneInterval is how often expired issuances are removed from the state.
const PruneInterval = time.Hour

// MaxFirstPollSpread bounds how long a log a log list names waits for its
// first poll: the first polls of the logs a list adds at once are spread over
// their interval, but never over more than this.
const MaxFirstPollSpread = time.Minute

// Monitor owns the running sources.
type Monitor struct {
	store  *state.Store
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
	runners map[string]*runner
	health  map[string]*health // kept across a source's restart on reload

	// Logs named by log lists, set by the lists' runners and applied by the
	// reconciler goroutine, so that a runner never waits on mu (which Apply
	// holds while it stops runners).
	discMu     sync.Mutex
	discovered map[string][]ctsource.DiscoveredLog
	reconcile  chan struct{}
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

// New returns a monitor that records into store. Call Apply to start sources.
func New(store *state.Store, logger *slog.Logger, shard Shard) *Monitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{
		shard:      shard,
		store:      store,
		logger:     logger,
		ctx:        ctx,
		cancel:     cancel,
		runners:    map[string]*runner{},
		health:     map[string]*health{},
		discovered: map[string][]ctsource.DiscoveredLog{},
		reconcile:  make(chan struct{}, 1),
	}
	m.policy.Store(watch.NewSet(nil))
	m.rec = &ctsource.Recorder{Store: store, Policy: m.policy.Load}
	return m
}

// Apply installs a configuration: the new watches take effect for the next
// certificate recorded, recent series are judged again, and sources whose
// configuration changed are restarted. Sources polled by watch are polled
// at once when the watches changed, so a new watch does not wait an interval.
func (m *Monitor) Apply(cfg *config.Config) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Every new source is made before anything changes: a configuration
	// whose source cannot be made is refused whole, and the running one kept.
	plan, err := m.plan(cfg)
	if err != nil {
		return err
	}
	set := cfg.Policy
	err = m.store.SetPolicy(state.Policy{
		RecentWindow:       time.Duration(cfg.RecentWindow),
		SeriesLimit:        cfg.RecentSeriesLimit,
		MaxIssuersPerWatch: cfg.MaxIssuersPerWatch,
		Verdict: func(w string, is *state.Issuance) (watch.Verdict, bool) {
			return ctsource.Verdict(set, w, is)
		},
	})
	if err != nil {
		plan.discard()
		return err
	}
	old := m.policy.Swap(set)
	m.cfg = cfg
	for _, h := range m.health {
		h.keepWatches(watched(set))
	}
	m.run(plan, !sameDomains(old, set))
	return nil
}

// watched reports the domains set watches.
func watched(set *watch.Set) func(string) bool {
	return func(domain string) bool {
		_, ok := set.Get(domain)
		return ok
	}
}

// searchType reports the types of source that search by watch, and report
// each watch's last successful search.
func searchType(t string) bool { return t == config.TypeCrtsh || t == config.TypeCertspotter }

// sourcePlan is the sources a configuration and the log lists call for, with
// those that need a new runner already made.
type sourcePlan struct {
	sources []config.Source
	made    map[string]ctsource.Source
	listed  map[string]bool // the sources that are logs a log list names
}

func (p *sourcePlan) discard() {
	for _, src := range p.made {
		src.Close()
	}
}

// plan makes the sources cfg needs that are not running as configured; m.mu
// is held. A configured source that cannot be made fails the plan. A log a
// log list names that cannot be made (a key the CT library refuses) is
// logged and left out: one bad entry of a list must not stop the others.
func (m *Monitor) plan(cfg *config.Config) (*sourcePlan, error) {
	m.discMu.Lock()
	discovered := maps.Clone(m.discovered)
	m.discMu.Unlock()
	configured := map[string]bool{}
	for _, s := range cfg.Sources {
		configured[s.Name] = true
	}
	p := &sourcePlan{made: map[string]ctsource.Source{}, listed: map[string]bool{}}
	for _, s := range sourceSet(cfg, discovered, m.shard) {
		if !configured[s.Name] {
			p.listed[s.Name] = true
		}
		if r, ok := m.runners[s.Name]; ok && reflect.DeepEqual(s, r.cfg) {
			p.sources = append(p.sources, s)
			continue
		}
		src, err := newSource(s)
		if err != nil {
			if configured[s.Name] {
				p.discard()
				return nil, err
			}
			m.logger.Error("cannot follow a log the log list names; the others are followed", "log", s.Name, "err", err)
			continue
		}
		p.made[s.Name] = src
		p.sources = append(p.sources, s)
	}
	return p, nil
}

// run makes the running sources those of the plan; m.mu is held. Sources
// polled by watch are kicked when the watches changed. The first polls of
// the listed logs started together are spread (firstPollDelay): a list of
// 200 new logs must not open 200 connections at once.
func (m *Monitor) run(p *sourcePlan, kick bool) {
	want := make(map[string]bool, len(p.sources))
	for _, s := range p.sources {
		want[s.Name] = true
	}
	for name, r := range m.runners {
		if _, remade := p.made[name]; !want[name] || remade {
			r.stop()
			delete(m.runners, name)
			if !want[name] {
				m.health[name].gone()
				delete(m.health, name)
			}
		}
	}
	fresh := 0
	for _, s := range p.sources {
		if _, running := m.runners[s.Name]; !running && p.listed[s.Name] {
			fresh++
		}
	}
	started := 0
	for _, s := range p.sources {
		if r, ok := m.runners[s.Name]; ok {
			if kick && s.Type != config.TypeCTLog {
				r.kick()
			}
			continue
		}
		h, ok := m.health[s.Name]
		if !ok {
			h = newHealth(s.Name, m.metrics, m.watching)
			m.health[s.Name] = h
		}
		if !searchType(s.Type) {
			// A search source's name reused for another type.
			h.keepWatches(func(string) bool { return false })
		}
		h.started(time.Duration(s.Interval))
		r := &runner{
			cfg:    s,
			source: p.made[s.Name],
			health: h,
			kicks:  make(chan struct{}, 1),
			done:   make(chan struct{}),
		}
		if p.listed[s.Name] {
			r.delay = firstPollDelay(started, fresh, time.Duration(s.Interval))
			started++
		}
		ctx, cancel := context.WithCancel(m.ctx)
		r.cancel = cancel
		m.runners[s.Name] = r
		go r.run(ctx, m.env(h), time.Duration(s.Interval), m.logger.With("source_name", s.Name))
	}
}

// sourceSet is what a replica polls: the configured sources, then the logs
// the log lists name, each name once and each log (by key) once, and of the
// logs only this shard's.
func sourceSet(cfg *config.Config, discovered map[string][]ctsource.DiscoveredLog, shard Shard) []config.Source {
	var sources []config.Source
	names, keys := map[string]bool{}, map[string]bool{}
	add := func(s config.Source) {
		if names[s.Name] {
			return
		}
		if s.Type == config.TypeCTLog {
			if keys[string(s.PublicKeyDER)] || !shard.Follows(s.PublicKeyDER) {
				return
			}
			keys[string(s.PublicKeyDER)] = true
		}
		names[s.Name] = true
		sources = append(sources, s)
	}
	for _, s := range cfg.Sources {
		add(s)
	}
	for _, s := range cfg.Sources {
		if s.Type == config.TypeLogList {
			for _, d := range discovered[s.Name] {
				add(discoveredSource(s, d))
			}
		}
	}
	return sources
}

// discoveredSource is the ctlog source for a log a log list names.
func discoveredSource(list config.Source, d ctsource.DiscoveredLog) config.Source {
	s := config.Source{
		Name:              d.Name,
		Type:              config.TypeCTLog,
		URL:               d.URL,
		Interval:          list.LogInterval,
		Timeout:           list.Timeout,
		Protocol:          d.Protocol,
		PublicKeyDER:      d.PublicKey,
		Start:             list.Start,
		MMD:               config.Duration(d.MMD),
		Workers:           list.Workers,
		BatchSize:         list.BatchSize,
		RequestsPerSecond: list.RequestsPerSecond,
	}
	if s.BatchSize == 0 {
		s.BatchSize = config.BatchSizeFor(s.Protocol)
	}
	if s.MMD <= 0 {
		s.MMD = config.Duration(config.DefaultLogMMD)
	}
	if d.Final != nil {
		s.Final = &config.FinalTreeHead{Size: d.Final.Size, Root: d.Final.Root}
	}
	return s
}

// discover records the logs a list names; the reconciler applies them.
func (m *Monitor) discover(list string, logs []ctsource.DiscoveredLog) {
	m.discMu.Lock()
	m.discovered[list] = logs
	m.discMu.Unlock()
	select {
	case m.reconcile <- struct{}{}:
	default:
	}
}

func (m *Monitor) reconciler() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.reconcile:
		}
		m.mu.Lock()
		if m.cfg != nil && m.ctx.Err() == nil {
			if p, err := m.plan(m.cfg); err != nil {
				m.logger.Error("following the logs of a log list failed", "err", err)
			} else {
				m.run(p, false)
			}
		}
		m.mu.Unlock()
	}
}

// firstPollDelay is how long the i-th of n logs started together waits for
// its first poll: i/n of their interval, capped at MaxFirstPollSpread. The
// delays are distinct and in [0, interval), so the polls stay apart after.
func firstPollDelay(i, n int, interval time.Duration) time.Duration {
	spread := min(interval, MaxFirstPollSpread)
	if n <= 1 || spread <= 0 || i <= 0 {
		return 0
	}
	return time.Duration(int64(spread) * int64(i) / int64(n))
}

func sameDomains(a, b *watch.Set) bool {
	if a.Len() != b.Len() {
		return false
	}
	for i, w := range a.Watches() {
		o := b.Watches()[i]
		if w.Domain != o.Domain || w.IncludeSubdomains != o.IncludeSubdomains {
			return false
		}
	}
	return true
}

func newSource(s config.Source) (ctsource.Source, error) {
	switch s.Type {
	case config.TypeCrtsh:
		return ctsource.NewCrtsh(s.Name, s.URL, time.Duration(s.Interval), time.Duration(s.Timeout), time.Duration(s.RequestInterval))
	case config.TypeCertspotter:
		return ctsource.NewCertspotter(s.Name, s.URL, s.Token.Reveal(), time.Duration(s.Interval), time.Duration(s.Timeout), time.Duration(s.RequestInterval))
	case config.TypeCTLog:
		opts := ctsource.LogOptions{
			Interval:          time.Duration(s.Interval),
			Timeout:           time.Duration(s.Timeout),
			Start:             s.Start,
			Workers:           s.Workers,
			BatchSize:         s.BatchSize,
			RequestsPerSecond: s.RequestsPerSecond,
			MMD:               time.Duration(s.MMD),
		}
		if s.Final != nil {
			opts.Final = &ctsource.FinalTreeHead{Size: s.Final.Size, Root: s.Final.Root}
		}
		if s.Protocol == config.ProtocolStatic {
			return ctsource.NewStaticLog(s.Name, s.URL, s.PublicKeyDER, opts)
		}
		return ctsource.NewRFC6962Log(s.Name, s.URL, s.PublicKeyDER, opts)
	case config.TypeLogList:
		return ctsource.NewLogList(s.Name, s.URL, s.States, s.MaxLogs, time.Duration(s.Interval), time.Duration(s.Timeout))
	}
	return nil, fmt.Errorf("monitor: source %s: type %q is not supported", s.Name, s.Type)
}

func (m *Monitor) env(h *health) *ctsource.Env {
	return &ctsource.Env{Recorder: m.rec, CountError: h.countError, Logger: m.logger, Discover: m.discover, WatchSearched: h.watchSearched}
}

// Start prunes the state file now and every PruneInterval, and follows
// what log lists say, until Stop.
func (m *Monitor) Start() {
	m.wg.Add(2)
	go m.pruneLoop()
	go m.reconciler()
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
	m.mu.Unlock()
	m.wg.Wait()
}

// Health returns the health of every configured source.
func (m *Monitor) Health() []SourceHealth {
	m.mu.Lock()
	hs := maps.Clone(m.health)
	cfgs := make(map[string]config.Source, len(m.runners))
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

// Logs returns the state of every CT log followed.
func (m *Monitor) Logs() []ctsource.LogStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ctsource.LogStatus
	for _, r := range m.runners {
		if l, ok := r.source.(interface{ Status() ctsource.LogStatus }); ok {
			out = append(out, l.Status())
		}
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

type runner struct {
	cfg    config.Source
	source ctsource.Source
	health *health
	delay  time.Duration // before the first poll
	cancel context.CancelFunc
	kicks  chan struct{}
	done   chan struct{}
}

func (r *runner) kick() {
	select {
	case r.kicks <- struct{}{}:
	default:
	}
}

func (r *runner) stop() {
	r.cancel()
	<-r.done
	r.source.Close()
}

// run polls every interval. After a failure the next poll comes sooner,
// backing off from 5s up to the interval: a source that recovers is polled
// again within one interval.
//
// A search source (ctsource.WatchSource) fails by watch: a watch that fails
// is retried on its own backoff between the polls (RetryWatches), while the
// other watches keep their interval, and the source itself backs off only
// when its API limits it (a *ctsource.PausedError, a 429: the limit is
// shared by every watch). Nothing is sent during such a pause, retries and
// kicks included, and the pause lasts at least the Retry-After given.
func (r *runner) run(ctx context.Context, env *ctsource.Env, interval time.Duration, logger *slog.Logger) {
	defer close(r.done)
	env.Logger = logger
	if r.delay > 0 {
		t := time.NewTimer(r.delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	ws, _ := r.source.(ctsource.WatchSource)
	failures := 0 // polls in a row that failed as a whole, or were paused
	next := time.Now()
	var resume time.Time // nothing is sent before, after a pause
	for {
		retry, ok := r.wait(ctx, ws, next, resume)
		if !ok {
			return
		}
		start := time.Now()
		var err error
		if retry {
			err = ws.RetryWatches(ctx, env)
		} else {
			err = r.source.Poll(ctx, env)
		}
		if ctx.Err() != nil {
			return
		}
		r.health.observe(err == nil, start, time.Since(start))
		retryAfter, paused := ctsource.Paused(err)
		switch {
		case err != nil && (ws == nil || paused):
			failures++
			wait := max(ctsource.Backoff(failures, min(5*time.Second, interval), interval), retryAfter)
			resume = time.Now().Add(wait)
			if !retry || resume.After(next) {
				next = resume
			}
			logger.Warn("poll failed", "err", err, "failures", failures, "retry_in", wait.Round(time.Millisecond))
		default:
			if failures > 0 {
				logger.Info("source recovered", "after_failures", failures)
			}
			failures = 0
			if !retry {
				next = time.Now().Add(interval)
			}
			if err != nil {
				// Some watches fail; each is retried on its own.
				logger.Warn("poll failed for some watches", "err", err, "next_retry", time.Until(ws.NextRetry()).Round(time.Millisecond))
			} else {
				logger.Debug("poll done", "duration", time.Since(start), "retry", retry)
			}
		}
	}
}

// wait waits for the next poll at next, or for a search source's next
// retry of a failing watch when that comes first, or for a kick (the
// watches changed), which polls at once; never before resume. It reports
// whether what comes is a retry, and false when ctx ends.
func (r *runner) wait(ctx context.Context, ws ctsource.WatchSource, next, resume time.Time) (retry, ok bool) {
	for {
		at := next
		retry = false
		if ws != nil {
			if t := ws.NextRetry(); !t.IsZero() && t.Before(next) {
				at, retry = t, true
			}
		}
		if at.Before(resume) {
			at = resume
			retry = retry && resume.Before(next)
		}
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, false
		case <-t.C:
			return retry, true
		case <-r.kicks:
			t.Stop()
			// Polled at once, unless the source is paused.
			next = time.Now()
		}
	}
}
