package monitor

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
)

// max_issuers_per_watch reaches the state: with a limit of 1, the second
// issuer of a watch is counted as "other".
func TestMaxIssuersPerWatchApplied(t *testing.T) {
	fake := crtshfake.New()
	defer fake.Close()
	for _, cn := range []string{"CA One", "CA Two"} {
		ca := testpki.NewIssuer(t, cn, "Test")
		iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{"www.example.com"}, SCTs: 2})
		if err != nil {
			t.Fatal(err)
		}
		fake.Add(iss.Final)
	}
	store := openState(t)
	m := New(store, promslog.NewNopLogger(), Shard{})
	cfg := parse(t, fmt.Sprintf("max_issuers_per_watch: 1\nwatches: [{domain: example.com}]\n"+
		"sources: [{name: crtsh, type: crtsh, url: %q, request_interval: 0s}]\n", fake.URL))
	res, err := PollOnce(context.Background(), cfg, m, func(*state.Issuance, []state.Match) {})
	if err != nil || len(res.Failed) > 0 {
		t.Fatalf("poll: %v %v", err, res)
	}
	issuers := map[string]uint64{}
	for _, c := range store.Snapshot().Counters {
		if c.Name == state.CounterNewCertificates {
			issuers[c.Labels[1]] += c.Value
		}
	}
	if len(issuers) != 2 || issuers[state.IssuerOther] != 1 {
		t.Fatalf("issuers %v: want one of the CAs and other", issuers)
	}
}
