package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// tenThousand writes a configuration of n watches: a tenth in the main file
// (as groups of 10), the rest in 9 watch files, one per team, as single
// watches and groups, with labels and expected issuers.
func tenThousand(t testing.TB, n int) string {
	t.Helper()
	dir := t.TempDir()
	var main strings.Builder
	main.WriteString("watches:\n")
	for i := 0; i < n/10; i += 10 {
		fmt.Fprintf(&main, "  - domains: [")
		for j := i; j < i+10; j++ {
			if j > i {
				main.WriteString(", ")
			}
			fmt.Fprintf(&main, "main%d.example.com", j)
		}
		main.WriteString("]\n    expected_issuers: [\"Let's Encrypt\", \"/^CN=R1[0-4], O=Let's Encrypt, C=US$/\"]\n    labels: {team: platform}\n")
	}
	main.WriteString("watch_files: [\"teams/*.yml\"]\nsources:\n  - {name: crtsh, type: crtsh}\n")
	if err := os.MkdirAll(filepath.Join(dir, "teams"), 0o755); err != nil {
		t.Fatal(err)
	}
	per := (n - n/10) / 9
	for f := 0; f < 9; f++ {
		var b strings.Builder
		for i := 0; i < per; i++ {
			if i%2 == 0 {
				fmt.Fprintf(&b, "- domain: d%d.team%d.example.net\n  expected_issuers: [DigiCert Inc]\n  labels: {team: team%d, service: s%d}\n", i, f, f, i%7)
			} else {
				fmt.Fprintf(&b, "- domains: [d%d.team%d.example.org]\n  include_subdomains: false\n  labels: {team: team%d}\n", i, f, f)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "teams", fmt.Sprintf("team%d.yml", f)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "ct.yml")
	if err := os.WriteFile(path, []byte(main.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The configuration of 10,000 watches loads; --config.check summarises it
// in a few lines, and says the crt.sh source cannot search them all within
// its interval at its request spacing.
func TestTenThousandWatches(t *testing.T) {
	cfg, err := Load(tenThousand(t, 10000))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.Policy.Watches()); n != 10000 {
		t.Fatalf("%d watches", n)
	}
	var out bytes.Buffer
	cfg.Describe(&out)
	if lines := strings.Count(out.String(), "\n"); lines > 40 {
		t.Errorf("--config.check prints %d lines for 10,000 watches:\n%s", lines, out.String())
	}
	for _, want := range []string{
		"10000 watch(es)",
		"label team: platform: 1000, team0: 1000",
		"searches 10000 watch(es) a round: at least 5h33m20s at its request spacing",
		"warning: source crtsh cannot search its 10000 watches within its interval 1h",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--config.check lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	cfg.DescribeFull(&out)
	if n := strings.Count(out.String(), "\nwatch "); n != 10000 {
		t.Errorf("the full listing has %d watches", n)
	}
}

// BenchmarkLoadTenThousandWatches loads and validates a configuration of
// 10,000 watches (groups, watch files, labels, expected issuers), and
// reports the heap the loaded configuration holds per watch.
func BenchmarkLoadTenThousandWatches(b *testing.B) {
	path := tenThousand(b, 10000)
	for b.Loop() {
		if _, err := Load(path); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep, _ := Load(path)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/10000, "heap-bytes/watch")
	runtime.KeepAlive(keep)
}
