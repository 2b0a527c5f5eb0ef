package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ct-exporter/ct_exporter/watch"
)

// ReservedLabelNames are the label names the exporter's own series carry,
// and those Prometheus and Alertmanager give an alert: a watch's labels may
// not take them (collector's tests check the list against every family).
var ReservedLabelNames = []string{
	"watch", "issuer", "verdict", "source", "log", "reason", "check", "error",
	"tbs_sha256", "cert_sha256", "serial", "subject_cn", "dns_names", "le",
	"job", "instance", "alertname", "severity",
	"version", "revision", "branch", "goversion", "goos", "goarch", "tags",
}

// labelName is Prometheus's label name syntax (the classic one, which every
// version takes unquoted).
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// MaxLabelValueLength bounds a watch label's value, as the values taken
// from certificates are.
const MaxLabelValueLength = 256

var typeOfWatches = reflect.TypeFor[[]Watch]()

// compileWatches expands the watches entries, those of the main file and
// those of the watch files, into one watch per domain, checks them and
// compiles c.Policy. The same domain twice is an error naming both places.
func (c *Config) compileWatches(p *problems, root *yaml.Node, dir string) {
	seen := map[string]string{} // domain → file:line
	var out []Watch
	var compiled []watch.Watch
	list, _ := lookup(root, "watches")
	if !has(root, "watches") {
		list = &yaml.Node{Kind: yaml.SequenceNode, Line: 1}
	}
	c.expandWatches(p, c.Watches, list, dir, seen, &out, &compiled)

	for j, g := range c.WatchFiles {
		at := line(root, "watch_files", j)
		pattern := g
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(dir, pattern)
		}
		files, err := filepath.Glob(pattern)
		if err != nil {
			p.add(at, "watch_files %q: %v", g, err)
			continue
		}
		if len(files) == 0 && !hasMeta(g) {
			p.add(at, "watch_files %q: no such file", g)
			continue
		}
		for _, f := range files {
			c.readWatchFile(p, f, dir, seen, &out, &compiled)
		}
	}
	if len(out) == 0 {
		p.add(line(root, "watches"), "no watches: add at least one, such as `watches: [{domain: example.com}]` (or name files of them in watch_files)")
	}
	c.Watches = out
	c.Policy = watch.NewSet(compiled)
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// readWatchFile reads one watch file: a YAML list of watches entries,
// checked as strictly as the main file's, every error naming the file.
func (c *Config) readWatchFile(p *problems, path, dir string, seen map[string]string, out *[]Watch, compiled *[]watch.Watch) {
	fp := &problems{file: path}
	defer func() { p.errs = append(p.errs, fp.errs...) }()
	data, err := os.ReadFile(path)
	if err != nil {
		fp.errs = append(fp.errs, fmt.Errorf("%s: %w", path, err))
		return
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		fp.errs = append(fp.errs, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: ")))
		return
	}
	if len(root.Content) == 0 {
		return // an empty file watches nothing
	}
	list := root.Content[0]
	if list.Kind != yaml.SequenceNode {
		fp.add(list.Line, "a watch file is a YAML list of watches entries, such as `- domain: example.com`")
		return
	}
	checkKeys(fp, list, typeOfWatches, "watches")
	if len(fp.errs) > 0 {
		return
	}
	var ws []Watch
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&ws); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, e := range te.Errors {
				fp.addRaw(e)
			}
			return
		}
		fp.errs = append(fp.errs, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: ")))
		return
	}
	// Key files named in a watch file are relative to the main file's
	// directory, as everything else is.
	c.expandWatches(fp, ws, list, dir, seen, out, compiled)
}

// expandWatches checks the entries of one list (list is its YAML node) and
// appends one watch per domain to out and compiled.
func (c *Config) expandWatches(p *problems, entries []Watch, list *yaml.Node, dir string, seen map[string]string, out *[]Watch, compiled *[]watch.Watch) {
	for i := range entries {
		w := &entries[i]
		entry, _ := lookup(list, i)
		where := fmt.Sprintf("watch entry at line %d", entry.Line)
		switch {
		case w.Domain != "" && len(w.Domains) > 0:
			p.add(line(entry, "domains"), "%s has both domain and domains: use one (domains: [%s, …])", where, w.Domain)
			continue
		case w.Domain == "" && len(w.Domains) == 0 && !has(entry, "domain"):
			p.add(entry.Line, "%s has no domain: give domain: example.com, or domains: [example.com, example.org]", where)
			continue
		}
		type named struct {
			raw  string
			line int
		}
		var domains []named
		if len(w.Domains) == 0 {
			domains = []named{{w.Domain, line(entry, "domain")}}
		} else {
			for j, d := range w.Domains {
				domains = append(domains, named{d, line(entry, "domains", j)})
			}
		}
		name := domains[0].raw
		if len(domains) > 1 {
			name = fmt.Sprintf("group %s (%d domains)", name, len(domains))
		}

		// The policy, compiled once for the whole group.
		if w.IncludeSubdomains == nil {
			t := true
			w.IncludeSubdomains = &t
		}
		var issuers []watch.IssuerMatcher
		for j, e := range w.ExpectedIssuers {
			m, err := watch.ParseIssuerMatcher(e)
			if err != nil {
				p.add(line(entry, "expected_issuers", j), "watch %s: %v", name, err)
				continue
			}
			issuers = append(issuers, m)
		}
		keys := hashes(p, entry, "authorized_keys", w.AuthorizedKeys,
			"watch %s: authorized key %q is not a SHA-256 in hex (64 hex digits, the SPKI SHA-256 crt.sh and Cert Spotter show)", name)
		for j, g := range w.AuthorizedKeyFiles {
			fileKeys, err := readKeyFiles(g, dir)
			if err != nil {
				p.add(line(entry, "authorized_key_files", j), "watch %s: %v", name, err)
				continue
			}
			for _, h := range fileKeys {
				keys[h] = struct{}{}
			}
		}
		certs := hashes(p, entry, "authorized_certificates", w.AuthorizedCertificates,
			"watch %s: authorized certificate %q is not a tbs_sha256 in hex (64 hex digits)", name)
		checkLabels(p, entry, w.Labels, name)

		for _, d := range domains {
			domain, why := watch.NormalizeDomain(d.raw)
			if why != "" {
				p.add(d.line, "watch domain %q: %s", d.raw, why)
				continue
			}
			here := fmt.Sprintf("%s:%d", p.file, d.line)
			if prev, dup := seen[domain]; dup {
				if i := strings.LastIndexByte(prev, ':'); prev[:i] == p.file {
					prev = "line " + prev[i+1:]
				}
				p.add(d.line, "watch %s is configured twice (also at %s): keep one", domain, prev)
				continue
			}
			seen[domain] = here
			cw := watch.NewWatch(domain, *w.IncludeSubdomains)
			cw.ExpectedIssuers = issuers
			cw.AuthorizedKeys = keys
			cw.AuthorizedCerts = certs
			cw.Labels = w.Labels
			one := *w
			one.Domain, one.Domains, one.File = domain, nil, here
			*out = append(*out, one)
			*compiled = append(*compiled, cw)
		}
	}
}

// checkLabels checks a watch's label names: Prometheus syntax, not
// reserved to Prometheus (__), none the exporter's series or alerts carry.
func checkLabels(p *problems, entry *yaml.Node, labels map[string]string, name string) {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		at := labelKeyLine(entry, k)
		switch {
		case !labelName.MatchString(k):
			p.add(at, "watch %s: label name %q is not a Prometheus label name (letters, digits and _, not starting with a digit)", name, k)
		case strings.HasPrefix(k, "__"):
			p.add(at, "watch %s: label name %q: names starting with __ are reserved to Prometheus", name, k)
		case slices.Contains(ReservedLabelNames, k):
			p.add(at, "watch %s: label name %q is one the exporter's series or alerts already carry (%s): choose another", name, k, strings.Join(ReservedLabelNames, ", "))
		case len(labels[k]) > MaxLabelValueLength:
			p.add(at, "watch %s: label %s: its value is longer than %d bytes", name, k, MaxLabelValueLength)
		}
	}
}

// labelKeyLine is the line of a label's key in an entry's labels mapping.
func labelKeyLine(entry *yaml.Node, key string) int {
	m, ok := lookup(entry, "labels")
	if ok && m.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i].Line
			}
		}
	}
	return m.Line
}
