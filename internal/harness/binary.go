package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

// builds are the binaries built in this test process, by race detector
// on or off; each is built once, when a test first needs it.
var builds struct {
	sync.Mutex
	main  bool // Main runs the tests: it removes dir at the end
	dir   string
	paths map[bool]string
	errs  map[bool]error
}

// Main runs a package's tests and removes the binaries built for them. A
// package whose tests call Binary calls it from its TestMain:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
func Main(m *testing.M) {
	builds.Lock()
	builds.main = true
	builds.Unlock()
	code := m.Run()
	builds.Lock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.Unlock()
	os.Exit(code)
}

// Binary returns the path of the ct_exporter command, built once per test
// process, with the race detector when the tests run with it: a race in the
// process a test runs fails the test too.
func Binary(t testing.TB) string {
	t.Helper()
	return binary(t, raceEnabled)
}

// BinaryWithoutRace returns the ct_exporter command built without the race
// detector, for tests that measure how fast it is or only parse its flags.
func BinaryWithoutRace(t testing.TB) string {
	t.Helper()
	return binary(t, false)
}

func binary(t testing.TB, race bool) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if path, ok := builds.paths[race]; ok {
		return path
	}
	if err, ok := builds.errs[race]; ok {
		t.Fatal(err)
	}
	if !builds.main {
		t.Fatal("harness: the package's TestMain must call harness.Main, which removes the binaries it built")
	}
	path, err := build(race)
	if err != nil {
		if builds.errs == nil {
			builds.errs = map[bool]error{}
		}
		builds.errs[race] = err
		t.Fatal(err)
	}
	if builds.paths == nil {
		builds.paths = map[bool]string{}
	}
	builds.paths[race] = path
	return path
}

// build builds the command into the process's build directory; the caller
// holds builds' lock.
func build(race bool) (string, error) {
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "ct_exporter-test")
		if err != nil {
			return "", err
		}
		builds.dir = dir
	}
	path := filepath.Join(builds.dir, "ct_exporter")
	if race {
		path += "-race"
	}
	// -buildvcs=auto stamps the VCS revision as a user's plain go build in
	// a checkout does, whatever GOFLAGS says on the machine.
	args := []string{"build", "-buildvcs=auto", "-o", path}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building ct_exporter (go %s): %v\n%s", strings.Join(args, " "), err, out)
	}
	return path, nil
}
