package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

func TestStateLocation(t *testing.T) {
	both := stateLocation{file: "x.state", fileSet: true, url: "postgres://u:secret@h/db"}
	if err := both.check(); err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Errorf("both: %v", err)
	}
	// The default file with a URL is the URL.
	l := stateLocation{file: "ct_exporter.state", url: "postgres://u:secret@h/db"}
	if err := l.check(); err != nil {
		t.Error(err)
	}
	if got := l.String(); strings.Contains(got, "secret") || !strings.Contains(got, "postgres://u:xxxxx@h/db") {
		t.Errorf("String() = %q", got)
	}
	if got := (stateLocation{file: "a.state"}).String(); got != "a.state" {
		t.Errorf("String() = %q", got)
	}
}

// state copy copies a state file, and refuses a destination that holds a
// state unless --replace. (File to PostgreSQL: state/statecopy.)
func TestStateCopyCommand(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.state"), filepath.Join(dir, "b.state")
	s, err := state.Open(a, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	storetest.Observe(t, s, storetest.Issuance(1, storetest.NewClock().Now().AddDate(10, 0, 0)), state.Match{Watch: "example.com", Verdict: watch.Unreviewed})
	s.Close()
	var out, errOut bytes.Buffer
	if code := runStateCopy(a, b, false, &out, &errOut); code != 0 || !strings.Contains(out.String(), "1 issuances (1 watch matches)") {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := runStateCopy(a, b, false, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--replace") {
		t.Fatalf("a second copy: exit %d: %s%s", code, out.String(), errOut.String())
	}
	if code := runStateCopy(a, b, true, &out, &errOut); code != 0 {
		t.Fatalf("--replace: exit %d: %s", code, errOut.String())
	}
	if code := run([]string{"state", "copy", "--from", filepath.Join(dir, "missing"), "--to", b}); code != 1 {
		t.Fatalf("a missing source: exit %d", code)
	}
}

// state copy to and from PostgreSQL names the database without its
// password, in what it prints and in its errors.
func TestStateCopyHidesPassword(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "copycmd")
	dir := t.TempDir()
	a := filepath.Join(dir, "a.state")
	s, err := state.Open(a, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	storetest.Observe(t, s, storetest.Issuance(1, storetest.NewClock().Now().AddDate(10, 0, 0)), state.Match{Watch: "example.com", Verdict: watch.Unreviewed})
	s.Close()
	var out, errOut bytes.Buffer
	if code := runStateCopy(a, url, false, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if code := runStateCopy(a, url, false, &out, &errOut); code != 1 {
		t.Fatalf("a second copy: exit %d", code)
	}
	if code := runStateCopy(url, filepath.Join(dir, "b.state"), false, &out, &errOut); code != 0 {
		t.Fatalf("back to a file: exit %d: %s", code, errOut.String())
	}
	bad := strings.Replace(url, pgtest.Password, "wrong-"+pgtest.Password, 1)
	if code := runStateCopy(a, bad, true, &out, &errOut); code != 1 {
		t.Fatalf("a wrong password: exit %d", code)
	}
	all := out.String() + errOut.String()
	if strings.Contains(all, pgtest.Password) || !strings.Contains(all, "xxxxx") {
		t.Errorf("the output shows the password, or does not name the database:\n%s", all)
	}
}
