package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// No Docker engine runs in CI; this checks what the image promises: a static
// binary, a non-root user, the state on a volume, the port.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
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
