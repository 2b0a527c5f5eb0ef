package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestWatchGroupsFilesAndLabels(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"ct.yml": `watches:
  - domains: [a.example, B.example]
    expected_issuers: [R11]
    labels: {team: web}
watch_files: ["teams/*.yml"]
sources: [{name: crtsh, type: crtsh}]
`,
		"teams/payments.yml": `- domain: pay.example
  labels: {team: payments, service: checkout}
- domains: [shop.example]
`,
	})
	cfg, err := Load(filepath.Join(dir, "ct.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.Policy.Watches() {
		got = append(got, w.Domain+"="+w.Labels["team"]+"/"+w.Labels["service"])
	}
	if want := []string{"a.example=web/", "b.example=web/", "pay.example=payments/checkout", "shop.example=/"}; !slices.Equal(got, want) {
		t.Errorf("watches %q, want %q", got, want)
	}
	if got := cfg.Policy.LabelNames(); !slices.Equal(got, []string{"service", "team"}) {
		t.Errorf("label names %q", got)
	}
	if w, _ := cfg.Policy.Get("b.example"); len(w.ExpectedIssuers) != 1 {
		t.Error("a group's policy is not every domain's")
	}
	if len(cfg.Watches) != 4 || !strings.HasSuffix(cfg.Watches[2].File, "payments.yml:1") {
		t.Errorf("Config.Watches %+v", cfg.Watches)
	}
}

func TestWatchFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"duplicate across files", map[string]string{
			"w/a.yml": "- domain: x.example\n",
			"w/b.yml": "- domains: [y.example, X.example]\n",
		}, []string{"w/b.yml:1: watch x.example is configured twice (also at ", "w/a.yml:1)"}},
		{"duplicate in the main file", map[string]string{
			"w/a.yml": "\n\n- domain: main.example\n",
		}, []string{"w/a.yml:3: watch main.example is configured twice (also at ", "ct.yml:2)"}},
		{"unknown key", map[string]string{
			"w/a.yml": "- domain: x.example\n  lables: {team: a}\n",
		}, []string{`w/a.yml:2: unknown key "lables" in watches entry "x.example"`}},
		{"not a list", map[string]string{
			"w/a.yml": "domain: x.example\n",
		}, []string{"w/a.yml:1: a watch file is a YAML list"}},
		{"bad label names", map[string]string{
			"w/a.yml": "- domain: x.example\n  labels:\n    __team: a\n    watch: b\n    1team: c\n    team-x: d\n",
		}, []string{
			`w/a.yml:3: watch x.example: label name "__team": names starting with __ are reserved`,
			`w/a.yml:4: watch x.example: label name "watch" is one the exporter's series`,
			`w/a.yml:5: watch x.example: label name "1team" is not a Prometheus label name`,
			`w/a.yml:6: watch x.example: label name "team-x" is not a Prometheus label name`,
		}},
		{"domain and domains", map[string]string{
			"w/a.yml": "- domain: x.example\n  domains: [y.example]\n",
		}, []string{"w/a.yml:2: watch entry at line 1 has both domain and domains"}},
		{"bad domain in a group", map[string]string{
			"w/a.yml": "- domains:\n  - x.example\n  - '*.y.example'\n",
		}, []string{`w/a.yml:3: watch domain "*.y.example": wildcards are not domains`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.files["ct.yml"] = "watches:\n  - domain: main.example\nwatch_files: [\"w/*.yml\"]\nsources: [{name: crtsh, type: crtsh}]\n"
			dir := writeFiles(t, tc.files)
			_, err := Load(filepath.Join(dir, "ct.yml"))
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestWatchFilesNamedFileMustExist(t *testing.T) {
	dir := writeFiles(t, map[string]string{"ct.yml": "watch_files: [missing.yml]\nsources: [{name: crtsh, type: crtsh}]\n"})
	_, err := Load(filepath.Join(dir, "ct.yml"))
	if err == nil || !strings.Contains(err.Error(), `ct.yml:1: watch_files "missing.yml": no such file`) {
		t.Fatalf("got %v", err)
	}
}
