package main

import (
	"runtime/debug"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name         string
		info         *debug.BuildInfo
		ok           bool
		version, rev string
	}{
		{"no build info", nil, false, "devel", "unknown"},
		{"go run", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "devel", "unknown"},
		{"go build in a checkout", &debug.BuildInfo{
			Main:     debug.Module{Version: "v0.0.0-20261204204238-c58e98632173"},
			Settings: vcs("c58e98632173b8436cb8493cf9ebd1918dbc75a2", "false"),
		}, true, "v0.0.0-20261204204238-c58e98632173", "c58e98632173b8436cb8493cf9ebd1918dbc75a2"},
		{"go build in a modified checkout", &debug.BuildInfo{
			Main:     debug.Module{Version: "v0.0.0-20261204204238-c58e98632173+dirty"},
			Settings: vcs("c58e98632173b8436cb8493cf9ebd1918dbc75a2", "true"),
		}, true, "v0.0.0-20261204204238-c58e98632173+dirty", "c58e98632173b8436cb8493cf9ebd1918dbc75a2-modified"},
		{"go install at a tag", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, true, "v1.2.3", "unknown"},
	} {
		v, rev := buildVersion(tc.info, tc.ok)
		if v != tc.version || rev != tc.rev {
			t.Errorf("%s: got version %q, revision %q; want %q, %q", tc.name, v, rev, tc.version, tc.rev)
		}
	}
}
