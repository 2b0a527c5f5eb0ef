package monitor

import (
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource/ctlog"
)

// LogStatus is the state of a CT log followed, for the ct_log_* metrics and
// the status page: what its follower reports (ctlog.Status, converted, so
// that the read side needs no source package).
type LogStatus struct {
	Log       string
	Known     bool // a verified tree head exists
	TreeSize  int64
	STHTime   time.Time
	Position  int64 // entries processed
	MMD       time.Duration
	Readonly  bool              // a log list gave it a final tree head
	Failures  map[string]uint64 // by check (ctlog.Checks)
	Verifying bool              // false while the last check failed
	// OlderTreeHeads counts correctly signed tree heads smaller than the
	// verified one and proven its prefix: caching frontends serve them, so
	// they are ignored rather than failed as rollbacks.
	OlderTreeHeads uint64
}

// Logs returns the state of every CT log followed.
func (m *Monitor) Logs() []LogStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []LogStatus
	for _, r := range m.runners {
		if l, ok := r.source.(*ctlog.Log); ok {
			out = append(out, LogStatus(l.Status()))
		}
	}
	return out
}
