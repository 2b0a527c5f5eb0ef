package monitor

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
)

// fakeLeases holds the leases a test says. A lost lease is still held at
// the last round but gives no fence (another replica took it meanwhile):
// once asked for its fence, it is no longer held.
type fakeLeases struct {
	mu     sync.Mutex
	held   map[string]int64
	lost   map[string]bool
	fenced map[string]bool // lost leases whose fence was asked for
	groups [][]string
	closed bool
}

func (f *fakeLeases) Round(_ context.Context, groups [][]string) (map[string]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.groups = groups
	sources := slices.Concat(groups...)
	out := map[string]int64{}
	for s, e := range f.held {
		if slices.Contains(sources, s) && !f.fenced[s] {
			out[s] = e
		}
	}
	return out, nil
}

func (f *fakeLeases) Fence(source string) *state.Fence {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.held[source]
	if f.lost[source] {
		f.fenced[source] = true
		return nil
	}
	if !ok {
		return nil
	}
	return &state.Fence{Lease: source, Holder: "me", Epoch: e}
}

func (f *fakeLeases) Close(context.Context) error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

func (f *fakeLeases) set(held map[string]int64, lost map[string]bool) {
	f.mu.Lock()
	f.held, f.lost, f.fenced = held, lost, map[string]bool{}
	f.mu.Unlock()
}

// With leases, the monitor runs the sources whose lease it holds, and only
// those, following the leases as they change; a source whose lease is lost
// commits nothing and stops; Stop releases the leases.
func TestMonitorRunsTheSourcesItHoldsLeasesOn(t *testing.T) {
	fake := crtshfake.New()
	defer fake.Close()
	fake2 := crtshfake.New() // c2's
	defer fake2.Close()
	ca, err := testpki.NewRoot("Test CA", "Test")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{"www.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	fake.Add(iss.Final)
	store := openState(t)
	leases := &fakeLeases{}
	// c2's lease is held at the round but lost since: it sends nothing,
	// commits nothing, and stops.
	leases.set(map[string]int64{"c2": 1}, map[string]bool{"c2": true})
	m := New(store, promslog.NewNopLogger(), Shard{})
	m.ShareWith(leases, 20*time.Millisecond)
	cfg := "watches: [{domain: example.com}]\nsources:\n"
	for name, url := range map[string]string{"c1": fake.URL, "c2": fake2.URL} {
		cfg += fmt.Sprintf("  - {name: %s, type: crtsh, url: %q, interval: 50ms, request_interval: 0s}\n", name, url)
	}
	if err := m.Apply(parse(t, cfg)); err != nil {
		t.Fatal(err)
	}
	running := func(name string) bool {
		_, ok := healthOf(m, name)
		return ok
	}
	m.Start()
	stopped := false
	defer func() {
		if !stopped {
			m.Stop()
		}
	}()
	eventually(t, "c2 found its lease lost", func() bool {
		leases.mu.Lock()
		defer leases.mu.Unlock()
		return leases.fenced["c2"]
	})
	eventually(t, "c2 stopped once its lease is lost", func() bool { return !running("c2") })
	if running("c1") {
		t.Fatal("c1 runs without its lease")
	}
	if n := store.Snapshot().Certificates; n != 0 {
		t.Fatalf("%d certificates committed without a lease", n)
	}
	if r := fake2.Requests(); len(r) != 0 {
		t.Fatalf("c2 sent %d requests under a lost lease", len(r))
	}
	// The lease of c1 comes: it runs and records.
	leases.set(map[string]int64{"c1": 3}, nil)
	eventually(t, "c1 running and recording", func() bool {
		h, ok := healthOf(m, "c1")
		return ok && h.Polled && store.Snapshot().Certificates == 1
	})
	if running("c2") {
		t.Fatal("c2 runs without its lease")
	}
	// The status page names what other replicas run.
	eventually(t, "c2 said to run elsewhere", func() bool { return slices.Equal(m.Elsewhere(), []string{"c2"}) })
	leases.mu.Lock()
	groups := leases.groups
	leases.mu.Unlock()
	if len(groups) != 2 || len(groups[0]) != 0 || !slices.Equal(slices.Sorted(slices.Values(groups[1])), []string{"c1", "c2"}) {
		t.Fatalf("leases asked for %v, want no log and the search sources c1 and c2", groups)
	}
	m.Stop()
	stopped = true
	if !leases.closed {
		t.Fatal("Stop did not release the leases")
	}
}
