package config

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ct-exporter/ct_exporter/watch"
)

// readsFiles reports whether a configuration could make Parse read files
// outside this directory: authorized_key_files globs are read whole, and a
// fuzzed glob such as /*/* would reach /dev/zero. Such inputs are skipped;
// a glob without a slash only matches this package's own small files.
func readsFiles(data []byte) bool {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return false
	}
	risky := false
	type visit struct {
		n        *yaml.Node
		keyFiles bool
	}
	seen := map[visit]bool{}
	var walk func(n *yaml.Node, keyFiles bool)
	walk = func(n *yaml.Node, keyFiles bool) {
		if n == nil || risky || seen[visit{n, keyFiles}] {
			return
		}
		seen[visit{n, keyFiles}] = true
		if n.Tag == "!!binary" || keyFiles && strings.ContainsAny(n.Value, `/\`) {
			risky = true
			return
		}
		walk(n.Alias, keyFiles)
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i], keyFiles)
				walk(n.Content[i+1], keyFiles || n.Content[i].Value == "authorized_key_files" || n.Content[i].Value == "token_file")
			}
			return
		}
		for _, c := range n.Content {
			walk(c, keyFiles)
		}
	}
	walk(&root, false)
	return risky
}

// FuzzParse: parsing a configuration never panics; an accepted one has a
// policy and only normalized watch domains; every error names the file.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("../config.example.yml"); err == nil {
		f.Add(example)
	} else {
		f.Fatal(err)
	}
	key := "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEr+TzlCzfpie1/rJhgxnIITojqKk9VK+8MZoc08HjtsLzD8e5yjsdeWVhIiWCVk6Y6KomKTYeKGBv6xVu93zQug=="
	for _, s := range []string{
		`
watches:
  - domain: Bücher.Example.
    expected_issuers: ["Let's Encrypt", "/^CN=R1[0-4], O=Let's Encrypt/"]
    authorized_keys: ["` + strings.Repeat("ab", 32) + `"]
    authorized_certificates: ["` + strings.Repeat("0f", 32) + `"]
  - domain: example.org
    include_subdomains: false
  - domain: 192.0.2.0/24
  - domain: 2001:db8::1
sources:
  - name: crtsh
    type: crtsh
  - name: mirror
    type: crtsh
    url: http://mirror.example:8080/
    request_interval: 0s
`,
		`
recent_window: 30d
recent_series_limit: 50
watches: [{domain: example.com}]
sources:
  - {name: r, type: ctlog, url: "https://log.example/", public_key: "` + key + `"}
  - {name: s, type: ctlog, protocol: static, url: "https://tiles.example/", public_key: "` + key + `", start: "1000", requests_per_second: 5, workers: 4, batch_size: 512, mmd: 1d}
  - {name: google, type: loglist, states: [usable, readonly], log_interval: 30s, start: beginning}
  - {name: apple, type: loglist, url: "https://valid.apple.com/ct/log_list/current_log_list.json", max_logs: 50}
`,
		// One watch of each kind, as users write them: a fully qualified
		// name, an internationalized name, IP addresses and prefixes.
		"watches: [{domain: Example.COM.}]\nsources: [{name: c, type: crtsh}]\n",
		"watches: [{domain: bücher.example}]\nsources: [{name: c, type: crtsh}]\n",
		"watches: [{domain: \"2001:DB8::/32\"}, {domain: \"::ffff:192.0.2.1\"}]\nsources: [{name: c, type: crtsh}]\n",
		// Rejected ones.
		"watches: [{domain: example.com}]\nsources: [{name: c, type: crtsh}]\nrecent_windw: 1h\n",
		"watches:\n  - domain: example.com\n    include_subdomain: true\nsources: [{name: c, type: crtsh}]\n",
		"watches: [{domain: example.com}]\nsources:\n  - name: c\n    type: crtsh\n    interval: 1 hour\n",
		"watches:\n  - domain: \"\"\n  - domain: \"*.example.com\"\n  - domain: https://example.com/\n  - domain: com\n  - domain: Example.COM.\n  - domain: example.com\nsources: [{name: c, type: crtsh}]\n",
		"watches: [{domain: example.com}]\nsources:\n  - name: a\n    type: crtsh\n  - name: a\n    type: crtsh\n    url: ftp://x\n  - type: crtsh\n  - name: b\n    type: certspotter\n  - name: d\n    type: carrier-pigeon\n  - name: e\n    type: crtsh\n    interval: 0s\n",
		"watches:\n  - domain: example.com\n    expected_issuers: [\"/[/\"]\n    authorized_keys: [nothex]\n    authorized_certificates: [abcd]\nsources: [{name: c, type: crtsh}]\n",
		"watches:\n  - domain: example.com\n    authorized_key_files: [does-not-exist*.pem]\nsources: [{name: c, type: crtsh}]\n",
		"",
		"recent_window: 1h\n",
		"watches: [{domain: example.com}]\nsources: [{name: c, type: crtsh}]\nrecent_series_limit: many\n",
		"watches: [\n",
		"base: &w {domain: example.com}\nwatches: [*w]\nsources: [{name: c, type: crtsh}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if readsFiles(data) {
			return
		}
		cfg, err := Parse(data, "f.yml")
		if err != nil {
			if cfg != nil {
				t.Fatal("a configuration returned with an error")
			}
			for _, e := range leafErrors(err) {
				if !strings.HasPrefix(e.Error(), "f.yml") {
					t.Fatalf("error does not name the file: %q", e.Error())
				}
			}
			return
		}
		if cfg.Policy == nil {
			t.Fatal("accepted without a policy")
		}
		domains := make([]string, 0, len(cfg.Watches))
		for _, w := range cfg.Watches {
			domains = append(domains, w.Domain)
		}
		for _, w := range cfg.Policy.Watches() {
			domains = append(domains, w.Domain)
		}
		for _, d := range domains {
			if n, why := watch.NormalizeDomain(d); n != d || why != "" {
				t.Fatalf("watch domain %q is not normalized: NormalizeDomain gives %q %s", d, n, why)
			}
		}
	})
}

// leafErrors unpacks errors.Join.
func leafErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}
