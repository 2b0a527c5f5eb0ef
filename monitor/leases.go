package monitor

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/state"
)

// Leases is how replicas that share their state in PostgreSQL share the
// sources (pgstate.Leaser): each CT log and search source is run by the
// one replica holding its lease, and every commit carries the lease's
// fencing token.
type Leases interface {
	// Round heartbeats, renews, balances each group of sources (the CT
	// logs; the search sources) on its own, and returns the leases held
	// (source → epoch).
	Round(ctx context.Context, groups [][]string) (map[string]int64, error)
	// Fence is the fencing token of the lease held on source, or nil when
	// it is not held or may have lapsed (a stall since its last renewal):
	// the source then neither sends nor commits.
	Fence(source string) *state.Fence
	// Close releases every lease held.
	Close(ctx context.Context) error
}

// ShareWith makes the monitor run only the sources whose lease it holds,
// taking a lease round every renew; before Start. Log lists are read by
// every replica: each needs the whole list of logs to share them, and a
// list commits nothing.
func (m *Monitor) ShareWith(l Leases, renew time.Duration) {
	m.leases = l
	m.renew = renew
}

// leaseLoop takes a lease round every m.renew, or at once when a source
// was fenced, and has the sources run again when the leases held changed.
func (m *Monitor) leaseLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.renew)
	defer t.Stop()
	for {
		m.leaseRound()
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		case <-m.leaseKick:
		}
	}
}

func (m *Monitor) leaseRound() {
	m.mu.Lock()
	cfg := m.cfg
	m.mu.Unlock()
	if cfg == nil {
		return
	}
	m.discMu.Lock()
	discovered := maps.Clone(m.discovered)
	m.discMu.Unlock()
	// The logs and the search sources are shared each on their own, so
	// that no replica follows two logs while another follows none.
	var logNames, searches []string
	logs := map[string]bool{}
	for _, s := range sourceSet(cfg, discovered, m.shard) {
		switch s.Type {
		case config.TypeLogList:
		case config.TypeCTLog:
			logNames = append(logNames, s.Name)
			logs[s.Name] = true
		default:
			searches = append(searches, s.Name)
		}
	}
	held, err := m.leases.Round(m.ctx, [][]string{logNames, searches})
	if err != nil && m.ctx.Err() == nil {
		m.logger.Warn("renewing the leases on the sources failed; it will be tried again", "err", err)
	}
	now := map[string]bool{}
	for name := range held {
		now[name] = true
	}
	m.discMu.Lock()
	changed := !maps.Equal(m.held, now)
	m.held = now
	m.leased = logs
	m.shared = slices.Concat(logNames, searches)
	m.discMu.Unlock()
	if changed {
		m.logger.Info("the sources this replica follows changed", "sources", slices.Sorted(maps.Keys(now)))
		m.kickReconcile()
	}
}

// follows reports whether this replica runs the source: with leases,
// whether it holds its lease (log lists always).
func (m *Monitor) follows(s spec) bool {
	if m.leases == nil || s.Type == config.TypeLogList {
		return true
	}
	m.discMu.Lock()
	defer m.discMu.Unlock()
	return m.held[s.Name]
}

// fenced stops the source whose commit the store refused (another replica
// took its lease over): it is not run again until its lease is held again.
func (m *Monitor) fenced(name string) {
	m.discMu.Lock()
	delete(m.held, name)
	m.discMu.Unlock()
	m.kickReconcile()
	select {
	case m.leaseKick <- struct{}{}:
	default:
	}
}

func (m *Monitor) kickReconcile() {
	select {
	case m.reconcile <- struct{}{}:
	default:
	}
}

// Followed returns, for every CT log this replica knows, whether it
// follows it now (ct_log_followed): with leases, every log of the
// configuration and the lists, followed or not; else the logs it runs.
func (m *Monitor) Followed() map[string]bool {
	out := map[string]bool{}
	if m.leases != nil {
		m.discMu.Lock()
		for name := range m.leased {
			out[name] = false
		}
		m.discMu.Unlock()
	}
	for _, l := range m.Logs() {
		out[l.Log] = true
	}
	return out
}

// Elsewhere returns, with leases, the sources this replica does not run
// because it does not hold their lease (another replica runs them, or will
// once it takes the lease), sorted; nil without leases.
func (m *Monitor) Elsewhere() []string {
	if m.leases == nil {
		return nil
	}
	m.discMu.Lock()
	defer m.discMu.Unlock()
	var out []string
	for _, name := range m.shared {
		if !m.held[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// releaseLeases gives the leases up once the sources stopped, so that
// the other replicas take them over at once.
func (m *Monitor) releaseLeases() {
	if m.leases == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.leases.Close(ctx); err != nil {
		m.logger.Warn("releasing the leases failed: the other replicas take the sources over when they expire", "err", err)
	}
}
