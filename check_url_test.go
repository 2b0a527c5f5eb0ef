package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/common/promslog"
)

// check refuses --state.url: it would commit without the replicas' leases.
func TestCheckRefusesStateURL(t *testing.T) {
	var out, errOut bytes.Buffer
	code := runCheck("config.example.yml", stateLocation{url: "postgres://u@127.0.0.1:1/db?sslmode=disable"}, "table", promslog.NewNopLogger(), &out, &errOut)
	if code != checkFailed || !strings.Contains(errOut.String(), "--state.url is not supported") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}
