// Package pgtest runs a real, throwaway PostgreSQL server for tests: initdb
// in a temporary directory and pg_ctl on a loopback port, with password
// authentication as a production server has it. initdb refuses to run as
// root, so when the tests run as root the server runs as the postgres user
// (Debian's postgresql package creates it).
package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

// User and Password are the superuser the server is created with.
const (
	User     = "ct"
	Password = "ct-test-password"
)

// Server is a running PostgreSQL server owned by one test.
type Server struct {
	// Port is the loopback TCP port the server listens on.
	Port int

	bin  string // the directory of initdb, pg_ctl and postgres
	dir  string // holds data/ (the cluster), the socket and the log
	cred *syscall.Credential
}

// Start creates a cluster and starts a server on a free loopback port. It
// is stopped and removed when the test ends. Without PostgreSQL installed
// the test is skipped (failed in CI): apt-get install postgresql.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		testenv.Unavailable(t, "%v (apt-get install postgresql)", err)
	}
	s := &Server{bin: bin}
	if os.Geteuid() == 0 {
		if s.cred, err = credential("postgres"); err != nil {
			testenv.Unavailable(t, "running PostgreSQL as root needs the postgres user: %v", err)
		}
	}
	if s.dir, err = os.MkdirTemp("", "ct-pgtest-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s.dir) })
	if err := s.chown(s.dir); err != nil {
		t.Fatal(err)
	}
	pwfile := filepath.Join(s.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.chown(pwfile); err != nil {
		t.Fatal(err)
	}
	// Connections over TCP authenticate with a password, as they would in
	// production; the local socket is the test's own back door.
	if out, err := s.run("initdb", "-D", s.data(), "-U", User, "--pwfile", pwfile,
		"--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	os.Remove(pwfile)
	// A port found free may be taken before the server binds it: try a few.
	for attempt := 0; ; attempt++ {
		_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
		s.Port, _ = strconv.Atoi(port)
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("starting PostgreSQL: %v\n%s", err, s.Log())
		}
	}
	t.Cleanup(func() { s.stop("immediate") })
	return s
}

// URL is the libpq URL of database db (the default database, postgres, if
// empty), with the password in it.
func (s *Server) URL(db string) string {
	if db == "" {
		db = "postgres"
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(User, Password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDB creates a database and returns its URL: each test (or each part
// of one) gets its own.
func (s *Server) CreateDB(t testing.TB, name string) string {
	t.Helper()
	if out, err := s.run("createdb", "-h", s.dir, "-p", strconv.Itoa(s.Port), "-U", User, name); err != nil {
		t.Fatalf("createdb %s: %v\n%s", name, err, out)
	}
	return s.URL(name)
}

// Restart stops the server as a crash would (pg_ctl stop -m immediate: no
// checkpoint, connections cut) and starts it again on the same port, for
// tests of what clients do when their database goes away mid-run.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if out, err := s.stop("immediate"); err != nil {
		t.Fatalf("stopping PostgreSQL: %v\n%s", err, out)
	}
	if err := s.start(); err != nil {
		t.Fatalf("restarting PostgreSQL: %v\n%s", err, s.Log())
	}
}

// Stop stops the server (immediately, as a crash would); Start it again
// with Restart's second half, StartAgain.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if out, err := s.stop("immediate"); err != nil {
		t.Fatalf("stopping PostgreSQL: %v\n%s", err, out)
	}
}

// StartAgain starts a stopped server on its port.
func (s *Server) StartAgain(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("starting PostgreSQL: %v\n%s", err, s.Log())
	}
}

// Log is the server's log so far, for a failing test's message.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

func (s *Server) start() error {
	opts := strings.Join([]string{
		"-p", strconv.Itoa(s.Port),
		"-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		// The tests kill clients, and stop the server as a crash would:
		// both survive without fsync, which only an OS crash needs.
		"-c", "fsync=off",
		"-c", "max_connections=200",
	}, " ")
	out, err := s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "server.log"), "-o", opts, "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

func (s *Server) stop(mode string) ([]byte, error) {
	return s.run("pg_ctl", "-D", s.data(), "-m", mode, "-w", "-t", "60", "stop")
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

func (s *Server) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
}

// binDir finds the newest installed PostgreSQL's programs: Debian keeps
// them in /usr/lib/postgresql/<version>/bin, off PATH (where a wrapper
// may stand for some of them).
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, dir := range dirs {
		if complete(dir) {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL's initdb, pg_ctl and createdb not found")
}

func complete(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "createdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return false
		}
	}
	return true
}

func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
