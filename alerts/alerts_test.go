// Package alerts holds the alert rules; its tests run promtool on them and
// check that the monitoring mixin (../mixin.libsonnet) yields them.
package alerts

import (
	"os"
	"os/exec"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// The rules file is rendered from the jsonnet (where the selector is set
// once); it must be what the jsonnet renders today.
func TestRulesAreRenderedFromJsonnet(t *testing.T) {
	jsonnet := testenv.Require(t, "jsonnet", "jsonnet")
	want, err := os.ReadFile("ct_exporter.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, jsonnet, "-S", "ct_exporter.rules.jsonnet"); got != string(want) {
		t.Fatal("ct_exporter.rules.yml is not what alerts.libsonnet renders: run jsonnet -S alerts/ct_exporter.rules.jsonnet > alerts/ct_exporter.rules.yml")
	}
}

func TestRulesWithPromtool(t *testing.T) {
	promtool := testenv.Require(t, "promtool", "prometheus")
	run(t, promtool, "check", "rules", "ct_exporter.rules.yml")
	out := run(t, promtool, "test", "rules", "ct_exporter.rules.test.yml")
	t.Log(out)
}
