package e2e

import (
	"debug/buildinfo"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

// A binary built with no -ldflags says what it runs: the version and
// revision Go recorded in it, the same in --version, ct_exporter_build_info
// and the status page.
func TestVersionFromBuildInfo(t *testing.T) {
	bin := harness.Binary(t)
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	version, revision := "devel", "unknown"
	if v := info.Main.Version; v != "" && v != "(devel)" {
		version = v
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if r, ok := settings["vcs.revision"]; ok {
		revision = r
		if settings["vcs.modified"] == "true" {
			revision += "-modified"
		}
	}
	// In a clone (CI's), Go stamps the checkout's commit; a git worktree,
	// whose .git is a file, gets no stamp from Go 1.26.
	root := testenv.RepoRoot()
	if fi, err := os.Stat(filepath.Join(root, ".git")); err == nil && fi.IsDir() {
		head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
		if err == nil && !strings.HasPrefix(revision, strings.TrimSpace(string(head))) {
			t.Errorf("the binary's revision is %q, the checkout's HEAD %s", revision, head)
		}
		if version == "devel" {
			t.Errorf("a build in a clone has no module version: %+v", info.Main)
		}
	}
	t.Logf("version %s, revision %s", version, revision)

	_, out := harness.Run(t, "--version")
	if want := "version " + version + " "; !strings.Contains(out, want) {
		t.Errorf("--version says\n%s\nwithout %q", out, want)
	}
	if want := "revision: " + revision + ")"; !strings.Contains(out, want) {
		t.Errorf("--version says\n%s\nwithout %q", out, want)
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.yml")
	testenv.WriteFile(t, cfg, "watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh, url: 'http://127.0.0.1:1/', interval: 1h}]\n")
	e := harness.StartExporter(t, "--config.file="+cfg, "--state.file="+filepath.Join(dir, "s.state"))
	e.WaitReady()
	if n := harness.Count(e.Scrape(), "ct_exporter_build_info", "version", version, "revision", revision); n != 1 {
		t.Errorf("ct_exporter_build_info{version=%q, revision=%q}: %d series, want 1", version, revision, n)
	}
	res, err := e.Client.Get(e.URL("/"))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"version=" + version + ",", "revision=" + revision + ")"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the status page does not say %q", want)
		}
	}
}
