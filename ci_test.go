package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every fuzz target is fuzzed by .ci/fuzz (and so in CI): a target that is
// only replayed from its seeds finds nothing new.
func TestCIFuzzesEveryTarget(t *testing.T) {
	script, err := os.ReadFile(".ci/fuzz")
	if err != nil {
		t.Fatal(err)
	}
	target := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)
	var found int
	err = filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range target.FindAllStringSubmatch(string(src), -1) {
			found++
			entry := "./" + filepath.Dir(path) + ":" + m[1]
			if !strings.Contains(string(script), "\n  "+entry+"\n") {
				t.Errorf(".ci/fuzz does not fuzz %s (%s)", m[1], entry)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 10 {
		t.Fatalf("found %d fuzz targets: the pattern is wrong", found)
	}
	run, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\.ci/fuzz `).Match(run) {
		t.Error(".ci/run does not run .ci/fuzz")
	}
}
