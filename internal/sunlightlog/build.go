package sunlightlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// The programs built from the tools module, by import path. They are built in
// one go build invocation so that they share compiled packages.
var programs = map[string]string{
	"sunlight":               "filippo.io/sunlight/cmd/sunlight",
	"skylight":               "filippo.io/sunlight/cmd/skylight",
	"sunlight-checkpointsdb": "github.com/ct-exporter/ct_exporter/tools/sunlight-checkpointsdb",
}

// buildTimeout bounds one go build of the tools (a cold one takes about two
// minutes on two cores).
const buildTimeout = 8 * time.Minute

var (
	buildMu   sync.Mutex
	builtDir  string
	buildErr  error
	buildDone bool
)

// binaries returns the directory holding the programs, building them once per
// machine (cached in the user cache directory, keyed by the tools module's
// contents) and once per process.
func binaries() (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if !buildDone {
		builtDir, buildErr = buildBinaries()
		buildDone = true
	}
	return builtDir, buildErr
}

func buildBinaries() (string, error) {
	toolsDir, err := findToolsDir()
	if err != nil {
		return "", err
	}
	key, err := toolsKey(toolsDir)
	if err != nil {
		return "", err
	}
	cacheRoot, err := os.UserCacheDir()
	if err != nil || cacheRoot == "" {
		cacheRoot = os.TempDir()
	}
	final := filepath.Join(cacheRoot, "ct_exporter-sunlight-"+key)
	if complete(final) {
		return final, nil
	}
	if err := os.MkdirAll(cacheRoot, 0o755); err != nil {
		return "", fmt.Errorf("sunlightlog: cache directory: %w", err)
	}

	// Serialize builds across processes (go test runs packages in parallel),
	// so that two cold builds don't compete for the CPU. The lock is advisory
	// and best effort: the build into a temporary directory followed by a
	// rename is what keeps a half-built directory from ever being used.
	unlock := lockFile(final + ".lock")
	defer unlock()
	if complete(final) {
		return final, nil
	}

	tmp, err := os.MkdirTemp(cacheRoot, "ct_exporter-sunlight-build-")
	if err != nil {
		return "", fmt.Errorf("sunlightlog: %w", err)
	}
	defer os.RemoveAll(tmp)

	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("sunlightlog: the go command is needed to build sunlight: %w", err)
	}
	names := make([]string, 0, len(programs))
	for name := range programs {
		names = append(names, name)
	}
	sort.Strings(names)
	// -buildvcs=false: the helper in the tools module would otherwise be
	// stamped with the repository's git state, which fails where git is
	// missing or distrusts the checkout's owner.
	args := []string{"build", "-C", toolsDir, "-buildvcs=false", "-o", tmp + string(filepath.Separator)}
	for _, name := range names {
		args = append(args, programs[name])
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, args...)
	// Sunlight links SQLite through cgo; GOWORK=off keeps any go.work file
	// from pulling the tools module into another build.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("sunlightlog: %s %s: %v (after %v)\n%s",
			goTool, strings.Join(args, " "), err, time.Since(start).Round(time.Second), out.String())
	}
	if !complete(tmp) {
		return "", fmt.Errorf("sunlightlog: go build left no programs in %s\n%s", tmp, out.String())
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another process may have won the race (without the lock, or on a
		// system where locking isn't supported); its result is as good.
		if complete(final) {
			return final, nil
		}
		return "", fmt.Errorf("sunlightlog: %w", err)
	}
	return final, nil
}

// complete reports whether dir holds every program.
func complete(dir string) bool {
	for name := range programs {
		fi, err := os.Stat(filepath.Join(dir, name+exeSuffix()))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

func exeSuffix() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

// findToolsDir finds <repo>/tools, the module that pins Sunlight, from this
// source file's location, or else from the go command's idea of the main
// module (for binaries built with -trimpath).
func findToolsDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Join(filepath.Dir(file), "..", "..", "tools")
		if isToolsDir(dir) {
			return filepath.Clean(dir), nil
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			dir := filepath.Join(filepath.Dir(gomod), "tools")
			if isToolsDir(dir) {
				return dir, nil
			}
		}
	}
	return "", errors.New("sunlightlog: cannot find the repository's tools module (tools/go.mod)")
}

func isToolsDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "go.mod"))
	return err == nil
}

// toolsKey hashes what decides the build's result: the tools module's files
// (go.mod, go.sum and Go sources), the Go version and the target platform.
// Nested modules (tools/corpus) are no part of the build, so that changing
// them does not rebuild Sunlight.
func toolsKey(toolsDir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	err := filepath.WalkDir(toolsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != toolsDir {
				return fs.SkipDir
			}
			return nil
		}
		name := d.Name()
		if name != "go.mod" && name != "go.sum" && !strings.HasSuffix(name, ".go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(toolsDir, path)
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("sunlightlog: hashing %s: %w", toolsDir, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
