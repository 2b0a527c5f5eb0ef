// Package testenv is what tests in several packages need from the machine
// and the checkout: the programs some run (Prometheus's promtool,
// Alertmanager, jsonnet, Chromium), a free loopback address, polling with a
// deadline, the repository's root; and two helpers for the files they write
// and compare (WriteFile, Normalized). Locally a test without a program is
// skipped with a message; CI sets CT_EXPORTER_REQUIRE_TOOLS=1, so that
// there a missing program fails the test instead of silently testing less.
package testenv

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Require returns the path of a program, or skips (fails in CI) the test.
func Require(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CT_EXPORTER_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s is required (CT_EXPORTER_REQUIRE_TOOLS=1): apt-get install %s", name, pkg)
	}
	t.Skipf("%s not installed (apt-get install %s): skipping", name, pkg)
	return ""
}

// Unavailable skips the test for want of something it needs that a
// machine may lack (a download without a network), or fails it in CI, where
// everything must be there.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CT_EXPORTER_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s (required: CT_EXPORTER_REQUIRE_TOOLS=1)", msg)
	}
	t.Skipf("%s: skipping", msg)
}

// FreeAddr returns a loopback address no one listens on now, for a program
// the test starts (which needs the address on its command line).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Eventually polls cond until it holds, and fails the test after timeout:
// tests wait for a state, never for a time.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RepoRoot is the repository's root directory (of this source file, which
// tests run from their checkout).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// WriteFile writes content to path, or fails the test.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Normalized is v as encoding/json reads it back (YAML's ints and maps
// become JSON's float64 and map[string]any), so that values decoded from
// YAML and from JSON compare with reflect.DeepEqual.
func Normalized(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var n any
	if err := json.Unmarshal(b, &n); err != nil {
		t.Fatal(err)
	}
	return n
}
