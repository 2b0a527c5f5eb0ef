package e2e

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/harness"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

// No Docker engine runs in CI; this checks what the image promises: a static
// binary, a non-root user, the state on a volume, the port.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(?m)^FROM golang:\S+ AS build$`,
		`CGO_ENABLED=0 go build`,
		`(?m)^FROM scratch$`,
		`(?m)^USER 65534:65534$`,
		`(?m)^EXPOSE 9812$`,
		`(?m)^VOLUME \["/var/lib/ct_exporter"\]$`,
		`--chown=65534:65534 /out/state /var/lib/ct_exporter`,
		`(?m)^ENTRYPOINT \["/bin/ct_exporter"\]$`,
		`--state.file=/var/lib/ct_exporter/`,
	} {
		if !regexp.MustCompile(want).Match(data) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}

	bin := filepath.Join(t.TempDir(), "ct_exporter")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary needs a dynamic loader: it would not run FROM scratch")
		}
	}
}

// The image's default command works: its flags are the binary's, the
// configuration it names is the one the build copies in (and validates),
// and the state file is on the VOLUME.
func TestDockerfileCommand(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := execForm(t, data, "CMD")
	volume := execForm(t, data, "VOLUME")
	flags := map[string]string{}
	for _, a := range cmd {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		flags[name] = value
	}
	if len(volume) != 1 || path.Dir(flags["state.file"]) != volume[0] {
		t.Errorf("CMD's --state.file=%s is not in the VOLUME %v", flags["state.file"], volume)
	}
	copied := regexp.MustCompile(`cp config.example.yml /out/etc/(\S+)`).FindSubmatch(data)
	if copied == nil || !regexp.MustCompile(`(?m)^COPY --from=build /out/etc/`+regexp.QuoteMeta(string(copied[1]))+` `+regexp.QuoteMeta(flags["config.file"])+`$`).Match(data) {
		t.Errorf("CMD's --config.file=%s is not where the build copies config.example.yml", flags["config.file"])
	}
	// kingpin parses every flag and value; the configuration validates.
	var args []string
	for _, a := range cmd {
		if !strings.HasPrefix(a, "--config.file=") {
			args = append(args, a)
		}
	}
	args = append(args, "--config.file="+filepath.Join(testenv.RepoRoot(), "config.example.yml"), "--config.check")
	if out, err := exec.Command(harness.Binary(t), args...).CombinedOutput(); err != nil {
		t.Errorf("ct_exporter %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// execForm returns the JSON array of the Dockerfile's instruction.
func execForm(t *testing.T, dockerfile []byte, instruction string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + instruction + ` (\[.*\])$`).FindSubmatch(dockerfile)
	if m == nil {
		t.Fatalf("Dockerfile: no %s in exec form", instruction)
	}
	var v []string
	if err := json.Unmarshal(m[1], &v); err != nil {
		t.Fatalf("Dockerfile: %s: %v", instruction, err)
	}
	return v
}

// Where a Docker engine runs, the image is built and run as it is meant to
// be: read-only root filesystem, no capabilities, the state on its volume.
func TestDockerImage(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker command: TestDockerfile checks the Dockerfile instead")
	}
	if out, err := exec.Command(docker, "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine (docker info: %v): TestDockerfile checks the Dockerfile instead\n%s", err, bytes.TrimSpace(out))
	}
	docker1 := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(docker, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("docker %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return strings.TrimSpace(stdout.String())
	}
	id := fmt.Sprintf("ct_exporter-test-%d", time.Now().UnixNano())
	image := "ct_exporter-test:" + id
	docker1("build", "-t", image, testenv.RepoRoot())
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", image).Run() })

	var cfg struct {
		User         string
		ExposedPorts map[string]any
		Volumes      map[string]any
		Entrypoint   []string
	}
	if err := json.Unmarshal([]byte(docker1("image", "inspect", "--format", "{{json .Config}}", image)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.User != "65534:65534" || cfg.ExposedPorts["9812/tcp"] == nil || cfg.Volumes["/var/lib/ct_exporter"] == nil ||
		!slices.Equal(cfg.Entrypoint, []string{"/bin/ct_exporter"}) {
		t.Errorf("image config %+v", cfg)
	}

	// The shipped configuration validates inside the image.
	docker1("run", "--rm", "--read-only", image, "--config.check", "--config.file=/etc/ct_exporter/ct_exporter.yml")

	// Served with its default command: ready means the configuration is
	// loaded and the state file open on the (anonymous) volume.
	docker1("run", "-d", "--name", id, "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"-p", "127.0.0.1::9812", image)
	t.Cleanup(func() { exec.Command(docker, "rm", "-f", "-v", id).Run() })
	addr := docker1("port", id, "9812/tcp")
	if i := strings.IndexByte(addr, '\n'); i >= 0 {
		addr = addr[:i]
	}
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := client.Get("http://" + addr + "/-/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command(docker, "logs", id).CombinedOutput()
			t.Fatalf("the container did not become ready at %s: %v\n%s", addr, err, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	res, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Contains(body, []byte("ct_state_certificates ")) {
		t.Errorf("/metrics lacks ct_state_certificates:\n%s", body)
	}
	if diff := docker1("diff", id); diff != "" {
		t.Errorf("the container changed its filesystem outside the volume:\n%s", diff)
	}
}

// The build context leaves out what must not reach a Docker daemon or an
// image layer.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for _, want := range []string{".git", "*.state", "examples/docker-compose/alertmanager-secrets/"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}
