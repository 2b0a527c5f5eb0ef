package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/config"
)

// A search source that cannot search its watches within its interval says
// so at start (a warning), and every search source's round is reported.
func TestSearchRoundsWarn(t *testing.T) {
	var yml strings.Builder
	yml.WriteString("watches:\n  - domains: [")
	for i := range 100 {
		if i > 0 {
			yml.WriteString(", ")
		}
		fmt.Fprintf(&yml, "d%d.example.com", i)
	}
	yml.WriteString("]\n  - domain: 192.0.2.0/24\nsources:\n" +
		"  - {name: slow, type: crtsh, interval: 1m, request_interval: 2s}\n" +
		"  - {name: fine, type: certspotter, interval: 1h, request_interval: 1s}\n" +
		"  - {name: list, type: loglist}\n")
	cfg, err := config.Parse([]byte(yml.String()), "ct.yml")
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	rounds := searchRounds(cfg, slog.New(slog.NewTextHandler(&log, nil)))
	if rounds["slow"] != 200*time.Second || rounds["fine"] != 100*time.Second || len(rounds) != 2 {
		t.Errorf("rounds %v", rounds)
	}
	if !strings.Contains(log.String(), `msg="a search source cannot keep up with its watches" source=slow watches=100 round=3m20s interval=1m0s`) {
		t.Errorf("no warning for slow:\n%s", log.String())
	}
	if strings.Contains(log.String(), "source=fine") {
		t.Errorf("a warning for a source that keeps up:\n%s", log.String())
	}
}
