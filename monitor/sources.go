package monitor

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"time"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/certspotter"
	"github.com/ct-exporter/ct_exporter/ctsource/crtsh"
	"github.com/ct-exporter/ct_exporter/ctsource/ctlog"
	"github.com/ct-exporter/ct_exporter/ctsource/loglist"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

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
	sources []spec
	made    map[string]ctsource.Source
	// health is that of each source made, which counts its errors there:
	// the running source's, kept across its restart, or a new one.
	health map[string]*health
	listed map[string]bool // the sources that are logs a log list names
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
	p := &sourcePlan{made: map[string]ctsource.Source{}, health: map[string]*health{}, listed: map[string]bool{}}
	for _, s := range sourceSet(cfg, discovered, m.shard) {
		if !m.follows(s) {
			continue
		}
		if !configured[s.Name] {
			p.listed[s.Name] = true
		}
		if r, ok := m.runners[s.Name]; ok && reflect.DeepEqual(s, r.cfg) {
			p.sources = append(p.sources, s)
			continue
		}
		h := m.health[s.Name]
		if h == nil {
			h = newHealth(s.Name, m.metrics, m.watching)
		}
		src, err := newSource(s, h.countError, m.discover)
		if err != nil {
			if configured[s.Name] {
				p.discard()
				return nil, err
			}
			m.logger.Error("cannot follow a log the log list names; the others are followed", "log", s.Name, "err", err)
			continue
		}
		p.made[s.Name] = src
		p.health[s.Name] = h
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
		h := p.health[s.Name]
		m.health[s.Name] = h
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
		if m.leases != nil {
			name := s.Name
			r.fenced = func() { m.fenced(name) }
		}
		if p.listed[s.Name] {
			r.delay = firstPollDelay(started, fresh, time.Duration(s.Interval))
			started++
		}
		ctx, cancel := context.WithCancel(m.ctx)
		r.cancel = cancel
		m.runners[s.Name] = r
		go r.run(ctx, m.env(h, s), time.Duration(s.Interval), m.logger.With("source_name", s.Name))
	}
}

// spec is a source to run: as configured, or a log a log list names.
type spec struct {
	config.Source
	// final is the final tree head of a readonly log a log list names.
	final *ctlog.FinalTreeHead
}

// sourceSet is what a replica polls: the configured sources, then the logs
// the log lists name, each name once and each log (by key) once, and of the
// logs only this shard's.
func sourceSet(cfg *config.Config, discovered map[string][]loglist.Log, shard Shard) []spec {
	var sources []spec
	names, keys := map[string]bool{}, map[string]bool{}
	add := func(s spec) {
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
		add(spec{Source: s})
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
func discoveredSource(list config.Source, d loglist.Log) spec {
	s := config.Source{
		Name:              d.Name,
		Type:              config.TypeCTLog,
		URL:               d.URL,
		Interval:          list.LogInterval,
		Timeout:           list.Timeout,
		Protocol:          config.ProtocolRFC6962,
		PublicKeyDER:      d.PublicKey,
		Start:             list.Start,
		MMD:               config.Duration(d.MMD),
		Workers:           list.Workers,
		BatchSize:         list.BatchSize,
		RequestsPerSecond: list.RequestsPerSecond,
	}
	if d.Tiled {
		s.Protocol = config.ProtocolStatic
	}
	if s.BatchSize == 0 {
		s.BatchSize = config.BatchSizeFor(s.Protocol)
	}
	if s.MMD <= 0 {
		s.MMD = config.Duration(config.DefaultLogMMD)
	}
	return spec{Source: s, final: d.Final}
}

// discover records the logs a list names; the reconciler applies them.
func (m *Monitor) discover(list string, logs []loglist.Log) {
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

// newSource makes the source s configures, which counts its failed
// attempts with errs; a log list gives the logs it names to found.
func newSource(s spec, errs ctsource.ErrorCounter, found func(list string, logs []loglist.Log)) (ctsource.Source, error) {
	switch s.Type {
	case config.TypeCrtsh:
		return crtsh.New(s.Name, s.URL, time.Duration(s.Interval), time.Duration(s.Timeout), time.Duration(s.RequestInterval), errs)
	case config.TypeCertspotter:
		return certspotter.New(s.Name, s.URL, s.Token.Reveal(), time.Duration(s.Interval), time.Duration(s.Timeout), time.Duration(s.RequestInterval), errs)
	case config.TypeCTLog:
		opts := ctlog.Options{
			Interval:          time.Duration(s.Interval),
			Timeout:           time.Duration(s.Timeout),
			Start:             s.Start,
			Workers:           s.Workers,
			BatchSize:         s.BatchSize,
			RequestsPerSecond: s.RequestsPerSecond,
			MMD:               time.Duration(s.MMD),
			CountError:        errs,
			Final:             s.final,
		}
		if s.Protocol == config.ProtocolStatic {
			return ctlog.NewStatic(s.Name, s.URL, s.PublicKeyDER, opts)
		}
		return ctlog.NewRFC6962(s.Name, s.URL, s.PublicKeyDER, opts)
	case config.TypeLogList:
		l, err := loglist.New(s.Name, s.URL, s.States, s.MaxLogs, time.Duration(s.Interval), time.Duration(s.Timeout), errs, found)
		if err != nil || s.PublicKeyDER == nil {
			return l, err
		}
		if err := l.RequireSignature(s.PublicKeyDER, s.SignatureURL); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("monitor: source %s: type %q is not supported", s.Name, s.Type)
}

// env is what a runner's source s polls with; it reports to h. With
// leases, its commits carry the lease's fencing token.
func (m *Monitor) env(h *health, s spec) *ctsource.Env {
	env := &ctsource.Env{Recorder: m.rec, Logger: m.logger, WatchSearched: h.watchSearched, LogListAccepted: h.logListAccepted}
	if m.leases != nil && s.Type != config.TypeLogList {
		name := s.Name
		env.Fence = func() *state.Fence { return m.leases.Fence(name) }
	}
	return env
}
