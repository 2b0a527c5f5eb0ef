// Package dashboards holds ct_exporter's Grafana dashboards (the *.json files
// here, rendered from the *.jsonnet sources) and lists their queries, so that
// tests can run every query a dashboard would send against a real Prometheus.
package dashboards

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Query is one PromQL query of a dashboard.
type Query struct {
	Dashboard string // file name, e.g. "ct_exporter-overview.json"
	Kind      string // "panel", "annotation" or "variable"
	PanelID   int    // 0 for annotations and variables
	Panel     string // the panel's title, or the annotation's or variable's name
	RefID     string
	Expr      string // as in the dashboard: Grafana variables not substituted
	Instant   bool   // an instant query at the end of the time range (else a range query)
	Format    string // "time_series", "table" or "heatmap"
}

func (q Query) String() string {
	return fmt.Sprintf("%s: %s %q %s", q.Dashboard, q.Kind, q.Panel, q.RefID)
}

type dashboardFile struct {
	Annotations struct {
		List []struct {
			BuiltIn int    `json:"builtIn"`
			Name    string `json:"name"`
			Expr    string `json:"expr"`
			Target  *struct {
				Expr string `json:"expr"`
			} `json:"target"`
		} `json:"list"`
	} `json:"annotations"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int     `json:"id"`
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Targets []struct {
		RefID   string `json:"refId"`
		Expr    string `json:"expr"`
		Instant *bool  `json:"instant"`
		Range   *bool  `json:"range"`
		Format  string `json:"format"`
	} `json:"targets"`
}

// labelValues matches a query variable's label_values(selector, label).
var labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)
var queryResult = regexp.MustCompile(`^\s*query_result\((.+)\)\s*$`)

// Queries lists every query of every dashboard (*.json) in dir, in file
// order: the query variables' series selectors (label_values(selector,
// label) becomes the instant query selector), the annotations' queries, then
// every panel's targets, rows' nested panels included.
func Queries(dir string) ([]Query, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Query
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var d dashboardFile
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		name := filepath.Base(file)
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			q, err := variableQuery(v.Query)
			if err != nil {
				return nil, fmt.Errorf("%s: variable %s: %w", file, v.Name, err)
			}
			expr := ""
			if m := labelValues.FindStringSubmatch(q); m != nil {
				expr = strings.TrimSpace(m[1])
			} else if m := queryResult.FindStringSubmatch(q); m != nil {
				expr = strings.TrimSpace(m[1])
			}
			if expr != "" {
				out = append(out, Query{Dashboard: name, Kind: "variable", Panel: v.Name, RefID: v.Name,
					Expr: expr, Instant: true, Format: "time_series"})
			}
		}
		for _, a := range d.Annotations.List {
			expr := a.Expr
			if expr == "" && a.Target != nil {
				expr = a.Target.Expr
			}
			if a.BuiltIn != 0 || expr == "" {
				continue
			}
			out = append(out, Query{Dashboard: name, Kind: "annotation", Panel: a.Name, RefID: "Anno",
				Expr: expr, Format: "time_series"})
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				for _, t := range p.Targets {
					format := t.Format
					if format == "" {
						format = "time_series"
					}
					instant := t.Instant != nil && *t.Instant && (t.Range == nil || !*t.Range)
					out = append(out, Query{Dashboard: name, Kind: "panel", PanelID: p.ID, Panel: p.Title,
						RefID: t.RefID, Expr: t.Expr, Instant: instant, Format: format})
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
	}
	return out, nil
}

// variableQuery returns a query variable's query, stored as a string or as
// an object with a query field.
func variableQuery(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", err
	}
	return o.Query, nil
}

var variableRef = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]`)

// Substitute replaces the Grafana variables in expr ($name, ${name},
// ${name:format}, [[name]]) with their values in vars, as Grafana would
// render them (for a regex matcher such as instance=~"$instance" the value is
// a regex, e.g. ".+" or "(a|b)"). Variables not in vars are left as they are.
// When vars has $__range, $__interval or $__rate_interval as Prometheus
// durations, the _s and _ms forms ($__range_s, ...) are derived from them
// unless given.
//
// The dashboards use $__rate_interval, $__range, $__range_s, $__interval,
// $job and $instance; for example
//
//	Substitute(q.Expr, map[string]string{"__rate_interval": "1m", "__range": "1h",
//		"__interval": "15s", "job": "ct_exporter", "instance": ".+"})
func Substitute(expr string, vars map[string]string) string {
	all := make(map[string]string, len(vars)+6)
	for _, base := range []string{"__range", "__interval", "__rate_interval"} {
		v, ok := vars[base]
		if !ok {
			continue
		}
		d, err := model.ParseDuration(v)
		if err != nil {
			continue
		}
		all[base+"_s"] = strconv.FormatInt(int64(time.Duration(d).Round(time.Second)/time.Second), 10)
		all[base+"_ms"] = strconv.FormatInt(time.Duration(d).Milliseconds(), 10)
	}
	for k, v := range vars {
		all[k] = v
	}
	return variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		if v, ok := all[m[1]+m[2]+m[3]]; ok {
			return v
		}
		return ref
	})
}
