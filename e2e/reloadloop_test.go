package e2e

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// Reloads in a tight loop, alternating watches and sources, while both
// sources poll: no race (the binary is built with -race when the tests
// are), no crash, no goroutine leak, and the last configuration wins.
func TestReloadLoopWhilePolling(t *testing.T) {
	crtsh := crtshfake.New()
	defer crtsh.Close()
	log := ctlogfake.New(t)
	ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")
	for i := 0; i < 50; i++ {
		iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("h%d.example.com", i)}})
		if err != nil {
			t.Fatal(err)
		}
		log.AddCert(iss.Final, ca.DER)
		crtsh.Add(iss.Final)
	}
	log.Publish()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	write := func(i int) {
		extra := ""
		if i%2 == 1 {
			extra = fmt.Sprintf("  - {name: log, type: ctlog, url: %q, public_key: %s, start: beginning, interval: 50ms}\n",
				log.URL+"/", base64.StdEncoding.EncodeToString(log.PublicKeyDER()))
		}
		testenv.WriteFile(t, cfg, fmt.Sprintf("watches: [{domain: example.com}, {domain: w%d.example.org}]\nsources:\n  - {name: crtsh, type: crtsh, url: %q, interval: 50ms, request_interval: 0s}\n%s",
			i%3, crtsh.URL+"/", extra))
	}
	write(0)
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "ct.state"))
	e.WaitReady()
	e.Eventually("polls", func() bool { return harness.Value(e.Scrape(), "ct_new_certificates_total") == 50 })
	goroutines := harness.Value(e.Scrape(), "go_goroutines")
	const reloads = 200
	for i := 1; i <= reloads; i++ {
		write(i)
		if err := e.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			e.Scrape() // and scrapes in between
		}
		time.Sleep(2 * time.Millisecond) // a tight loop, not a synchronization
	}
	// The last configuration (200: crt.sh only, w2.example.org) wins.
	e.Eventually("the last configuration", func() bool {
		m := e.Scrape()
		return harness.Count(m, "ct_certificate_series_dropped_total", "watch", "w2.example.org") == 1 &&
			harness.Count(m, "ct_certificate_series_dropped_total") == 2 && harness.Count(m, "ct_source_up", "source", "log") == 0 &&
			harness.Value(m, "ct_config_last_reload_successful") == 1
	})
	e.Eventually("goroutines back to their number", func() bool { return harness.Value(e.Scrape(), "go_goroutines") <= goroutines+5 })
	if v := harness.Value(e.Scrape(), "ct_new_certificates_total"); v != 50 {
		t.Fatalf("counted %v, want 50", v)
	}
}
