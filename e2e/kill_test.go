package e2e

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// groundTruth is what the fake crt.sh holds, as the exporter should count it.
type groundTruth struct {
	t     *testing.T
	fake  *crtshfake.Server
	ca    *testpki.CA
	n     int
	pairs map[string]map[string]bool // tbs_sha256 → watches
}

// writeConfig writes, in dir, a configuration that watches what issue
// plants, through the fake crt.sh, and returns its path.
func (g *groundTruth) writeConfig(dir string) string {
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(g.t, cfg, fmt.Sprintf(`
watches:
  - domain: example.com
  - domain: shop.example.com
  - domain: example.org
    expected_issuers: ["Let's Encrypt"]
sources:
  - {name: crtsh, type: crtsh, url: %q, interval: 200ms, request_interval: 0s}
`, g.fake.URL+"/"))
	return cfg
}

// issue makes one issuance, sometimes for two watches, sometimes with a
// decoy name, and lets crt.sh ingest its precertificate and final certificate.
func (g *groundTruth) issue() {
	g.t.Helper()
	g.n++
	var names []string
	watches := map[string]bool{}
	switch g.n % 4 {
	case 0:
		names = []string{fmt.Sprintf("h%d.example.com", g.n)}
		watches["example.com"] = true
	case 1:
		names = []string{fmt.Sprintf("h%d.shop.example.com", g.n), "notexample.com"}
		watches["example.com"], watches["shop.example.com"] = true, true
	case 2:
		names = []string{"example.org", fmt.Sprintf("h%d.example.com.evil.net", g.n)}
		watches["example.org"] = true
	case 3:
		names = []string{fmt.Sprintf("*.h%d.example.org", g.n)}
		watches["example.org"] = true
	}
	iss, err := g.ca.Issue(testpki.Leaf{DNSNames: names, SCTs: 2})
	if err != nil {
		g.t.Fatal(err)
	}
	c, err := cert.Parse(iss.Final)
	if err != nil {
		g.t.Fatal(err)
	}
	g.pairs[hex.EncodeToString(c.TBSSHA256[:])] = watches
	g.fake.Add(iss.Precert)
	g.fake.Add(iss.Final)
}

func (g *groundTruth) matches() int {
	n := 0
	for _, ws := range g.pairs {
		n += len(ws)
	}
	return n
}

func downloads(fake *crtshfake.Server) map[string]int {
	d := map[string]int{}
	for _, r := range fake.Requests() {
		if r.Kind == crtshfake.KindDownload && r.Status == 200 {
			d[r.Query]++
		}
	}
	return d
}

func total(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// The exporter is SIGKILLed many times in the middle of polls while new
// certificates keep arriving; in the end every issuance is counted exactly
// once per watch, and every recent series is there.
func TestSIGKILLDuringPollsLosesNothing(t *testing.T) {
	kills := 25
	if testing.Short() {
		kills = 8
	}
	fake := crtshfake.New()
	defer fake.Close()
	// Slow enough that a kill lands in the middle of a poll.
	fake.SetDelay(3 * time.Millisecond)
	g := &groundTruth{t: t, fake: fake, ca: testpki.NewIssuer(t, "R11", "Let's Encrypt"), pairs: map[string]map[string]bool{}}
	for i := 0; i < 20; i++ {
		g.issue()
	}

	dir := t.TempDir()
	cfg := g.writeConfig(dir)
	state := filepath.Join(dir, "ct.state")
	args := []string{"--config.file=" + cfg, "--state.file=" + state}

	for k := 0; k < kills; k++ {
		g.issue()
		g.issue()
		before := total(downloads(fake))
		e := harness.StartExporter(t, args...)
		want := 1 + rand.IntN(4)
		e.Eventually("downloads", func() bool { return total(downloads(fake))-before >= want })
		if err := e.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-e.Exited
	}

	g.issue()
	e := harness.StartExporter(t, args...)
	e.WaitReady()
	e.Eventually("every issuance counted", func() bool {
		m := e.Scrape()
		return harness.Value(m, "ct_new_certificates_total") >= float64(g.matches()) &&
			harness.Count(m, "ct_certificate_embedded_scts") == g.matches()
	})
	m := e.Scrape()
	if got := harness.Value(m, "ct_new_certificates_total"); got != float64(g.matches()) {
		t.Fatalf("ct_new_certificates_total = %v, want %d: an issuance was counted twice", got, g.matches())
	}
	if got := harness.Value(m, "ct_state_certificates"); got != float64(len(g.pairs)) {
		t.Errorf("ct_state_certificates = %v, want %d", got, len(g.pairs))
	}
	checkSeries(t, m, g)

	// Downloads: once per crt.sh id, except those a kill interrupted.
	d := downloads(fake)
	if len(d) != 2*len(g.pairs) {
		t.Errorf("%d ids downloaded, want %d", len(d), 2*len(g.pairs))
	}
	repeats := total(d) - len(d)
	if repeats > kills {
		t.Errorf("%d repeated downloads for %d kills", repeats, kills)
	}
	t.Logf("%d kills; %d issuances, %d watch matches, each counted once; %d downloads for %d crt.sh ids (%d repeated after a kill)",
		kills, len(g.pairs), g.matches(), total(d), len(d), repeats)

	// A graceful restart brings back the same series, and counts nothing.
	before := seriesLines(m)
	if err := e.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-e.Exited
	e = harness.StartExporter(t, args...)
	e.WaitReady()
	after := e.Scrape()
	if got := seriesLines(after); got != before {
		t.Errorf("recent series changed across a restart:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	if harness.Value(after, "ct_new_certificates_total") != float64(g.matches()) {
		t.Error("counters changed across a restart")
	}
}

// checkSeries verifies one first-seen series per (issuance, watch), with the
// verdict the configuration gives.
func checkSeries(t *testing.T, m map[string]*dto.MetricFamily, g *groundTruth) {
	t.Helper()
	seen := map[string]int{}
	for _, s := range m["ct_certificate_first_seen_timestamp_seconds"].GetMetric() {
		l := harness.LabelMap(s)
		seen[l["tbs_sha256"]+" "+l["watch"]]++
		want := "unreviewed"
		if l["watch"] == "example.org" {
			want = "issuer_allowed"
		}
		if l["verdict"] != want {
			t.Errorf("%s for %s: verdict %s, want %s", l["tbs_sha256"][:8], l["watch"], l["verdict"], want)
		}
	}
	for tbs, ws := range g.pairs {
		for w := range ws {
			if seen[tbs+" "+w] != 1 {
				t.Errorf("issuance %s for %s: %d series, want 1", tbs[:8], w, seen[tbs+" "+w])
			}
		}
	}
	if len(seen) != g.matches() {
		t.Errorf("%d series, want %d", len(seen), g.matches())
	}
}

func seriesLines(m map[string]*dto.MetricFamily) string {
	var lines []string
	for _, s := range m["ct_certificate_first_seen_timestamp_seconds"].GetMetric() {
		lines = append(lines, fmt.Sprintf("%v %v", s.Label, s.Gauge.GetValue()))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
