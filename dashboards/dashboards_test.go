package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"go.yaml.in/yaml/v3"

	"github.com/ct-exporter/ct_exporter/collector"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the dashboards' JSON from their jsonnet sources")

// The variables Grafana substitutes in the dashboards' queries, as an
// end-to-end test would.
var testVars = map[string]string{
	"__rate_interval": "1m",
	"__range":         "3600s",
	"__interval":      "15s",
	"job":             "ct_exporter",
	"instance":        ".+",
	"team":            ".*",
}

type dashboard struct {
	file string
	raw  []byte
	json map[string]any
}

func loadDashboards(t *testing.T) []dashboard {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no dashboards (*.json)")
	}
	sort.Strings(files)
	var out []dashboard
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s is not valid JSON: %v", f, err)
		}
		out = append(out, dashboard{f, raw, d})
	}
	return out
}

// tidy is the one formatting of a dashboard: keys sorted, 2-space indent,
// no HTML escaping, numbers as written, a final newline.
func tidy(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// The metrics the exporter exposes, from the code: the descriptions of
// every family the collector package defines, and of the standard
// collectors'.
func exposedMetrics(t testing.TB) map[string]bool {
	t.Helper()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	known := map[string]bool{}
	for _, describe := range []func(chan<- *prometheus.Desc){
		collector.Describe,
		versioncollector.NewCollector("ct_exporter").Describe,
		collectors.NewGoCollector().Describe,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}).Describe,
	} {
		ch := make(chan *prometheus.Desc)
		go func() { describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			known[m[1]] = true
		}
	}
	for _, name := range []string{"ct_new_certificates_total", "ct_exporter_build_info", "ct_config_last_reload_successful",
		"ct_config_last_reload_success_timestamp_seconds", "go_goroutines", "process_start_time_seconds"} {
		if !known[name] {
			t.Fatalf("%s is not among the metrics found in the code: the lookup is broken", name)
		}
	}
	// Prometheus adds up to every scrape of the exporter.
	known["up"] = true
	return known
}

func metricKnown(known map[string]bool, name string) bool {
	if known[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
			return true
		}
	}
	return false
}

// Grafana's unit ids (packages/grafana-data/src/valueFormats/categories.ts)
// that a dashboard of this exporter could want; a typo is not among them.
var knownUnits = map[string]bool{}

func init() {
	for _, u := range strings.Fields(`none string short percent percentunit hex0x hex sci locale
		bits bytes kbytes mbytes gbytes decbits decbytes deckbytes decmbytes decgbytes
		pps bps Bps KBs Kbits MBs Mbits
		dateTimeAsIso dateTimeAsIsoNoDateIfToday dateTimeAsUS dateTimeAsUSNoDateIfToday dateTimeFromNow
		hertz ns µs ms s m h d dtdurationms dtdurations dthms dtdhms timeticks clockms clocks
		cps ops reqps rps wps iops cpm opm rpm wpm bool bool_yes_no bool_on_off`) {
		knownUnits[u] = true
	}
}

// PromQL words that are not metric names.
var promqlKeywords = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`sum min max avg group stddev stdvar count count_values bottomk topk quantile
		limitk limit_ratio by without on ignoring group_left group_right and or unless bool offset atan2 inf nan`) {
		promqlKeywords[k] = true
	}
}

type selector struct {
	name     string
	matchers []string // as written, e.g. job=~"$job"; nil without braces
}

var (
	identifier    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	grafanaVar    = regexp.MustCompile(`\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\]`)
	groupingStart = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(`)
	allowedRange  = regexp.MustCompile(`^\$__(rate_interval|range)(:(\$__interval|\$__rate_interval)?)?$`)
)

// blank replaces b[i:j] with spaces: the text keeps its positions.
func blank(b []byte, i, j int) {
	for k := i; k < j && k < len(b); k++ {
		b[k] = ' '
	}
}

// closing returns the index of the first c at or after i, or len(b).
func closing(b []byte, i int, c byte) int {
	for ; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return len(b)
}

// parseExpr finds the metric selectors and range durations of a PromQL
// expression with Grafana variables. It masks what cannot name a metric
// (strings, variables, label matchers, ranges, grouping label lists), then
// takes the identifiers that are neither functions (followed by "(") nor
// keywords, nor parts of numbers and durations.
func parseExpr(expr string) (sels []selector, ranges []string) {
	b := []byte(expr)
	for i := 0; i < len(b); i++ { // strings
		if q := b[i]; q == '"' || q == '\'' || q == '`' {
			j := i + 1
			for j < len(b) && b[j] != q {
				if b[j] == '\\' && q != '`' {
					j++
				}
				j++
			}
			blank(b, i, j+1)
			i = j
		}
	}
	for _, loc := range grafanaVar.FindAllIndex(b, -1) {
		blank(b, loc[0], loc[1])
	}
	for i := 0; i < len(b); i++ { // label matchers and ranges
		switch b[i] {
		case '{':
			j := closing(b, i, '}')
			blank(b, i+1, j)
			i = j
		case '[':
			j := closing(b, i, ']')
			ranges = append(ranges, strings.TrimSpace(expr[i+1:min(j, len(expr))]))
			blank(b, i+1, j)
			i = j
		}
	}
	for _, loc := range groupingStart.FindAllIndex(b, -1) {
		blank(b, loc[1], closing(b, loc[1], ')'))
	}
	for _, loc := range identifier.FindAllIndex(b, -1) {
		if loc[0] > 0 {
			if c := b[loc[0]-1]; c == '.' || c >= '0' && c <= '9' { // 1e3, 0x1f, 5m
				continue
			}
		}
		name := string(b[loc[0]:loc[1]])
		if promqlKeywords[strings.ToLower(name)] {
			continue
		}
		next := loc[1]
		for next < len(b) && (b[next] == ' ' || b[next] == '\t' || b[next] == '\n') {
			next++
		}
		if next < len(b) && b[next] == '(' {
			continue // a function
		}
		s := selector{name: name}
		if next < len(b) && b[next] == '{' {
			end := closing(b, next, '}')
			s.matchers = splitMatchers(expr[next+1 : min(end, len(expr))])
		}
		sels = append(sels, s)
	}
	return sels, ranges
}

// splitMatchers splits `a="x", b=~"y,z"` at the commas outside strings.
func splitMatchers(s string) []string {
	var out []string
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0 && c == '\\':
			i++
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\'' || c == '`'):
			quote = c
		case quote == 0 && c == ',':
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if last := strings.TrimSpace(s[start:]); last != "" {
		out = append(out, last)
	}
	return out
}

// checkExpr reports what is wrong with one query.
func checkExpr(where, expr string, known map[string]bool) []string {
	var problems []string
	if strings.TrimSpace(expr) == "" {
		return []string{where + ": empty query"}
	}
	sels, ranges := parseExpr(expr)
	for _, r := range ranges {
		if !allowedRange.MatchString(r) {
			problems = append(problems, fmt.Sprintf("%s: range [%s] must be [$__rate_interval] (or [$__range] for a total over the time range): %s", where, r, expr))
		}
	}
	if len(sels) == 0 && !strings.Contains(expr, "vector(") {
		problems = append(problems, fmt.Sprintf("%s: no metric found in %s", where, expr))
	}
	for _, s := range sels {
		if !metricKnown(known, s.name) {
			problems = append(problems, fmt.Sprintf("%s: %s is not a metric ct_exporter exposes: %s", where, s.name, expr))
		}
		for _, want := range []string{`job=~"$job"`, `instance=~"$instance"`} {
			if !contains(s.matchers, want) {
				problems = append(problems, fmt.Sprintf("%s: selector of %s lacks %s: %s", where, s.name, want, expr))
			}
		}
	}
	return problems
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

type rect struct {
	title      string
	x, y, w, h int
}

func num(v any) (int, bool) {
	f, ok := v.(float64)
	if !ok || f != float64(int(f)) {
		return 0, false
	}
	return int(f), true
}

func isDatasourceVar(v any) bool {
	m, ok := v.(map[string]any)
	return ok && m["type"] == "prometheus" && m["uid"] == "${datasource}" && len(m) == 2
}

// checkDashboard reports what is wrong with one dashboard.
func checkDashboard(file string, d map[string]any, known map[string]bool) []string {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, file+": "+fmt.Sprintf(format, args...))
	}

	uid, _ := d["uid"].(string)
	if uid == "" || len(uid) > 40 || !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(uid) {
		bad("uid %q must be fixed, non-empty, at most 40 letters, digits, - and _", uid)
	}
	if t, _ := d["title"].(string); t == "" {
		bad("no title")
	}
	if _, ok := d["__inputs"]; ok {
		bad("__inputs: an exported dashboard cannot be provisioned from a file")
	}
	if id, ok := d["id"]; ok && id != nil {
		bad("id %v: a provisioned dashboard has id null", id)
	}
	if v, _ := num(d["schemaVersion"]); v < 36 {
		bad("schemaVersion %v: want Grafana 10's (36 or more)", d["schemaVersion"])
	}

	// Every Prometheus data source reference is the variable.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if k == "datasource" {
					switch ds := c.(type) {
					case string:
						bad("%s.datasource is %q: use {\"type\": \"prometheus\", \"uid\": \"${datasource}\"}", path, ds)
					case map[string]any:
						if ds["type"] != "grafana" && !isDatasourceVar(ds) {
							bad("%s.datasource is %v: use {\"type\": \"prometheus\", \"uid\": \"${datasource}\"}", path, ds)
						}
					}
				}
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), c)
			}
		case string:
			if strings.Contains(v, "${DS_") {
				bad("%s uses an exported data source input: %s", path, v)
			}
		}
	}
	walk("", d)

	// Template variables.
	vars := map[string]map[string]any{}
	templating, _ := d["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for _, v := range list {
		m, _ := v.(map[string]any)
		name, _ := m["name"].(string)
		vars[name] = m
		if m["type"] == "query" {
			if !isDatasourceVar(m["datasource"]) {
				bad("variable %s: its datasource must be ${datasource}", name)
			}
			q, _ := json.Marshal(m["query"])
			query, err := variableQuery(q)
			if err != nil || query == "" {
				bad("variable %s: no query", name)
				continue
			}
			if sel := labelValues.FindStringSubmatch(query); sel != nil {
				sels, _ := parseExpr(sel[1])
				for _, s := range sels {
					if !metricKnown(known, s.name) {
						bad("variable %s: %s is not a metric ct_exporter exposes", name, s.name)
					}
				}
			}
		}
	}
	if v := vars["datasource"]; v == nil || v["type"] != "datasource" || v["query"] != "prometheus" {
		bad("no variable datasource of type datasource with query prometheus")
	}
	if v := vars["job"]; v == nil || v["type"] != "query" || !strings.Contains(fmt.Sprint(v["query"]), "ct_exporter_build_info") {
		bad("no query variable job over ct_exporter_build_info")
	}
	if v := vars["instance"]; v == nil || v["type"] != "query" || !strings.Contains(fmt.Sprint(v["query"]), `job=~"$job"`) ||
		v["multi"] != true || v["includeAll"] != true {
		bad(`no multi-value query variable instance (with All) filtered on job=~"$job"`)
	}

	// Annotations.
	annotations, _ := d["annotations"].(map[string]any)
	alist, _ := annotations["list"].([]any)
	for _, a := range alist {
		m, _ := a.(map[string]any)
		if b, _ := num(m["builtIn"]); b == 1 {
			continue
		}
		if !isDatasourceVar(m["datasource"]) {
			bad("annotation %v: its datasource must be ${datasource}", m["name"])
		}
		expr, _ := m["expr"].(string)
		if target, ok := m["target"].(map[string]any); ok && expr == "" {
			expr, _ = target["expr"].(string)
		}
		for _, p := range checkExpr(fmt.Sprintf("annotation %v", m["name"]), expr, known) {
			bad("%s", p)
		}
	}

	// Panels.
	ids := map[int]string{}
	titles := map[string]bool{}
	var top []rect
	var checkPanels func(panels []any, nested bool) []rect
	checkPanels = func(panels []any, nested bool) []rect {
		var rects []rect
		for _, p := range panels {
			m, ok := p.(map[string]any)
			if !ok {
				bad("a panel is not an object")
				continue
			}
			typ, _ := m["type"].(string)
			title, _ := m["title"].(string)
			where := fmt.Sprintf("panel %q", title)
			if title == "" {
				bad("a %s panel has no title", typ)
			} else if titles[title] {
				bad("%s: two panels with this title", where)
			}
			titles[title] = true
			if id, ok := num(m["id"]); !ok || id <= 0 {
				bad("%s: no id", where)
			} else if other, dup := ids[id]; dup {
				bad("%s: id %d already used by panel %q", where, id, other)
			} else {
				ids[id] = title
			}
			gp, _ := m["gridPos"].(map[string]any)
			x, okx := num(gp["x"])
			y, oky := num(gp["y"])
			w, okw := num(gp["w"])
			h, okh := num(gp["h"])
			if !okx || !oky || !okw || !okh || x < 0 || y < 0 || w <= 0 || h <= 0 || x+w > 24 {
				bad("%s: gridPos %v is not inside the 24 columns (x >= 0, w > 0, x+w <= 24, h > 0)", where, gp)
			} else {
				rects = append(rects, rect{title, x, y, w, h})
			}
			nestedPanels, _ := m["panels"].([]any)
			if typ == "row" {
				if nested {
					bad("%s: a row inside a row", where)
				}
				if collapsed, _ := m["collapsed"].(bool); collapsed {
					// Grafana lays a collapsed row's panels out when it opens.
					checkOverlaps(bad, checkPanels(nestedPanels, true))
				} else if len(nestedPanels) > 0 {
					bad("%s: an expanded row keeps its panels at the top level, not in panels", where)
				}
				continue
			}
			if len(nestedPanels) > 0 {
				bad("%s: only rows hold panels", where)
			}
			if typ == "text" {
				continue
			}
			if !isDatasourceVar(m["datasource"]) {
				bad("%s: datasource must be {\"type\": \"prometheus\", \"uid\": \"${datasource}\"}", where)
			}
			fc, _ := m["fieldConfig"].(map[string]any)
			defaults, _ := fc["defaults"].(map[string]any)
			unit, _ := defaults["unit"].(string)
			overrides, _ := fc["overrides"].([]any)
			var overrideUnits []string
			for _, o := range overrides {
				om, _ := o.(map[string]any)
				props, _ := om["properties"].([]any)
				for _, prop := range props {
					pm, _ := prop.(map[string]any)
					if pm["id"] == "unit" {
						u, _ := pm["value"].(string)
						overrideUnits = append(overrideUnits, u)
					}
				}
			}
			if unit == "" && (typ != "table" || len(overrideUnits) == 0) {
				bad("%s: no unit (fieldConfig.defaults.unit)", where)
			}
			for _, u := range append(overrideUnits, unit) {
				if u != "" && !knownUnits[u] {
					bad("%s: unknown unit %q", where, u)
				}
			}
			targets, _ := m["targets"].([]any)
			if len(targets) == 0 {
				bad("%s: no queries", where)
			}
			refs := map[string]bool{}
			for _, t := range targets {
				tm, _ := t.(map[string]any)
				ref, _ := tm["refId"].(string)
				if ref == "" || refs[ref] {
					bad("%s: refId %q missing or repeated", where, ref)
				}
				refs[ref] = true
				if ds, ok := tm["datasource"]; ok && !isDatasourceVar(ds) {
					bad("%s %s: datasource must be ${datasource}", where, ref)
				}
				expr, _ := tm["expr"].(string)
				for _, p := range checkExpr(where+" "+ref, expr, known) {
					bad("%s", p)
				}
			}
		}
		return rects
	}
	panels, _ := d["panels"].([]any)
	if len(panels) == 0 {
		bad("no panels")
	}
	top = checkPanels(panels, false)
	checkOverlaps(bad, top)
	return problems
}

func checkOverlaps(bad func(string, ...any), rects []rect) {
	for i, a := range rects {
		for _, b := range rects[i+1:] {
			if a.x < b.x+b.w && b.x < a.x+a.w && a.y < b.y+b.h && b.y < a.y+a.h {
				bad("panels %q and %q overlap", a.title, b.title)
			}
		}
	}
}

// checkUIDs reports uids shared by dashboards.
func checkUIDs(ds []dashboard) []string {
	var problems []string
	seen := map[string]string{}
	for _, d := range ds {
		uid, _ := d.json["uid"].(string)
		if other, ok := seen[uid]; ok {
			problems = append(problems, fmt.Sprintf("%s and %s have the same uid %q", other, d.file, uid))
		}
		seen[uid] = d.file
	}
	return problems
}

func TestDashboards(t *testing.T) {
	known := exposedMetrics(t)
	ds := loadDashboards(t)
	for _, d := range ds {
		t.Run(d.file, func(t *testing.T) {
			for _, p := range checkDashboard(d.file, d.json, known) {
				t.Error(p)
			}
			want, err := tidy(d.raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d.raw, want) {
				t.Errorf("%s is not tidy (keys sorted, 2-space indent): render it with go test ./dashboards/ -run TestRendered -update", d.file)
			}
		})
	}
	for _, p := range checkUIDs(ds) {
		t.Error(p)
	}
}

// Every check must be able to fail: break a copy of a dashboard in one way
// and the checker must say so.
func TestCheckerCatches(t *testing.T) {
	known := exposedMetrics(t)
	ds := loadDashboards(t)
	orig := ds[0]
	fresh := func(t *testing.T) map[string]any {
		var d map[string]any
		if err := json.Unmarshal(orig.raw, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if p := checkDashboard(orig.file, fresh(t), known); len(p) != 0 {
		t.Fatalf("%s is not clean: %v", orig.file, p)
	}
	panelsOf := func(d map[string]any) []any { return d["panels"].([]any) }
	// The first panel of a type, and its first target.
	first := func(d map[string]any, typ string) map[string]any {
		for _, p := range panelsOf(d) {
			if m := p.(map[string]any); m["type"] == typ {
				return m
			}
		}
		t.Fatalf("no %s panel in %s", typ, orig.file)
		return nil
	}
	target := func(p map[string]any) map[string]any { return p["targets"].([]any)[0].(map[string]any) }
	// Rewrite the first panel query that contains old.
	rewrite := func(t *testing.T, d map[string]any, old, new string) {
		for _, p := range panelsOf(d) {
			ts, _ := p.(map[string]any)["targets"].([]any)
			for _, tg := range ts {
				tm := tg.(map[string]any)
				if e := tm["expr"].(string); strings.Contains(e, old) {
					tm["expr"] = strings.Replace(e, old, new, 1)
					return
				}
			}
		}
		t.Fatalf("no query contains %q", old)
	}
	variable := func(d map[string]any, name string) map[string]any {
		for _, v := range d["templating"].(map[string]any)["list"].([]any) {
			if m := v.(map[string]any); m["name"] == name {
				return m
			}
		}
		t.Fatalf("no variable %s", name)
		return nil
	}

	cases := []struct {
		name   string
		want   string
		mutate func(t *testing.T, d map[string]any)
	}{
		{"overlapping panels", "overlap", func(t *testing.T, d map[string]any) {
			ps := panelsOf(d)
			gp := ps[1].(map[string]any)["gridPos"].(map[string]any)
			ps[2].(map[string]any)["gridPos"] = map[string]any{"x": gp["x"], "y": gp["y"], "w": gp["w"], "h": gp["h"]}
		}},
		{"panel past column 24", "24 columns", func(t *testing.T, d map[string]any) {
			gp := first(d, "timeseries")["gridPos"].(map[string]any)
			gp["x"], gp["w"] = 20.0, 8.0
		}},
		{"zero height", "24 columns", func(t *testing.T, d map[string]any) {
			first(d, "stat")["gridPos"].(map[string]any)["h"] = 0.0
		}},
		{"missing unit", "no unit", func(t *testing.T, d map[string]any) {
			delete(first(d, "timeseries")["fieldConfig"].(map[string]any)["defaults"].(map[string]any), "unit")
		}},
		{"misspelt unit", `unknown unit "seconds"`, func(t *testing.T, d map[string]any) {
			first(d, "timeseries")["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["unit"] = "seconds"
		}},
		{"fixed rate window", "range [5m]", func(t *testing.T, d map[string]any) {
			rewrite(t, d, "[$__rate_interval]", "[5m]")
		}},
		{"fixed total window", "range [1d]", func(t *testing.T, d map[string]any) {
			rewrite(t, d, "[$__range]", "[1d]")
		}},
		{"unknown metric", "ct_log_tree_sizes is not a metric", func(t *testing.T, d map[string]any) {
			rewrite(t, d, "ct_log_tree_size{", "ct_log_tree_sizes{")
		}},
		{"misspelt histogram", "ct_source_poll_duration_second_bucket is not a metric", func(t *testing.T, d map[string]any) {
			rewrite(t, d, "ct_source_poll_duration_seconds_bucket{", "ct_source_poll_duration_second_bucket{")
		}},
		{"selector without job", `lacks job=~"$job"`, func(t *testing.T, d map[string]any) {
			rewrite(t, d, `ct_source_up{job=~"$job", `, `ct_source_up{`)
		}},
		{"selector without instance", `lacks instance=~"$instance"`, func(t *testing.T, d map[string]any) {
			rewrite(t, d, `ct_log_tree_size{job=~"$job", instance=~"$instance"}`, `ct_log_tree_size{job=~"$job"}`)
		}},
		{"selector without braces", `selector of go_goroutines lacks job`, func(t *testing.T, d map[string]any) {
			rewrite(t, d, `go_goroutines{job=~"$job", instance=~"$instance"}`, `go_goroutines`)
		}},
		{"second selector without filters", `selector of ct_log_mmd_seconds lacks`, func(t *testing.T, d map[string]any) {
			rewrite(t, d, `ct_log_mmd_seconds{job=~"$job", instance=~"$instance"}`, `ct_log_mmd_seconds{job="ct_exporter"}`)
		}},
		{"hard-coded panel data source", "P1809F7CD0C75ACF3", func(t *testing.T, d map[string]any) {
			first(d, "stat")["datasource"] = map[string]any{"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
		}},
		{"panel without data source", "datasource must be", func(t *testing.T, d map[string]any) {
			delete(first(d, "table"), "datasource")
		}},
		{"query with another data source", `datasource is "Prometheus"`, func(t *testing.T, d map[string]any) {
			target(first(d, "timeseries"))["datasource"] = "Prometheus"
		}},
		{"duplicate panel id", "already used", func(t *testing.T, d map[string]any) {
			ps := panelsOf(d)
			ps[3].(map[string]any)["id"] = ps[2].(map[string]any)["id"]
		}},
		{"exported dashboard", "__inputs", func(t *testing.T, d map[string]any) {
			d["__inputs"] = []any{map[string]any{"name": "DS_PROMETHEUS", "type": "datasource"}}
		}},
		{"no uid", `uid ""`, func(t *testing.T, d map[string]any) { delete(d, "uid") }},
		{"no datasource variable", "no variable datasource", func(t *testing.T, d map[string]any) {
			variable(d, "datasource")["type"] = "custom"
		}},
		{"no job variable", "no query variable job", func(t *testing.T, d map[string]any) {
			variable(d, "job")["name"] = "jobs"
		}},
		{"instance not filtered on job", "variable instance", func(t *testing.T, d map[string]any) {
			variable(d, "instance")["query"] = "label_values(ct_exporter_build_info, instance)"
		}},
		{"variable over an unknown metric", "variable job: ct_build_info is not a metric", func(t *testing.T, d map[string]any) {
			variable(d, "job")["query"] = "label_values(ct_build_info, job)"
		}},
		{"annotation without filters", "annotation Issuances to review: selector of ct_certificate_first_seen_timestamp_seconds lacks", func(t *testing.T, d map[string]any) {
			for _, a := range d["annotations"].(map[string]any)["list"].([]any) {
				if m := a.(map[string]any); m["expr"] != nil {
					m["expr"] = "ct_certificate_first_seen_timestamp_seconds * 1000"
					return
				}
			}
			t.Fatal("no annotation query")
		}},
		{"overlap in a collapsed row", "overlap", func(t *testing.T, d map[string]any) {
			ps := panelsOf(d)
			var a, b map[string]any
			for _, p := range ps {
				if m := p.(map[string]any); m["type"] == "timeseries" {
					if a == nil {
						a = m
					} else if b == nil {
						b = m
					}
				}
			}
			copyOf := func(m map[string]any) map[string]any {
				raw, _ := json.Marshal(m)
				var c map[string]any
				json.Unmarshal(raw, &c)
				return c
			}
			na, nb := copyOf(a), copyOf(b)
			na["id"], nb["id"] = 1001.0, 1002.0
			na["title"], nb["title"] = "folded a", "folded b"
			na["gridPos"] = map[string]any{"x": 0.0, "y": 200.0, "w": 12.0, "h": 8.0}
			nb["gridPos"] = map[string]any{"x": 6.0, "y": 204.0, "w": 12.0, "h": 8.0}
			d["panels"] = append(ps, map[string]any{
				"collapsed": true, "id": 1000.0, "title": "Folded", "type": "row",
				"gridPos": map[string]any{"x": 0.0, "y": 199.0, "w": 24.0, "h": 1.0},
				"panels":  []any{na, nb},
			})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := fresh(t)
			c.mutate(t, d)
			problems := checkDashboard(orig.file, d, known)
			if !strings.Contains(strings.Join(problems, "\n"), c.want) {
				t.Fatalf("the checker did not report %q; it reported %v", c.want, problems)
			}
		})
	}
	t.Run("uid shared by two dashboards", func(t *testing.T) {
		problems := checkUIDs([]dashboard{orig, {file: "copy.json", json: orig.json}})
		if len(problems) != 1 || !strings.Contains(problems[0], "same uid") {
			t.Fatalf("checkUIDs reported %v", problems)
		}
	})
}

func TestParseExpr(t *testing.T) {
	cases := []struct {
		expr   string
		names  []string
		ranges []string
	}{
		{`sum by (source, le) (rate(ct_source_poll_duration_seconds_bucket{job=~"$job", le!="+Inf"}[$__rate_interval]))`,
			[]string{"ct_source_poll_duration_seconds_bucket"}, []string{"$__rate_interval"}},
		{`histogram_quantile(0.9, x{a="b{c}"}) / on (log) group_left (check) y offset 1h > 1e3 * 0x1f`,
			[]string{"x", "y"}, nil},
		{`count(a > time() - $__range_s) or vector(0)`, []string{"a"}, nil},
		{`max_over_time(a[$__range:$__interval]) unless ignoring(instance) b and bool c`,
			[]string{"a", "b", "c"}, []string{"$__range:$__interval"}},
		{`label_replace(a, "dst", "$1", "src", "(.*)")`, []string{"a"}, nil},
	}
	for _, c := range cases {
		sels, ranges := parseExpr(c.expr)
		var names []string
		for _, s := range sels {
			names = append(names, s.name)
		}
		if !reflect.DeepEqual(names, c.names) || !reflect.DeepEqual(ranges, c.ranges) {
			t.Errorf("parseExpr(%s) = %v, %v; want %v, %v", c.expr, names, ranges, c.names, c.ranges)
		}
	}
	if got := splitMatchers(` job=~"$job", re=~"a,b\",c" ,x="}"`); !reflect.DeepEqual(got, []string{`job=~"$job"`, `re=~"a,b\",c"`, `x="}"`}) {
		t.Errorf("splitMatchers = %q", got)
	}
}

// The JSON is what the jsonnet renders; -update rewrites it.
func TestRenderedFromJsonnet(t *testing.T) {
	jsonnet := testenv.Require(t, "jsonnet", "jsonnet")
	sources, err := filepath.Glob("*.jsonnet")
	if err != nil || len(sources) == 0 {
		t.Fatalf("no jsonnet sources: %v", err)
	}
	for _, src := range sources {
		out, err := exec.Command(jsonnet, src).Output()
		if err != nil {
			t.Fatalf("jsonnet %s: %v\n%s", src, err, stderr(err))
		}
		want, err := tidy(out)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		file := strings.TrimSuffix(src, ".jsonnet") + ".json"
		if *update {
			if err := os.WriteFile(file, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what %s renders: run go test ./dashboards/ -run TestRendered -update", file, src)
		}
	}
}

func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func TestQueries(t *testing.T) {
	qs, err := Queries(".")
	if err != nil {
		t.Fatal(err)
	}
	ds := loadDashboards(t)
	targets := 0
	var count func([]any)
	count = func(ps []any) {
		for _, p := range ps {
			m := p.(map[string]any)
			ts, _ := m["targets"].([]any)
			targets += len(ts)
			nested, _ := m["panels"].([]any)
			count(nested)
		}
	}
	for _, d := range ds {
		count(d.json["panels"].([]any))
	}
	kinds := map[string]int{}
	for _, q := range qs {
		kinds[q.Kind]++
		if q.Expr == "" || q.RefID == "" || q.Panel == "" || q.Format == "" {
			t.Errorf("incomplete query %+v", q)
		}
		if s := Substitute(q.Expr, testVars); strings.Contains(s, "$") || strings.Contains(s, "[[") {
			t.Errorf("%s: a variable the end-to-end tests do not set is left in %s", q, s)
		}
	}
	if kinds["panel"] != targets || kinds["annotation"] == 0 || kinds["variable"] != 3 {
		t.Errorf("Queries found %v; the dashboards have %d panel queries, an annotation and the job, instance and team variables", kinds, targets)
	}
	var table, instant bool
	for _, q := range qs {
		table = table || q.Format == "table" && q.Instant
		instant = instant || q.Instant && q.Kind == "panel"
	}
	if !table || !instant {
		t.Error("no instant table query found: Instant or Format is not read")
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"__range": "1h", "__rate_interval": "2m", "job": "ct", "instance": "(a|b)"}
	for expr, want := range map[string]string{
		`rate(x{job=~"$job", instance=~"$instance"}[$__rate_interval])`: `rate(x{job=~"ct", instance=~"(a|b)"}[2m])`,
		`increase(x[${__range}]) > time() - $__range_s`:                 `increase(x[1h]) > time() - 3600`,
		`x{job=~"${job:regex}"} * $__range_ms + [[job]]`:                `x{job=~"ct"} * 3600000 + ct`,
		`x{a="$unknown"}[$__interval]`:                                  `x{a="$unknown"}[$__interval]`,
	} {
		if got := Substitute(expr, vars); got != want {
			t.Errorf("Substitute(%s) = %s, want %s", expr, got, want)
		}
	}
}

// promtool parses every query, substituted as Grafana would.
func TestQueriesParseWithPromtool(t *testing.T) {
	promtool := testenv.Require(t, "promtool", "prometheus")
	qs, err := Queries(".")
	if err != nil {
		t.Fatal(err)
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, q := range qs {
		rules = append(rules, rule{fmt.Sprintf("dashboard:query_%03d", i), Substitute(q.Expr, testVars)})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboards.rules.yml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		var list strings.Builder
		for i, q := range qs {
			fmt.Fprintf(&list, "dashboard:query_%03d  %s\n", i, q)
		}
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, res, list.String())
	}
}

// The trickiest queries give the right numbers on a known history, as
// promtool evaluates them: replicas are counted once, other jobs and old
// issuances are left out, the table's two queries line up.
func TestQueriesEvaluate(t *testing.T) {
	promtool := testenv.Require(t, "promtool", "prometheus")
	qs, err := Queries(".")
	if err != nil {
		t.Fatal(err)
	}
	expr := func(panel, ref string) string {
		for _, q := range qs {
			if q.Kind == "panel" && q.Panel == panel && q.RefID == ref {
				return Substitute(q.Expr, testVars) // $__range_s: 3600
			}
		}
		t.Fatalf("no query %s of panel %q", ref, panel)
		return ""
	}
	// first seen (unix seconds) of each issuance; evaluated at 3h = 10800s,
	// so "in range" means after 7200.
	cert := func(instance, job, tbs, verdict string) string {
		return fmt.Sprintf(`ct_certificate_first_seen_timestamp_seconds{job=%q,instance=%q,watch="example.com",verdict=%q,tbs_sha256=%q,cert_sha256="c-%s",issuer="Some CA",serial="s-%s",subject_cn="www.example.com",dns_names="www.example.com,example.com"}`,
			job, instance, verdict, tbs, tbs, tbs)
	}
	type sample struct {
		Labels string  `yaml:"labels"`
		Value  float64 `yaml:"value"`
	}
	type series struct {
		Series string `yaml:"series"`
		Values string `yaml:"values"`
	}
	input := []series{
		{cert("a:9812", "ct_exporter", "t1", "issuer_unexpected"), "7300x200"},
		{cert("b:9812", "ct_exporter", "t1", "issuer_unexpected"), "7300x200"}, // a replica
		{cert("a:9812", "ct_exporter", "t2", "issuer_unexpected"), "100x200"},  // before the range
		{cert("a:9812", "ct_exporter", "t3", "authorized"), "9000x200"},
		{cert("a:9812", "ct_exporter", "t4", "unreviewed"), "8000x200"},
		{cert("a:9812", "other", "t5", "issuer_unexpected"), "9500x200"}, // another job
		{`ct_certificate_embedded_scts{job="ct_exporter",instance="a:9812",watch="example.com",tbs_sha256="t1"}`, "1x200"},
		{`ct_certificate_embedded_scts{job="ct_exporter",instance="b:9812",watch="example.com",tbs_sha256="t1"}`, "1x200"},
		{`ct_certificate_embedded_scts{job="ct_exporter",instance="a:9812",watch="example.com",tbs_sha256="t3"}`, "3x200"},
		{`ct_certificate_embedded_scts{job="ct_exporter",instance="a:9812",watch="example.com",tbs_sha256="t2"}`, "2x200"},
		{`ct_certificate_series_dropped_total{job="ct_exporter",instance="a:9812",watch="example.com"}`, "0x200"},
		{`ct_watch_info{job="ct_exporter",instance="a:9812",watch="example.com",team="web"}`, "1x200"},
		{`ct_watch_info{job="ct_exporter",instance="b:9812",watch="example.com",team="web"}`, "1x200"},
		{`ct_log_sth_lag_seconds{job="ct_exporter",instance="a:9812",log="argon"}`, "43200x200"},
		{`ct_log_sth_lag_seconds{job="ct_exporter",instance="b:9812",log="argon"}`, "21600x200"},
		{`ct_log_mmd_seconds{job="ct_exporter",instance="a:9812",log="argon"}`, "86400x200"},
		{`ct_log_mmd_seconds{job="ct_exporter",instance="b:9812",log="argon"}`, "86400x200"},
		{`ct_log_sth_lag_seconds{job="ct_exporter",instance="a:9812",log="nommd"}`, "60x200"},
		{`ct_log_mmd_seconds{job="ct_exporter",instance="a:9812",log="nommd"}`, "0x200"},
		{`ct_source_last_success_timestamp_seconds{job="ct_exporter",instance="a:9812",source="crtsh"}`, "10000x200"},
	}
	const table = `{watch="example.com", verdict="%s", tbs_sha256="%s", cert_sha256="c-%[2]s", issuer="Some CA", serial="s-%[2]s", subject_cn="www.example.com", dns_names="www.example.com,example.com"}`
	cases := []struct {
		panel, ref string
		want       []sample
	}{
		{"Unexpected issuer · first seen in range", "A", []sample{{"{}", 1}}},
		{"Unreviewed · first seen in range", "A", []sample{{"{}", 1}}},
		{"New issuances · first seen in range", "A", []sample{{"{}", 3}}},
		{"Awaiting review now", "A", []sample{{"{}", 3}}},
		{"Final certificates with < 2 SCTs", "A", []sample{{"{}", 1}}},
		{"Recent series dropped · in range", "A", []sample{{"{}", 0}}},
		{"Recent issuances", "A", []sample{
			{fmt.Sprintf(table, "issuer_unexpected", "t1"), 7300e3},
			{fmt.Sprintf(table, "authorized", "t3"), 9000e3},
			{fmt.Sprintf(table, "unreviewed", "t4"), 8000e3},
		}},
		{"Recent issuances", "B", []sample{
			{`{watch="example.com", tbs_sha256="t1"}`, 1},
			{`{watch="example.com", tbs_sha256="t3"}`, 3},
		}},
		{"Log summary", "C", []sample{{`{log="argon"}`, 0.5}}},
		{"Source summary", "B", []sample{{`{instance="a:9812", source="crtsh"}`, 800}}},
	}
	var tests []map[string]any
	for _, c := range cases {
		tests = append(tests, map[string]any{"expr": expr(c.panel, c.ref), "eval_time": "3h", "exp_samples": c.want})
	}
	out, err := yaml.Marshal(map[string]any{
		"evaluation_interval": "1m",
		"tests":               []any{map[string]any{"interval": "1m", "input_series": input, "promql_expr_test": tests}},
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboards.test.yml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command(promtool, "test", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, res)
	}
}
