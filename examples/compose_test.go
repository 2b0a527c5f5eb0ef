package examples

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

const composeDir = "docker-compose"

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	User        string            `yaml:"user"`
	ReadOnly    bool              `yaml:"read_only"`
	CapDrop     []string          `yaml:"cap_drop"`
	SecurityOpt []string          `yaml:"security_opt"`
	Command     []string          `yaml:"command"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Environment map[string]string `yaml:"environment"`
	EnvFile     []string          `yaml:"env_file"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

// mount is one short-syntax volume: a bind mount of a path in the
// repository, or a named volume.
type mount struct {
	Source, Target string
	Bind, ReadOnly bool
}

func (s composeService) mounts(t *testing.T) []mount {
	t.Helper()
	var ms []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 {
			t.Fatalf("volume %q: not source:target[:mode]", v)
		}
		m := mount{Source: parts[0], Target: parts[1], ReadOnly: len(parts) == 3 && parts[2] == "ro"}
		m.Bind = strings.HasPrefix(m.Source, ".") || strings.HasPrefix(m.Source, "/")
		ms = append(ms, m)
	}
	return ms
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	readYAML(t, filepath.Join(composeDir, "compose.yml"), &c)
	for _, name := range []string{"ct_exporter", "prometheus", "alertmanager", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("compose.yml: no service %s", name)
		}
	}
	return c
}

// containerFS lays out, in a temporary directory, the files a service's
// bind mounts put in its container, so that the real tools can check the
// configurations at the paths the container sees them.
func containerFS(t *testing.T, s composeService) string {
	t.Helper()
	root := t.TempDir()
	for _, m := range s.mounts(t) {
		if !m.Bind {
			continue
		}
		src := filepath.Join(composeDir, m.Source)
		dst := filepath.Join(root, m.Target)
		fi, err := os.Stat(src)
		if err != nil {
			t.Fatalf("compose.yml mounts %s, which does not exist: %v", m.Source, err)
		}
		if fi.IsDir() {
			if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// commandFlag returns the value of --name=value in a service's command.
func commandFlag(s composeService, name string) string {
	for _, a := range s.Command {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// Every file compose.yml mounts is in the repository, every named volume is
// declared, images are pinned, and ct_exporter runs as the Dockerfile
// builds it: non-root, read-only, its state on a volume.
func TestCompose(t *testing.T) {
	c := readCompose(t)
	df := readDockerfile(t)
	for name, s := range c.Services {
		if s.Build == nil && (!strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest")) {
			t.Errorf("service %s: image %q is not pinned to a version", name, s.Image)
		}
		for _, m := range s.mounts(t) {
			if m.Bind {
				if _, err := os.Stat(filepath.Join(composeDir, m.Source)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, m.Source, err)
				}
				if !m.ReadOnly {
					t.Errorf("service %s: bind mount %s is writable: the repository's files are configuration", name, m.Source)
				}
			} else if _, ok := c.Volumes[m.Source]; !ok {
				t.Errorf("service %s: volume %s is not declared", name, m.Source)
			}
		}
	}

	exporters := 0
	for name, ct := range c.Services {
		if ct.Build == nil && ct.Image != "ct_exporter:local" {
			continue
		}
		exporters++
		checkComposeExporter(t, name, ct, df)
	}
	if exporters != 2 {
		t.Errorf("%d ct_exporter services, want the two replicas", exporters)
	}
	pg, ok := c.Services["postgres"]
	if !ok {
		t.Fatal("compose.yml: no postgres service")
	}
	if !slices.Equal(pg.EnvFile, []string{"postgres.env"}) || pg.Environment["POSTGRES_PASSWORD"] != "" {
		t.Errorf("postgres: the password is not from postgres.env: env_file %v", pg.EnvFile)
	}
	env, err := os.ReadFile(filepath.Join(composeDir, "postgres.env"))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	for _, line := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			vals[k] = v
		}
	}
	if vals["PGPASSWORD"] == "" || vals["PGPASSWORD"] != vals["POSTGRES_PASSWORD"] {
		t.Errorf("postgres.env: PGPASSWORD and POSTGRES_PASSWORD are not one password: %v", vals)
	}
}

// checkComposeExporter checks a ct_exporter replica of compose.yml.
func checkComposeExporter(t *testing.T, name string, ct composeService, df dockerfile) {
	if ct.Build == nil || ct.Build.Dockerfile != "Dockerfile" || filepath.Clean(filepath.Join(composeDir, ct.Build.Context)) != ".." {
		t.Errorf("%s is not built from the repository's Dockerfile: %+v", name, ct.Build)
	}
	if !ct.ReadOnly {
		t.Errorf("%s: read_only is not true", name)
	}
	if uid(ct.User) != uid(df.User) || uid(ct.User) == "0" {
		t.Errorf("%s: user %q, the Dockerfile's USER is %s", name, ct.User, df.User)
	}
	if !slices.Equal(ct.CapDrop, []string{"ALL"}) || !slices.Contains(ct.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("%s: cap_drop %v, security_opt %v: want [ALL] and no-new-privileges", name, ct.CapDrop, ct.SecurityOpt)
	}
	flags := parseFlags(t, "compose.yml "+name+" command", ct.Command)
	if u := flags["state.url"]; u != "" {
		// The state in PostgreSQL: the password is not in the command.
		if !strings.HasPrefix(u, "postgres://") || strings.Contains(u, "password") || strings.Contains(strings.SplitN(strings.TrimPrefix(u, "postgres://"), "@", 2)[0], ":") {
			t.Errorf("%s: --state.url=%s: want a postgres:// URL without the password", name, u)
		}
		if !slices.Contains(ct.EnvFile, "postgres.env") {
			t.Errorf("%s: PGPASSWORD is not from postgres.env: env_file %v", name, ct.EnvFile)
		}
	} else {
		var stateVolume bool
		for _, m := range ct.mounts(t) {
			if m.Target == df.Volume && !m.Bind {
				stateVolume = true
			}
		}
		if !stateVolume || path.Dir(flags["state.file"]) != df.Volume {
			t.Errorf("%s: --state.file=%s is not on a named volume at the Dockerfile's VOLUME %s", name, flags["state.file"], df.Volume)
		}
	}
	if len(ct.Ports) != 1 || !strings.HasSuffix(ct.Ports[0], ":"+df.Expose) {
		t.Errorf("%s: ports %v, the Dockerfile exposes %s", name, ct.Ports, df.Expose)
	}
	// The mounted configuration validates, and the command's flags parse.
	root := containerFS(t, ct)
	acceptsFlags(t, "compose.yml "+name+" command", ct.Command, filepath.Join(root, flags["config.file"]))
}

// promtool accepts Prometheus's configuration where the container sees it,
// which includes loading every shipped rule through rule_files; it scrapes
// ct_exporter under the job the rules select and sends to Alertmanager.
func TestComposePrometheus(t *testing.T) {
	promtool := testenv.Require(t, "promtool", "prometheus")
	c := readCompose(t)
	df := readDockerfile(t)
	p := c.Services["prometheus"]
	root := containerFS(t, p)
	config := filepath.Join(root, commandFlag(p, "config.file"))
	out, err := exec.Command(promtool, "check", "config", config).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	rules := 0
	for _, g := range shippedRuleGroups(t).([]any) {
		rules += len(g.(map[string]any)["rules"].([]any))
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", rules); !strings.Contains(string(out), want) {
		t.Errorf("promtool check config did not load the %d shipped rules:\n%s", rules, out)
	}

	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
		Alerting struct {
			Alertmanagers []struct {
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
			} `yaml:"alertmanagers"`
		} `yaml:"alerting"`
	}
	readYAML(t, config, &cfg)
	rulesText, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var scraped bool
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, "ct_exporter:"+df.Expose) && slices.Contains(st.Targets, "ct_exporter_b:"+df.Expose) {
				scraped = true
				if !strings.Contains(string(rulesText), `job=\"`+sc.JobName+`\"`) {
					t.Errorf("ct_exporter is scraped as job %q, which the shipped rules do not select", sc.JobName)
				}
			}
		}
	}
	if !scraped {
		t.Errorf("no scrape config targets both replicas, ct_exporter:%s and ct_exporter_b:%s", df.Expose, df.Expose)
	}
	if len(cfg.Alerting.Alertmanagers) != 1 || len(cfg.Alerting.Alertmanagers[0].StaticConfigs) != 1 ||
		!slices.Equal(cfg.Alerting.Alertmanagers[0].StaticConfigs[0].Targets, []string{"alertmanager:9093"}) {
		t.Errorf("alerts are not sent to the alertmanager service: %+v", cfg.Alerting)
	}
}

var secretPath = regexp.MustCompile(`/etc/alertmanager/secrets/([\w.-]+)`)

// amtool accepts the shipped example routing where the container sees it,
// template included; every secret it reads is on the secrets mount and
// documented there.
func TestComposeAlertmanager(t *testing.T) {
	amtool := testenv.Require(t, "amtool", "prometheus-alertmanager")
	c := readCompose(t)
	am := c.Services["alertmanager"]
	root := containerFS(t, am)
	config := filepath.Join(root, commandFlag(am, "config.file"))
	out := run(t, amtool, "check-config", config)
	if strings.Count(out, "SUCCESS") != 2 {
		t.Fatalf("amtool check-config:\n%s", out)
	}
	// amtool accepts a template glob that matches nothing; Alertmanager
	// would then fail on every notification that uses ct.* templates.
	var cfg struct {
		Templates []string `yaml:"templates"`
	}
	readYAML(t, config, &cfg)
	if len(cfg.Templates) == 0 {
		t.Error("the Alertmanager configuration loads no template")
	}
	for _, tmpl := range cfg.Templates {
		if !filepath.IsAbs(tmpl) {
			tmpl = filepath.Join(filepath.Dir(config), tmpl)
		} else {
			tmpl = filepath.Join(root, tmpl)
		}
		if files, err := filepath.Glob(tmpl); err != nil || len(files) == 0 {
			t.Errorf("template %s matches no file in the container (%v)", strings.TrimPrefix(tmpl, root), err)
		}
	}
	text, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	var secretsMount mount
	for _, m := range am.mounts(t) {
		if m.Target == "/etc/alertmanager/secrets" {
			secretsMount = m
		}
	}
	if secretsMount.Source == "" {
		t.Fatal("compose.yml does not mount /etc/alertmanager/secrets")
	}
	readme, err := os.ReadFile(filepath.Join(composeDir, secretsMount.Source, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := secretPath.FindAllStringSubmatch(string(text), -1)
	if len(secrets) == 0 {
		t.Fatal("the Alertmanager configuration reads no secret file: this test would prove nothing")
	}
	for _, m := range secrets {
		if !strings.Contains(string(readme), "`"+m[1]+"`") {
			t.Errorf("%s/README.md does not document %s", secretsMount.Source, m[1])
		}
	}
}

// Grafana's provisioning parses, its data source is the compose
// Prometheus, and its dashboard provider's path holds the shipped
// dashboard, as the container sees it.
func TestComposeGrafana(t *testing.T) {
	c := readCompose(t)
	g := c.Services["grafana"]
	root := containerFS(t, g)
	prov := filepath.Join(root, "etc/grafana/provisioning")

	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Type      string `yaml:"type"`
			URL       string `yaml:"url"`
			IsDefault bool   `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov, "datasources/prometheus.yml"), &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" ||
		ds.Datasources[0].URL != "http://prometheus:9090" || !ds.Datasources[0].IsDefault {
		t.Errorf("data sources %+v: want the default, of type prometheus, at http://prometheus:9090", ds)
	}

	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov, "dashboards/ct_exporter.yml"), &dp)
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
		t.Fatalf("dashboard providers %+v: want one of type file", dp)
	}
	dir := filepath.Join(root, dp.Providers[0].Options.Path)
	shipped, err := filepath.Glob("../dashboards/*.json")
	if err != nil || len(shipped) == 0 {
		t.Fatalf("no shipped dashboards: %v", err)
	}
	for _, f := range shipped {
		data, err := os.ReadFile(filepath.Join(dir, filepath.Base(f)))
		if err != nil {
			t.Errorf("the dashboard provider's path %s lacks %s: %v", dp.Providers[0].Options.Path, filepath.Base(f), err)
			continue
		}
		var d struct {
			UID string `json:"uid"`
		}
		if err := json.Unmarshal(data, &d); err != nil || d.UID == "" {
			t.Errorf("%s: not a dashboard with a uid: %v", f, err)
		}
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		if _, err := os.Stat(filepath.Join(root, home)); err != nil {
			t.Errorf("the home dashboard %s is not in the container: %v", home, err)
		}
	}
}
