package alerts

// The monitoring mixin, mixin.libsonnet, stays at the repository root, where
// a user vendoring the repository imports it (ct_exporter/mixin.libsonnet,
// README.md); it is these rules and the dashboards, so its tests are here.

import (
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

// mixinOutput evaluates mixin.libsonnet, with config merged into its
// _config, as a user's jsonnet would, and returns the rules and dashboards
// normalized to what encoding/json makes of them.
func mixinOutput(t *testing.T, jsonnet, config string) (alerts, dashboards any) {
	t.Helper()
	expr := `local m = (import 'mixin.libsonnet') + { _config+:: ` + config + ` };
{ alerts: m.prometheusAlerts, dashboards: m.grafanaDashboards }`
	// -J <repository root> as a vendored mixin is imported: the expression
	// is not a file, so imports resolve against the library path.
	out, err := exec.Command(jsonnet, "-J", testenv.RepoRoot(), "-e", expr).Output()
	if err != nil {
		t.Fatalf("jsonnet mixin.libsonnet: %v\n%s", err, exitStderr(err))
	}
	var m struct {
		Alerts     any `json:"alerts"`
		Dashboards any `json:"dashboards"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m.Alerts, m.Dashboards
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func readYAML(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return testenv.Normalized(t, v)
}

func readJSON(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// replaceStrings returns v with old replaced by new in every string.
func replaceStrings(v any, old, new string) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, old, new)
	case []any:
		r := make([]any, len(x))
		for i, e := range x {
			r[i] = replaceStrings(e, old, new)
		}
		return r
	case map[string]any:
		r := make(map[string]any, len(x))
		for k, e := range x {
			r[k] = replaceStrings(e, old, new)
		}
		return r
	}
	return v
}

// The mixin is the shipped rules and dashboards, not a second copy of them:
// with the default _config it yields exactly the committed files.
func TestMixinIsTheShippedRulesAndDashboards(t *testing.T) {
	jsonnet := testenv.Require(t, "jsonnet", "jsonnet")
	alerts, dashboards := mixinOutput(t, jsonnet, "{}")
	if want := readYAML(t, "ct_exporter.rules.yml"); !reflect.DeepEqual(alerts, want) {
		t.Error("mixin.libsonnet's prometheusAlerts differ from alerts/ct_exporter.rules.yml")
	}
	ds, ok := dashboards.(map[string]any)
	if !ok || len(ds) != 1 {
		t.Fatalf("grafanaDashboards: want one dashboard, got %T with %d", dashboards, len(ds))
	}
	if want := readJSON(t, "../dashboards/ct_exporter-overview.json"); !reflect.DeepEqual(ds["ct_exporter-overview.json"], want) {
		t.Error("mixin.libsonnet's grafanaDashboards['ct_exporter-overview.json'] differs from dashboards/ct_exporter-overview.json")
	}
}

// A user adapts the rules through _config+:: alone, and the change reaches
// every rule and annotation that selects ct_exporter's series.
func TestMixinConfigOverride(t *testing.T) {
	jsonnet := testenv.Require(t, "jsonnet", "jsonnet")
	const sel = `job="ct-exporter", namespace="monitoring"`
	alerts, dashboards := mixinOutput(t, jsonnet, `{ selector: '`+sel+`', sourceDownFor: '1h' }`)
	committed := readYAML(t, "ct_exporter.rules.yml")
	want := replaceStrings(committed, `job="ct_exporter"`, sel)
	// CTSourceDown's `for` and the delay its description states.
	want = replaceStrings(want, "30m", "1h")
	if reflect.DeepEqual(want, committed) {
		t.Fatal(`the committed rules hold neither job="ct_exporter" nor 30m: this test would prove nothing`)
	}
	if !reflect.DeepEqual(alerts, want) {
		b, _ := json.MarshalIndent(alerts, "", "  ")
		t.Errorf("with selector %s and sourceDownFor 1h the rules are not the committed ones with those substituted:\n%s", sel, b)
	}
	// The dashboards choose the job with a variable: _config leaves them be.
	if got := dashboards.(map[string]any)["ct_exporter-overview.json"]; !reflect.DeepEqual(got, readJSON(t, "../dashboards/ct_exporter-overview.json")) {
		t.Error("a _config override changed the dashboard")
	}
}
