package examples

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/pgstate"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

type historyDashboard struct {
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Datasource struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
			RawSQL string `json:"rawSql"`
		} `json:"targets"`
	} `json:"panels"`
}

var (
	timeFilter = regexp.MustCompile(`\$__timeFilter\((\w+)\)`)
	timeGroup  = regexp.MustCompile(`\$__timeGroupAlias\((\w+), '1d'\)`)
)

// expand does what Grafana's PostgreSQL data source does with the macros
// and variables the dashboard uses.
func expand(sql string, from, to time.Time) string {
	sql = timeFilter.ReplaceAllString(sql, `$1 BETWEEN '`+from.Format(time.RFC3339)+`' AND '`+to.Format(time.RFC3339)+`'`)
	sql = timeGroup.ReplaceAllString(sql, `floor(extract(epoch from $1)/86400)*86400 AS "time"`)
	return strings.ReplaceAll(sql, "$watch", "'example.com'")
}

// The history dashboard reads only the stable views (docs/sql.md), through
// its PostgreSQL data source variable, and its queries run against a real
// database: the certificates of the watch chosen, over the time range.
func TestHistoryDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/ct_exporter-history.json")
	if err != nil {
		t.Fatal(err)
	}
	var d historyDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID != "ct-exporter-history" {
		t.Errorf("uid %q", d.UID)
	}
	var sqls []string
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "query" {
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Fatalf("variable %s: %v", v.Name, err)
			}
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s does not use the datasource variable", v.Name)
			}
			sqls = append(sqls, q)
		}
	}
	if !vars["datasource"] || !vars["watch"] {
		t.Errorf("variables %v: want datasource and watch", vars)
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.Type != "grafana-postgresql-datasource" || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: data source %+v", p.Title, tg.Datasource)
			}
			if !strings.Contains(tg.RawSQL, "$__timeFilter(first_seen)") || !strings.Contains(tg.RawSQL, "watch IN ($watch)") {
				t.Errorf("panel %q ignores the time range or the watch: %s", p.Title, tg.RawSQL)
			}
			sqls = append(sqls, tg.RawSQL)
		}
	}
	tables := regexp.MustCompile(`(?i)\b(FROM|JOIN)\s+(\w+)`)
	for _, q := range sqls {
		for _, m := range tables.FindAllStringSubmatch(q, -1) {
			if m[2] != "ct_certificates" && m[2] != "ct_counters" {
				t.Errorf("a query reads %s, not a stable view: %s", m[2], q)
			}
		}
	}

	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "history")
	c := storetest.NewClock()
	s, err := pgstate.Open(url, pgstate.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPolicy(storetest.Unchanged(time.Hour, 100)); err != nil {
		t.Fatal(err)
	}
	from := c.Now()
	// Issuances over 200 days: far beyond any recent_window.
	for i := 0; i < 20; i++ {
		storetest.Observe(t, s, storetest.Issuance(i, c.Now()), state.Match{Watch: "example.com", Verdict: watch.Unreviewed})
		storetest.Observe(t, s, storetest.Issuance(1000+i, c.Now()), state.Match{Watch: "other.example", Verdict: watch.Unreviewed})
		c.Advance(10 * 24 * time.Hour)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for i, q := range sqls {
		sql := expand(q, from, c.Now())
		if strings.Contains(sql, "$") {
			t.Fatalf("unexpanded macro or variable: %s", sql)
		}
		rows, err := conn.Query(context.Background(), sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if n == 0 {
			t.Errorf("no rows: %s", sql)
		}
		if strings.Contains(q, "LIMIT") && n != 20 {
			t.Errorf("query %d: %d certificates of example.com, want 20", i, n)
		}
	}
}

// The compose Grafana has a PostgreSQL data source on the exporters'
// database (the password from postgres.env, not the file), and provisions
// the history dashboard from examples/grafana/.
func TestComposeGrafanaHistory(t *testing.T) {
	c := readCompose(t)
	g := c.Services["grafana"]
	root := containerFS(t, g)
	prov := filepath.Join(root, "etc/grafana/provisioning")
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Type     string `yaml:"type"`
			URL      string `yaml:"url"`
			User     string `yaml:"user"`
			JSONData struct {
				Database string `yaml:"database"`
			} `yaml:"jsonData"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov, "datasources/postgres.yml"), &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		t.Fatalf("data sources %+v: want one", ds)
	}
	d := ds.Datasources[0]
	stateURL, err := url.Parse(commandFlag(c.Services["ct_exporter"], "state.url"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != "grafana-postgresql-datasource" || d.URL != stateURL.Host || d.User != stateURL.User.Username() ||
		d.JSONData.Database != strings.TrimPrefix(stateURL.Path, "/") {
		t.Errorf("data source %+v is not the exporters' database %s", d, stateURL.Redacted())
	}
	if d.SecureJSONData["password"] != "$PGPASSWORD" || !slices.Contains(g.EnvFile, "postgres.env") {
		t.Errorf("the data source's password is not $PGPASSWORD from postgres.env: %v, env_file %v", d.SecureJSONData, g.EnvFile)
	}

	var dp struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov, "dashboards/history.yml"), &dp)
	if len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
		t.Fatalf("providers %+v", dp)
	}
	data, err := os.ReadFile(filepath.Join(root, dp.Providers[0].Options.Path, "ct_exporter-history.json"))
	if err != nil {
		t.Fatalf("the history dashboard is not at the provider's path: %v", err)
	}
	var h struct {
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	for _, v := range h.Templating.List {
		if v.Name == "datasource" && string(v.Query) != `"`+d.Type+`"` {
			t.Errorf("the datasource variable selects %s, the data source is %s", v.Query, d.Type)
		}
	}
}
