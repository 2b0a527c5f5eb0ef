package e2e

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
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

// The exporter is SIGKILLed again and again while it catches up on a CT log
// that keeps growing, and crt.sh reports some of the same issuances: in the
// end every entry is processed once, and every issuance, wherever it was
// seen, is counted exactly once.
func TestSIGKILLDuringLogCatchUp(t *testing.T) {
	kills := 15
	if testing.Short() {
		kills = 5
	}
	log := ctlogfake.New(t)
	log.MaxBatch = 25
	// Slow enough that a catch-up spans many commits and kills land inside it.
	log.SetDelay("get-entries", 15*time.Millisecond)
	crtsh := crtshfake.New()
	defer crtsh.Close()
	ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")

	issuances := 0
	grow := func(noise int) {
		for i := 0; i < noise; i++ {
			iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("n%d.example.net", log.Size())}})
			if err != nil {
				t.Fatal(err)
			}
			log.AddCert(iss.Final, ca.DER)
		}
		iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{fmt.Sprintf("h%d.example.com", log.Size())}, SCTs: 2})
		if err != nil {
			t.Fatal(err)
		}
		log.AddPrecert(iss.Precert, ca.DER, ca.DER)
		log.AddCert(iss.Final, ca.DER)
		if issuances%3 == 0 { // crt.sh saw it too
			crtsh.Add(iss.Precert)
			crtsh.Add(iss.Final)
		}
		issuances++
		log.Publish()
	}
	for i := 0; i < 10; i++ {
		grow(150)
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, fmt.Sprintf(`
watches: [{domain: example.com}]
sources:
  - {name: crtsh, type: crtsh, url: %q, interval: 300ms, request_interval: 0s}
  - name: testlog
    type: ctlog
    url: %q
    public_key: %s
    start: beginning
    interval: 200ms
    batch_size: 25
    workers: 3
`, crtsh.URL+"/", log.URL+"/", base64.StdEncoding.EncodeToString(log.PublicKeyDER())))
	args := []string{"--config.file=" + cfg, "--state.file=" + filepath.Join(dir, "ct.state")}

	for k := 0; k < kills; k++ {
		grow(40)
		before := log.Requests("get-entries")
		e := harness.StartExporter(t, args...)
		want := 2 + rand.IntN(30)
		e.Eventually("get-entries", func() bool { return log.Requests("get-entries")-before >= want })
		if err := e.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-e.Exited
	}

	grow(10)
	e := harness.StartExporter(t, args...)
	e.WaitReady()
	size := float64(log.Size())
	e.Eventually("caught up", func() bool {
		m := e.Scrape()
		// The position behind ct_log_entries_behind moves only after the
		// commit that counted the entries processed.
		return harness.Value(m, "ct_log_entries_processed_total", "log", "testlog") >= size &&
			harness.Value(m, "ct_new_certificates_total") >= float64(issuances) &&
			harness.Count(m, "ct_log_entries_behind", "log", "testlog") == 1 && harness.Value(m, "ct_log_entries_behind", "log", "testlog") == 0
	})
	m := e.Scrape()
	checks := map[string][2]float64{
		"ct_log_entries_processed_total": {harness.Value(m, "ct_log_entries_processed_total", "log", "testlog"), size},
		"ct_log_entries_behind":          {harness.Value(m, "ct_log_entries_behind", "log", "testlog"), 0},
		"ct_log_tree_size":               {harness.Value(m, "ct_log_tree_size", "log", "testlog"), size},
		"ct_new_certificates_total":      {harness.Value(m, "ct_new_certificates_total"), float64(issuances)},
		"ct_state_certificates":          {harness.Value(m, "ct_state_certificates"), float64(issuances)},
		"first-seen series":              {float64(harness.Count(m, "ct_certificate_first_seen_timestamp_seconds")), float64(issuances)},
		"SCT series":                     {float64(harness.Count(m, "ct_certificate_embedded_scts")), float64(issuances)},
		"verification failures":          {harness.Value(m, "ct_log_verification_failures_total"), 0},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %v, want %v", name, c[0], c[1])
		}
	}
	t.Logf("%d kills during catch-up of a %d-entry log: %d issuances (a third also on crt.sh), each counted once, every entry processed once",
		kills, log.Size(), issuances)
}
