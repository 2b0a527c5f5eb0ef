// Package tools finds the external programs some tests run: Prometheus's
// promtool, Alertmanager, jsonnet. Locally a test without them is skipped
// with a message; CI sets CT_EXPORTER_REQUIRE_TOOLS=1, so that there a
// missing program fails the test instead of silently testing less.
package tools

import (
	"os"
	"os/exec"
	"testing"
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
