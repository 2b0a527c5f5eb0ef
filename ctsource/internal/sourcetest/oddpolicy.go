package sourcetest

import (
	"testing"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/internal/oddcert"
	"github.com/ct-exporter/ct_exporter/watch"
)

// OddPolicy is the corpus's watches, compiled by the real configuration reader.
func OddPolicy(t testing.TB) *watch.Set {
	t.Helper()
	cfg, err := config.Parse([]byte(oddcert.ConfigYAML()+"sources:\n  - name: crtsh\n    type: crtsh\n"), "oddcert.yml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Policy
}
