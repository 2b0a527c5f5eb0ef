package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// With --state.url the exporter keeps its state in PostgreSQL: it finds
// certificates, exposes them, keeps them across a restart, and two
// replicas on one database count each issuance once and report the same.
// The password is never in the log, nor printed by --config.check.
func TestStateInPostgreSQL(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "ct")
	fake := crtshfake.New()
	defer fake.Close()
	g := &groundTruth{t: t, fake: fake, ca: testpki.NewIssuer(t, "R11", "Let's Encrypt"), pairs: map[string]map[string]bool{}}
	for i := 0; i < 8; i++ {
		g.issue()
	}
	dir := t.TempDir()
	cfg := g.writeConfig(dir)
	args := []string{"--config.file=" + cfg, "--state.url=" + url}

	noPassword := func(what, out string) {
		t.Helper()
		if strings.Contains(out, pgtest.Password) {
			t.Errorf("the password is in %s:\n%s", what, out)
		}
	}
	code, out := harness.Run(t, append(args, "--config.check")...)
	if code != 0 {
		t.Fatalf("--config.check = %d:\n%s", code, out)
	}
	noPassword("--config.check's output", out)
	if code, out := harness.Run(t, append(args, "--state.file="+filepath.Join(dir, "s"))...); code == 0 || !strings.Contains(out, "exclusive") {
		t.Errorf("--state.file with --state.url = %d:\n%s", code, out)
	}

	counted := func(e *harness.Exporter) func() bool {
		return func() bool {
			m := e.Scrape()
			return harness.Value(m, "ct_new_certificates_total") >= float64(g.matches()) &&
				harness.Count(m, "ct_certificate_embedded_scts") == g.matches()
		}
	}
	check := func(e *harness.Exporter) {
		t.Helper()
		m := e.Scrape()
		if got := harness.Value(m, "ct_new_certificates_total"); got != float64(g.matches()) {
			t.Fatalf("ct_new_certificates_total = %v, want %d", got, g.matches())
		}
		if got := harness.Value(m, "ct_state_certificates"); got != float64(len(g.pairs)) {
			t.Errorf("ct_state_certificates = %v, want %d", got, len(g.pairs))
		}
		checkSeries(t, m, g)
	}

	e := harness.StartExporter(t, args...)
	e.WaitReady()
	e.Eventually("every issuance counted", counted(e))
	check(e)

	// A second replica on the same database: both poll crt.sh, each
	// issuance is counted once, and both report the same.
	e2 := harness.StartExporter(t, args...)
	e2.WaitReady()
	for i := 0; i < 4; i++ {
		g.issue()
	}
	e.Eventually("every new issuance counted", counted(e))
	e2.Eventually("every new issuance counted on the second replica", counted(e2))
	check(e)
	check(e2)

	for _, x := range []*harness.Exporter{e, e2} {
		if err := x.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		<-x.Exited
		noPassword("the log", x.Log())
		if !strings.Contains(x.Log(), "postgres://"+pgtest.User+":xxxxx@") {
			t.Errorf("the log does not name the database (password redacted):\n%s", x.Log())
		}
	}
	// Restarted, the same: nothing lost, nothing counted again.
	e = harness.StartExporter(t, args...)
	e.WaitReady()
	check(e)
}
