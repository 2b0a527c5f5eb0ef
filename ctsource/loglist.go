package ctsource

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/certificate-transparency-go/loglist3"
)

// EndedShardGrace is how long after its temporal interval ended a shard is
// still followed: certificates in it have expired by then.
const EndedShardGrace = 30 * 24 * time.Hour

// DiscoveredLog is a CT log found in a log list.
type DiscoveredLog struct {
	Name      string // the description as a label value
	Protocol  string // rfc6962 or static
	URL       string // the log URL, or the monitoring prefix of a tiled log
	PublicKey []byte // DER SubjectPublicKeyInfo
	MMD       time.Duration
	// Final is the final tree head of a readonly log: it is followed up to
	// there, and must end exactly there.
	Final *FinalTreeHead
}

// FinalTreeHead is a readonly log's last tree.
type FinalTreeHead struct {
	Size int64
	Root [32]byte
}

// LogList reads a v3 log list (Google's or Apple's format), from a URL or a
// file, and tells the monitor which logs to follow. A list that cannot be
// read or parsed keeps the previous one in effect.
type LogList struct {
	name     string
	location string
	states   []loglist3.LogStatus
	http     *transport
	etag     string
	last     []byte
}

// LogStates names the states a log list may give a log.
var LogStates = map[string]loglist3.LogStatus{
	"pending":   loglist3.PendingLogStatus,
	"qualified": loglist3.QualifiedLogStatus,
	"usable":    loglist3.UsableLogStatus,
	"readonly":  loglist3.ReadOnlyLogStatus,
	"retired":   loglist3.RetiredLogStatus,
	"rejected":  loglist3.RejectedLogStatus,
}

// NewLogList returns a log list source; states are LogStates keys.
func NewLogList(name, location string, states []string, interval, timeout time.Duration) (*LogList, error) {
	l := &LogList{name: name, location: location, http: newTransport(timeout, 0, interval, maxLogResponse)}
	for _, s := range states {
		st, ok := LogStates[s]
		if !ok {
			return nil, fmt.Errorf("loglist %s: unknown state %q", name, s)
		}
		l.states = append(l.states, st)
	}
	return l, nil
}

// Name is the source label.
func (l *LogList) Name() string { return l.name }

// Close drops idle connections.
func (l *LogList) Close() { l.http.close() }

// Poll fetches the list and, when it changed, passes its logs to
// env.Discover.
func (l *LogList) Poll(ctx context.Context, env *Env) error {
	ctx = withErrorCounter(ctx, env.CountError)
	data, err := l.fetch(ctx)
	if err != nil {
		return err
	}
	if data == nil {
		return nil // unchanged
	}
	list, err := loglist3.NewFromJSON(data)
	if err != nil {
		env.CountError(ReasonBadResponse)
		return &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("loglist %s: %w; keeping the previous list", l.name, err)}
	}
	logs := l.pick(list, time.Now())
	if len(logs) == 0 {
		env.CountError(ReasonBadResponse)
		return &Error{Reason: ReasonBadResponse, Err: fmt.Errorf("loglist %s: no log in the states followed; keeping the previous list", l.name)}
	}
	if env.Discover == nil {
		return fmt.Errorf("loglist %s: nothing to give the logs to", l.name)
	}
	env.Discover(l.name, logs)
	l.last = data
	return nil
}

// fetch returns the list, or nil when it did not change.
func (l *LogList) fetch(ctx context.Context) ([]byte, error) {
	if !strings.HasPrefix(l.location, "http://") && !strings.HasPrefix(l.location, "https://") {
		data, err := os.ReadFile(l.location)
		if err != nil {
			return nil, fmt.Errorf("loglist %s: %w", l.name, err)
		}
		if bytes.Equal(data, l.last) {
			return nil, nil
		}
		return data, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.location, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if l.etag != "" && l.last != nil {
		req.Header.Set("If-None-Match", l.etag)
	}
	res, err := l.http.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotModified {
		return nil, nil
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(res.Body); err != nil {
		return nil, err
	}
	l.etag = res.Header.Get("ETag")
	if bytes.Equal(body.Bytes(), l.last) {
		return nil, nil
	}
	return body.Bytes(), nil
}

func (l *LogList) follows(st *loglist3.LogStates, ti *loglist3.TemporalInterval, now time.Time) bool {
	if !slices.Contains(l.states, st.LogStatus()) {
		return false
	}
	return ti == nil || ti.EndExclusive.IsZero() || ti.EndExclusive.After(now.Add(-EndedShardGrace))
}

func (l *LogList) pick(list *loglist3.LogList, now time.Time) []DiscoveredLog {
	var out []DiscoveredLog
	seen := map[string]bool{}
	add := func(d DiscoveredLog, st *loglist3.LogStates) {
		if ro := st.ReadOnly; ro != nil && len(ro.FinalTreeHead.SHA256RootHash) == 32 {
			d.Final = &FinalTreeHead{Size: ro.FinalTreeHead.TreeSize, Root: [32]byte(ro.FinalTreeHead.SHA256RootHash)}
		}
		// Two logs cannot share a label: the second gets a suffix.
		base := d.Name
		for i := 2; seen[d.Name]; i++ {
			d.Name = fmt.Sprintf("%s_%d", base, i)
		}
		seen[d.Name] = true
		out = append(out, d)
	}
	for _, op := range list.Operators {
		for _, lg := range op.Logs {
			if l.follows(lg.State, lg.TemporalInterval, now) {
				add(DiscoveredLog{Name: LogLabel(lg.Description), Protocol: "rfc6962", URL: lg.URL, PublicKey: lg.Key,
					MMD: time.Duration(lg.MMD) * time.Second}, lg.State)
			}
		}
		for _, lg := range op.TiledLogs {
			if l.follows(lg.State, lg.TemporalInterval, now) {
				add(DiscoveredLog{Name: LogLabel(lg.Description), Protocol: "static", URL: lg.MonitoringURL, PublicKey: lg.Key,
					MMD: time.Duration(lg.MMD) * time.Second}, lg.State)
			}
		}
	}
	return out
}

// LogLabel makes a log's description into a label value and source name:
// "Google 'Argon2026h1' log" becomes "google_argon2026h1_log".
func LogLabel(description string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(description) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			under = false
		} else if !under && b.Len() > 0 {
			b.WriteByte('_')
			under = true
		}
	}
	s := strings.TrimSuffix(b.String(), "_")
	if s == "" {
		return "log"
	}
	return s
}
