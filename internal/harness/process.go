package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Process is a program started for a test and killed at its cleanup; its
// output is shown when the test fails.
type Process struct {
	Name   string
	Cmd    *exec.Cmd
	Exited chan struct{} // closed once the program has exited
	log    string        // the file holding its standard output and error
}

// logTail is how much of a program's output a failed test shows.
const logTail = 64 << 10

// StartProcess starts the program name with args.
func StartProcess(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	return StartProcessWith(t, nil, name, args...)
}

// StartProcessWith starts the program name with args; configure, when not
// nil, adjusts the command first (user, directory, environment, a wrapper).
func StartProcessWith(t testing.TB, configure func(*exec.Cmd), name string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: filepath.Base(name), log: filepath.Join(t.TempDir(), filepath.Base(name)+".log"), Exited: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd = exec.Command(name, args...)
	if configure != nil {
		configure(p.Cmd)
	}
	p.Cmd.Stdout, p.Cmd.Stderr = f, f
	if err := p.Cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	go func() { p.Cmd.Wait(); f.Close(); close(p.Exited) }()
	t.Cleanup(func() {
		p.Cmd.Process.Kill()
		<-p.Exited
		if t.Failed() {
			out := p.Log()
			if len(out) > logTail {
				out = "…" + out[len(out)-logTail:]
			}
			t.Logf("%s log:\n%s", p.Name, out)
		}
	})
	return p
}

// Log is what the program has written so far.
func (p *Process) Log() string {
	out, _ := os.ReadFile(p.log)
	return string(out)
}
