package collector

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/watch"
)

// Every watch carries every label name the watches set, empty where it sets
// none, so the family has one label set; a reload may change the names.
func TestWatchInfo(t *testing.T) {
	a := watch.NewWatch("pay.example", true)
	a.Labels = map[string]string{"team": "payments", "service": "checkout"}
	b := watch.NewWatch("web.example", true)
	b.Labels = map[string]string{"team": "web"}
	c := watch.NewWatch("other.example", true)
	set := watch.NewSet([]watch.Watch{a, b, c})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewWatchInfo(func() *watch.Set { return set }))
	want := `# HELP ct_watch_info ` + watchInfoHelp + `
# TYPE ct_watch_info gauge
ct_watch_info{service="",team="",watch="other.example"} 1
ct_watch_info{service="checkout",team="payments",watch="pay.example"} 1
ct_watch_info{service="",team="web",watch="web.example"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ct_watch_info"); err != nil {
		t.Fatal(err)
	}
	set = watch.NewSet([]watch.Watch{watch.NewWatch("pay.example", true)})
	want = `# HELP ct_watch_info ` + watchInfoHelp + `
# TYPE ct_watch_info gauge
ct_watch_info{watch="pay.example"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ct_watch_info"); err != nil {
		t.Fatal(err)
	}
}

// A watch's labels may take no label name of the exporter's own series.
func TestReservedLabelNamesCoverEveryFamily(t *testing.T) {
	ch := make(chan *prometheus.Desc, 200)
	go func() { Describe(ch); close(ch) }()
	for d := range ch {
		s := d.String()
		_, rest, _ := strings.Cut(s, "variableLabels: {")
		names, _, _ := strings.Cut(rest, "}")
		for _, n := range strings.Split(names, ",") {
			if n = strings.TrimSpace(n); n != "" && !slices.Contains(config.ReservedLabelNames, n) {
				t.Errorf("%s: label %q is not in config.ReservedLabelNames", s, n)
			}
		}
	}
}
