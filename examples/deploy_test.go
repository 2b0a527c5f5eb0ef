package examples

// Helpers shared by the tests of the deployment examples (kubernetes/,
// systemd/, docker-compose/): the real binary's flags, the Dockerfile's
// promises, YAML documents.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) { harness.Main(m) }

// exporterBinary is ct_exporter for the tests of this package that need it
// (without -race: they only parse flags and check configurations).
func exporterBinary(t *testing.T) string {
	t.Helper()
	return harness.BinaryWithoutRace(t)
}

// A flag's line in kingpin's help: "  -h, --[no-]help" or "      --state.file=..."
// (wrapped descriptions are indented further).
var flagInHelp = regexp.MustCompile(`(?m)^  (?:-\w, |    )--(?:\[no-\])?([a-z][a-z0-9.-]*)`)

// exporterFlags returns the long flags ct_exporter --help lists.
func exporterFlags(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(exporterBinary(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("ct_exporter --help: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range flagInHelp.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	// The DESIGN's pinned flags: if --help stops listing them, the parsing
	// above broke and every check built on it would pass vacuously.
	for _, f := range []string{"config.file", "config.check", "state.file", "web.listen-address", "web.config.file", "log.level"} {
		if !flags[f] {
			t.Fatalf("ct_exporter --help does not list --%s (parsed %v):\n%s", f, flags, out)
		}
	}
	return flags
}

// parseFlags reads --name=value arguments, failing on any that is not a
// flag of the binary (kingpin would refuse to start).
func parseFlags(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	known := exporterFlags(t)
	got := map[string]string{}
	for _, a := range args {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !known[name] {
			t.Errorf("%s: %q is not a flag of ct_exporter", where, a)
			continue
		}
		got[name] = value
	}
	return got
}

// acceptsFlags runs the real binary with args, its --config.file pointed at
// config, and --config.check: kingpin parses every flag and value, and the
// configuration is validated, without starting anything.
func acceptsFlags(t *testing.T, where string, args []string, config string) {
	t.Helper()
	var run []string
	for _, a := range args {
		if !strings.HasPrefix(a, "--config.file=") {
			run = append(run, a)
		}
	}
	run = append(run, "--config.file="+config, "--config.check")
	out, err := exec.Command(exporterBinary(t), run...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: ct_exporter %s: %v\n%s", where, strings.Join(run, " "), err, out)
	}
}

// dockerfile is what the repository's Dockerfile promises; the examples run
// its image and must agree with it.
type dockerfile struct {
	User       string   // USER
	Expose     string   // EXPOSE
	Volume     string   // the one VOLUME
	Entrypoint []string // ENTRYPOINT (exec form)
	Cmd        []string // CMD (exec form)
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	execForm := func(line, rest string) []string {
		var v []string
		if err := json.Unmarshal([]byte(rest), &v); err != nil {
			t.Fatalf("Dockerfile: %s is not in exec form: %v", line, err)
		}
		return v
	}
	for _, line := range strings.Split(string(data), "\n") {
		instr, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch instr {
		case "USER":
			d.User = rest
		case "EXPOSE":
			d.Expose = rest
		case "VOLUME":
			v := execForm(line, rest)
			if len(v) != 1 {
				t.Fatalf("Dockerfile: want one VOLUME, got %v", v)
			}
			d.Volume = v[0]
		case "ENTRYPOINT":
			d.Entrypoint = execForm(line, rest)
		case "CMD":
			d.Cmd = execForm(line, rest)
		}
	}
	if d.User == "" || d.Expose == "" || d.Volume == "" || len(d.Entrypoint) == 0 || len(d.Cmd) == 0 {
		t.Fatalf("Dockerfile: USER, EXPOSE, VOLUME, ENTRYPOINT or CMD not found: %+v", d)
	}
	return d
}

// uid is the numeric user of a USER or user: value ("65534:65534").
func uid(user string) string {
	u, _, _ := strings.Cut(user, ":")
	return u
}

// yamlDocuments decodes every document of a YAML file.
func yamlDocuments(t *testing.T, path string) []*yaml.Node {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, &n)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// readYAML decodes a one-document YAML file into v.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	docs := yamlDocuments(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", path, len(docs))
	}
	if err := docs[0].Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// shippedRuleGroups is alerts/ct_exporter.rules.yml's groups, normalized.
func shippedRuleGroups(t *testing.T) any {
	t.Helper()
	var f struct {
		Groups []any `yaml:"groups"`
	}
	readYAML(t, rulesFile, &f)
	if len(f.Groups) == 0 {
		t.Fatalf("%s: no groups", rulesFile)
	}
	return testenv.Normalized(t, f.Groups)
}
