package main

import (
	"strings"
	"testing"
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
