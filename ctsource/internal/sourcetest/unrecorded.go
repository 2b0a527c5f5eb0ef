package sourcetest

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ct-exporter/ct_exporter/state"
)

// recordLimit is the state's value limit in these tests, lowered from
// bbolt's 2 GiB so that a certificate can exceed it: an ordinary record is
// a few hundred bytes, one with manyNames names several kilobytes.
const (
	recordLimit = 4096
	manyNames   = 300
)

// LockedLog is a log a source writes to while the test reads it.
type LockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *LockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *LockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// OpenLimited opens a state file whose value limit is recordLimit.
func OpenLimited(t *testing.T, path string) *state.Store {
	t.Helper()
	store, err := state.Open(path, state.Options{MaxValueSize: recordLimit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func ManyNamesUnder(domain string) []string {
	names := make([]string, manyNames)
	for i := range names {
		names[i] = fmt.Sprintf("host-%04d.%s", i, domain)
	}
	return names
}

// CheckUnrecordedLogged checks the error line of a certificate that could
// not be recorded.
func CheckUnrecordedLogged(t *testing.T, logged string, tbs [32]byte, watchName string) {
	t.Helper()
	for _, line := range strings.Split(logged, "\n") {
		if strings.Contains(line, "could not be recorded") {
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, hex.EncodeToString(tbs[:])) ||
				!strings.Contains(line, "watches="+watchName) || !strings.Contains(line, "dns_names=300") {
				t.Errorf("log line without level, tbs_sha256, watch or names: %s", line)
			}
			return
		}
	}
	t.Errorf("nothing logged about the certificate not recorded:\n%s", logged)
}
