package e2e

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/internal/certspotterfake"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/state"
)

// TestChaos kills the exporter with SIGKILL at random moments — during log
// catch-up, crt.sh downloads, Cert Spotter pages and commits, right after a reload, while it
// prunes at start — while issuances keep arriving in a CT log and on
// crt.sh and Cert Spotter. Afterwards every issuance is counted exactly once per watch, every
// recent series is there, and the state file opens. CT_EXPORTER_CHAOS_KILLS
// sets the number of kills (default 50).
func TestChaos(t *testing.T) {
	kills := 50
	if n, err := strconv.Atoi(os.Getenv("CT_EXPORTER_CHAOS_KILLS")); err == nil {
		kills = n
	}
	log := ctlogfake.New(t)
	log.MaxBatch = 20
	log.SetDelay("get-entries", 5*time.Millisecond)
	crtsh := crtshfake.New()
	defer crtsh.Close()
	crtsh.SetDelay(2 * time.Millisecond)
	api := certspotterfake.New()
	defer api.Close()
	api.SetPageSize(3) // pages, so that kills fall between them
	ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")

	// truth: tbs_sha256 → the watches it concerns.
	truth := map[string]map[string]bool{}
	n := 0
	arrive := func(issuances, noise int) {
		for i := 0; i < noise; i++ {
			iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("n%d.example.net", log.Size())}})
			if err != nil {
				t.Fatal(err)
			}
			log.AddCert(iss.Final, ca.DER)
		}
		for i := 0; i < issuances; i++ {
			n++
			names, watches := []string{fmt.Sprintf("h%d.example.com", n)}, map[string]bool{"example.com": true}
			if n%3 == 0 {
				names, watches = []string{fmt.Sprintf("h%d.shop.example.com", n)}, map[string]bool{"example.com": true, "shop.example.com": true}
			}
			iss, err := ca.Issue(testpki.Leaf{DNSNames: names, SCTs: 2})
			if err != nil {
				t.Fatal(err)
			}
			c, err := cert.Parse(iss.Final)
			if err != nil {
				t.Fatal(err)
			}
			truth[fmt.Sprintf("%x", c.TBSSHA256)] = watches
			if n%5 < 2 {
				for _, der := range [][]byte{iss.Precert, iss.Final} {
					if _, err := api.Add(der); err != nil {
						t.Fatal(err)
					}
				}
				if n%5 == 0 { // only Cert Spotter has it
					continue
				}
			}
			switch n % 4 {
			case 0: // only crt.sh has it
				crtsh.Add(iss.Precert)
				crtsh.Add(iss.Final)
			case 1: // both
				crtsh.Add(iss.Precert)
				crtsh.Add(iss.Final)
				fallthrough
			default:
				log.AddPrecert(iss.Precert, ca.DER, ca.DER)
				log.AddCert(iss.Final, ca.DER)
			}
		}
		log.Publish()
	}
	arrive(10, 200)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	stateFile := filepath.Join(dir, "ct.state")
	writeConfig := func(limit int) {
		testenv.WriteFile(t, cfg, fmt.Sprintf(`
recent_series_limit: %d
watches: [{domain: example.com}, {domain: shop.example.com}]
sources:
  - {name: crtsh, type: crtsh, url: %q, interval: 300ms, request_interval: 0s}
  - {name: certspotter, type: certspotter, url: %q, interval: 300ms, request_interval: 0s}
  - name: chaoslog
    type: ctlog
    url: %q
    public_key: %s
    start: beginning
    interval: 200ms
    batch_size: 20
    workers: 3
`, limit, crtsh.URL+"/", api.URL+"/", log.URL+"/", base64.StdEncoding.EncodeToString(log.PublicKeyDER())))
	}
	writeConfig(1000)
	args := []string{"--config.file=" + cfg, "--state.file=" + stateFile}
	activity := func() int { return log.Requests("") + len(crtsh.Requests()) + len(api.Requests()) }

	reloads := 0
	for k := 0; k < kills; k++ {
		arrive(1+rand.IntN(2), rand.IntN(60))
		e := harness.StartExporter(t, args...)
		before := activity()
		e.Eventually("activity", func() bool { return activity()-before >= 1+rand.IntN(15) })
		if rand.IntN(3) == 0 {
			// Kill during or right after a reload.
			writeConfig(1000 + k)
			if err := e.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			reloads++
			before = activity()
			e.Eventually("activity after reload", func() bool { return activity()-before >= rand.IntN(5) })
		}
		if err := e.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-e.Exited
	}

	// The state file opens after all that, and is consistent.
	s, err := state.Open(stateFile, state.Options{})
	if err != nil {
		t.Fatalf("the state file does not open after %d kills: %v", kills, err)
	}
	s.Close()

	arrive(2, 10)
	matches := 0
	for _, ws := range truth {
		matches += len(ws)
	}
	e := harness.StartExporter(t, args...)
	e.WaitReady()
	e.Eventually("everything counted", func() bool {
		m := e.Scrape()
		return harness.Value(m, "ct_new_certificates_total") >= float64(matches) &&
			harness.Value(m, "ct_log_entries_processed_total") >= float64(log.Size())
	})
	m := e.Scrape()
	for what, c := range map[string][2]float64{
		"ct_new_certificates_total":        {harness.Value(m, "ct_new_certificates_total"), float64(matches)},
		"ct_state_certificates":            {harness.Value(m, "ct_state_certificates"), float64(len(truth))},
		"ct_log_entries_processed_total":   {harness.Value(m, "ct_log_entries_processed_total"), float64(log.Size())},
		"first-seen series":                {float64(harness.Count(m, "ct_certificate_first_seen_timestamp_seconds")), float64(matches)},
		"ct_log_verification_failures":     {harness.Value(m, "ct_log_verification_failures_total"), 0},
		"ct_state_write_errors_total":      {harness.Value(m, "ct_state_write_errors_total"), 0},
		"ct_config_last_reload_successful": {harness.Value(m, "ct_config_last_reload_successful"), 1},
	} {
		if c[0] != c[1] {
			t.Errorf("%s = %v, want %v", what, c[0], c[1])
		}
	}
	seen := map[string]bool{}
	for _, s := range m["ct_certificate_first_seen_timestamp_seconds"].GetMetric() {
		l := harness.LabelMap(s)
		key := l["tbs_sha256"] + " " + l["watch"]
		if seen[key] || !truth[l["tbs_sha256"]][l["watch"]] {
			t.Errorf("series %s: doubled or invented", key)
		}
		seen[key] = true
	}
	lost := matches - len(seen)
	t.Logf("chaos: %d kills (%d right after a reload), %d issuances (%d watch matches) from a CT log of %d entries, crt.sh and Cert Spotter; lost %d, doubled %d",
		kills, reloads, len(truth), matches, log.Size(), lost, int(harness.Value(m, "ct_new_certificates_total"))-matches)
}
