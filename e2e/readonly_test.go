package e2e

import (
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	"github.com/ct-exporter/ct_exporter/state"
)

// nobody is the user the image and the Kubernetes example run as.
const nobody = 65534

// worldWritable are the places any user can create files in on a usual
// Linux system; the exporter, run as nobody, must create nothing there.
var worldWritable = []string{"/tmp", "/var/tmp", "/dev/shm", "/run/lock"}

// The promise behind `docker run --read-only` and readOnlyRootFilesystem:
// the exporter writes nothing but its state file. Run as nobody, with its
// binary, configuration, working directory, HOME and TMPDIR where nobody
// cannot write and the state directory the only one it owns, it polls crt.sh,
// records an issuance, serves it and shuts down cleanly; afterwards nothing
// has changed outside the state directory, and the state file holds the
// issuance.
func TestWritesOnlyTheStateDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("run as root: the test starts the exporter as user 65534 (nobody), so that the kernel, not the exporter, decides where it may write")
	}
	crtsh := crtshfake.New()
	defer crtsh.Close()
	ca := testpki.NewIssuer(t, "R11", "Let's Encrypt")
	iss, err := ca.Issue(testpki.Leaf{DNSNames: []string{"www.example.com"}, SCTs: 2})
	if err != nil {
		t.Fatal(err)
	}
	crtsh.Add(iss.Precert)
	crtsh.Add(iss.Final)
	parsed, err := cert.Parse(iss.Final)
	if err != nil {
		t.Fatal(err)
	}
	tbs := hex.EncodeToString(parsed.TBSSHA256[:])

	// Not t.TempDir: its directories are 0700 root, which nobody cannot
	// traverse.
	base, err := os.MkdirTemp("", "ct_exporter-readonly")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	for dir := base; ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if dir != base && fi.Mode().Perm()&0o001 == 0 {
			t.Fatalf("%s is not searchable by other users, so nobody cannot reach %s: point TMPDIR elsewhere (e.g. /tmp)", dir, base)
		}
		if dir == filepath.Dir(dir) {
			break
		}
	}
	dir := func(name string, mode os.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, etc, work, tmp := dir("bin", 0o755), dir("etc", 0o755), dir("work", 0o755), dir("tmp", 0o755)
	stateDir := dir("state", 0o700)
	if err := os.Chown(stateDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a 0700 directory of root's.
	program := filepath.Join(bin, "ct_exporter")
	copyFile(t, harness.Binary(t), program, 0o755)
	config := filepath.Join(etc, "ct_exporter.yml")
	testenv.WriteFile(t, config, fmt.Sprintf("watches: [{domain: example.com}]\nsources: [{name: crtsh, type: crtsh, url: %q, interval: 200ms, request_interval: 0s}]\n", crtsh.URL+"/"))
	stateFile := filepath.Join(stateDir, "ct_exporter.state")

	asNobody := func(cmd *exec.Cmd) {
		cmd.Dir = work
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + work, "TMPDIR=" + tmp}
		// Groups empty: root's supplementary groups are dropped too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	}

	// Taken before the control below, which must write nothing either.
	before := tree(t, base, stateDir)
	strayBefore := ownedBy(t, nobody, worldWritable)

	// The control: as nobody, a state file anywhere but the state directory
	// cannot be created. Were the user switch not effective, the rest would
	// prove nothing.
	control := exec.Command(program, "--config.file="+config, "--state.file="+filepath.Join(work, "ct_exporter.state"), "--web.listen-address=127.0.0.1:0")
	asNobody(control)
	out, err := control.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Fatalf("the exporter, as nobody, did not fail to create a state file in %s (%v):\n%s", work, err, out)
	}

	start := time.Now()

	e := harness.StartExporterWith(t, program, asNobody, "--config.file="+config, "--state.file="+stateFile)
	e.WaitReady()
	var m map[string]*dto.MetricFamily
	e.Eventually("the issuance in /metrics", func() bool {
		m = e.Scrape()
		return harness.Value(m, "ct_new_certificates_total", "watch", "example.com") == 1 &&
			harness.Count(m, "ct_certificate_first_seen_timestamp_seconds", "watch", "example.com", "tbs_sha256", tbs) == 1
	})
	// The issuance is counted in the middle of its poll, ct_source_up set
	// when the poll ends (with its duration): wait for the poll that
	// recorded it to end.
	recording := pollCount(m, "crtsh")
	e.Eventually("the end of the poll that recorded the issuance", func() bool {
		m = e.Scrape()
		return pollCount(m, "crtsh") > recording
	})
	if harness.Value(m, "ct_state_write_errors_total") != 0 || harness.Count(m, "ct_source_up", "source", "crtsh") != 1 || harness.Value(m, "ct_source_up", "source", "crtsh") != 1 {
		t.Fatalf("write errors %v, crtsh up %v", harness.Value(m, "ct_state_write_errors_total"), harness.Value(m, "ct_source_up", "source", "crtsh"))
	}
	if err := e.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the exporter did not exit within 30s of SIGTERM")
	}
	if code := e.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("the exporter exited with %d after SIGTERM", code)
	}
	if strings.Contains(e.Log(), "permission denied") || strings.Contains(e.Log(), "read-only file system") {
		t.Errorf("the exporter tried to write somewhere it may not:\n%s", e.Log())
	}

	// Nothing outside the state directory changed…
	if after := tree(t, base, stateDir); !maps.Equal(before, after) {
		t.Errorf("files outside the state directory changed:\nbefore %v\nafter  %v", before, after)
	}
	for _, p := range ownedBy(t, nobody, worldWritable) {
		if !slices.Contains(strayBefore, p) {
			t.Errorf("the exporter created %s", p)
		}
	}
	// …and in it, only the state file, nobody's.
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
		fi, err := os.Stat(filepath.Join(stateDir, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody || fi.ModTime().Before(start.Add(-time.Second)) {
			t.Errorf("%s: owner %d, modified %v", en.Name(), st.Uid, fi.ModTime())
		}
	}
	if !slices.Equal(names, []string{"ct_exporter.state"}) {
		t.Errorf("the state directory holds %v, want only ct_exporter.state", names)
	}

	store, err := state.Open(stateFile, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if n := store.Snapshot().Certificates; n != 1 {
		t.Errorf("the state file holds %d issuances, want 1", n)
	}
	err = store.View(func(tx *state.Tx) error {
		is, err := tx.Issuance(parsed.TBSSHA256)
		if err == nil && is == nil {
			err = fmt.Errorf("issuance %s not in the state file", tbs)
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// tree describes every file and directory under root except skip: path →
// mode, owner, size and modification time.
func tree(t *testing.T, root, skip string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		files[p] = fmt.Sprintf("%v uid=%d size=%d mtime=%d", fi.Mode(), st.Uid, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// ownedBy lists the entries of dirs owned by uid. Whatever a process
// running as uid creates there is, or lies under, such an entry.
func ownedBy(t *testing.T, uid uint32, dirs []string) []string {
	t.Helper()
	var owned []string
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue // not on this system
		}
		for _, en := range entries {
			fi, err := en.Info()
			if err != nil {
				continue // removed meanwhile
			}
			if fi.Sys().(*syscall.Stat_t).Uid == uid {
				owned = append(owned, filepath.Join(d, en.Name()))
			}
		}
	}
	return owned
}
