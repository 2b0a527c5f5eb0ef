package state

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/watch"
)

const crashChildEnv = "CT_EXPORTER_STATE_CRASH_CHILD"

// TestMain lets the crash test run this binary as the writer it kills.
func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	os.Exit(m.Run())
}

// crashChild writes issuances one transaction at a time, for ever, and
// acknowledges each on stdout only after its commit returned.
func crashChild(path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	next := 0
	err = s.View(func(tx *Tx) error {
		if c := tx.Cursor("writer"); c != nil {
			next, err = strconv.Atoi(string(c))
		}
		return err
	})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	now := time.Now()
	for i := next; ; i++ {
		is := issuance(i, now)
		err := s.Update(func(tx *Tx) error {
			if _, err := tx.Observe(is, []Match{{"example.com", watch.Unreviewed}, {"example.net", watch.IssuerAllowed}}); err != nil {
				return err
			}
			if err := tx.MarkID("crtsh", uint64(i), is.TBSSHA256, is.NotAfter); err != nil {
				return err
			}
			return tx.SetCursor("writer", []byte(strconv.Itoa(i+1)))
		})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ok", i)
	}
}

func TestSIGKILLLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns writers")
	}
	path := filepath.Join(t.TempDir(), "crash.state")
	kills := 25
	acked := -1
	for k := 0; k < kills; k++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		want := 1 + rand.IntN(40)
		for n := 0; n < want && lines.Scan(); n++ {
			f := strings.Fields(lines.Text())
			if len(f) != 2 || f[0] != "ok" {
				t.Fatalf("writer: %s", lines.Text())
			}
			i, _ := strconv.Atoi(f[1])
			// A restarted writer resumes after what it committed, which may
			// be past the last acknowledgement read, never at or before it.
			if n == 0 && i <= acked || n > 0 && i != acked+1 {
				t.Fatalf("writer wrote %d after acknowledging %d: a committed write was lost", i, acked)
			}
			acked = i
		}
		// Kill while the writer is in the middle of further commits.
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
	}

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("state does not open after %d kills: %v", kills, err)
	}
	defer s.Close()
	if err := s.SetPolicy(unchanged(time.Hour, 100000)); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, path, s)
	snap := s.Snapshot()
	stored := int(snap.Certificates)
	if stored < acked+1 {
		t.Fatalf("%d issuances stored, %d were acknowledged: an acknowledged one was lost", stored, acked+1)
	}
	for _, labels := range [][]string{{"example.com", "R11", "unreviewed"}, {"example.net", "R11", "issuer_allowed"}} {
		if got := counter(snap, labels...); got != uint64(stored) {
			t.Errorf("counter %v = %d for %d issuances", labels, got, stored)
		}
	}
	if len(snap.Recent) != 2*stored {
		t.Errorf("%d recent series for %d issuances on 2 watches", len(snap.Recent), stored)
	}
	err = s.View(func(tx *Tx) error {
		next, _ := strconv.Atoi(string(tx.Cursor("writer")))
		if next != stored {
			t.Errorf("cursor %d, %d issuances: cursor and records were not committed together", next, stored)
		}
		for i := 0; i < stored; i++ {
			if _, ok := tx.SeenID("crtsh", uint64(i)); !ok {
				t.Errorf("id %d missing", i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills, %d issuances acknowledged, %d stored, none lost or doubled", kills, acked+1, stored)
}
