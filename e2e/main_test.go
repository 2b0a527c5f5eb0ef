// Package e2e runs the ct_exporter binary as a user does, each test with a
// process of its own built by internal/harness: with the real parts around
// it (Prometheus evaluating the shipped rules, Alertmanager routing to a
// webhook, a real Sunlight CT log, the fake crt.sh: e2e_test.go,
// latency_test.go); under kills, a full disk, a read-only filesystem and
// reload loops (chaos, kill, killlog, diskfull, readonly, reloadloop);
// against hostile upstreams and clients (hostile, web); and through its
// interfaces: endpoints, TLS and basic auth (exporter), the status page in
// Chromium (statuspage, chromium), the check command (check) and the
// container image (dockerfile).
package e2e

import (
	"testing"

	"github.com/ct-exporter/ct_exporter/internal/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }
