package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const referenceFile = "../docs/configuration.md"

// allTypes are the source types the reference must describe. A type the
// code knows by name but does not accept yet (no keysOf entry) may be
// documented ahead of its implementation: see pendingType.
var allTypes = []string{TypeCrtsh, TypeCertspotter, TypeCTLog, TypeLogList}

// pendingType reports whether a source type is documented ahead of the code:
// its keys cannot be checked against the structs until it is accepted.
func pendingType(typ string) bool { _, ok := keysOf[typ]; return !ok }

// refRow is one key row of a table in the reference.
type refRow struct {
	context string // "" (top level), "watches" or "sources"
	typ     string // the source type of the section, "" for common keys
	key     string
	kind    string // the type column
	def     string // the default column
	line    int
}

// refExample is a YAML block of the reference marked as a full configuration.
type refExample struct {
	yaml  string
	files []string
	line  int
}

var (
	refRowRE     = regexp.MustCompile("^\\| `([a-z_]+)` \\|")
	refTypeRE    = regexp.MustCompile("^### `type: ([a-z0-9]+)`$")
	fullConfigRE = regexp.MustCompile(`^<!-- full config(?:; files: (.*))? -->$`)
	backticked   = regexp.MustCompile("^`([^`]*)`$")
)

// readReference parses the key tables and the full-configuration examples of
// docs/configuration.md. Tables are attributed to the heading above them.
func readReference(t *testing.T) ([]refRow, []refExample, map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	var (
		rows      []refRow
		examples  []refExample
		typeSeen  = map[string]bool{}
		context   = "-"
		typ       string
		fence     *refExample
		unmarked  bool
		pendingEx *refExample
	)
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		n := i + 1
		if fence != nil || unmarked {
			if strings.HasPrefix(line, "```") {
				if fence != nil {
					examples = append(examples, *fence)
				}
				fence, unmarked = nil, false
				continue
			}
			if fence != nil {
				fence.yaml += line + "\n"
			}
			continue
		}
		if strings.HasPrefix(line, "```") {
			if pendingEx != nil && strings.HasPrefix(line, "```yaml") {
				fence, pendingEx = pendingEx, nil
				fence.line = n
			} else {
				unmarked, pendingEx = true, nil
				// A block that is a whole configuration must be marked, so
				// that the test parses it.
				if strings.HasPrefix(line, "```yaml") && isWholeConfig(lines[i+1:]) {
					t.Errorf("%s:%d: a YAML block with watches and sources is not marked <!-- full config -->", referenceFile, n)
				}
			}
			continue
		}
		if m := fullConfigRE.FindStringSubmatch(line); m != nil {
			pendingEx = &refExample{}
			for _, f := range strings.Split(m[1], ",") {
				if f = strings.TrimSpace(f); f != "" {
					pendingEx.files = append(pendingEx.files, f)
				}
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "## "):
			typ = ""
			switch strings.TrimPrefix(line, "## ") {
			case "Top level":
				context = ""
			case "`watches`":
				context = "watches"
			case "`sources`":
				context = "sources"
			default:
				context = "-"
			}
		case strings.HasPrefix(line, "### "):
			m := refTypeRE.FindStringSubmatch(line)
			if context != "sources" || m == nil {
				context, typ = "-", ""
				continue
			}
			typ = m[1]
			typeSeen[typ] = true
		case context != "-" && refRowRE.MatchString(line):
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) != 4 {
				t.Errorf("%s:%d: a key row has %d cells, want 4 (key, type, default, meaning)", referenceFile, n, len(cells))
				continue
			}
			for j := range cells {
				cells[j] = strings.TrimSpace(cells[j])
			}
			rows = append(rows, refRow{context: context, typ: typ, key: strings.Trim(cells[0], "`"), kind: cells[1], def: cells[2], line: n})
		}
	}
	return rows, examples, typeSeen
}

func isWholeConfig(rest []string) bool {
	var watches, sources bool
	for _, l := range rest {
		if strings.HasPrefix(l, "```") {
			break
		}
		watches = watches || strings.HasPrefix(l, "watches:")
		sources = sources || strings.HasPrefix(l, "sources:")
	}
	return watches && sources
}

// schemaKeys collects the YAML keys of the configuration structs, by the
// path of the list or mapping they are in ("" for the top level), following
// nested structs: a field added anywhere shows up here.
func schemaKeys(t reflect.Type, path string, out map[string]map[string]reflect.Type) {
	if out[path] == nil {
		out[path] = map[string]reflect.Type{}
	}
	for name, f := range yamlFields(t) {
		out[path][name] = f.Type
		inner := f.Type
		for inner.Kind() == reflect.Pointer || inner.Kind() == reflect.Slice {
			inner = inner.Elem()
		}
		if inner.Kind() == reflect.Struct {
			schemaKeys(inner, strings.TrimPrefix(path+"."+name, "."), out)
		}
	}
}

// The reference and the structs name the same keys, and each source type's
// table lists exactly the keys that type accepts.
func TestReferenceDocumentsEveryKey(t *testing.T) {
	rows, examples, typeSeen := readReference(t)
	if len(rows) == 0 || len(examples) == 0 {
		t.Fatalf("%s: found %d key rows and %d full examples: has its format changed?", referenceFile, len(rows), len(examples))
	}
	schema := map[string]map[string]reflect.Type{}
	schemaKeys(typeOfConfig, "", schema)
	if want := []string{"", "sources", "watches"}; !slices.Equal(sortedPaths(schema), want) {
		t.Fatalf("the configuration has key contexts %q; the reference has sections for %q: add a section for the new one", sortedPaths(schema), want)
	}

	documented := map[string]map[string][]refRow{}
	for _, r := range rows {
		if documented[r.context] == nil {
			documented[r.context] = map[string][]refRow{}
		}
		documented[r.context][r.key] = append(documented[r.context][r.key], r)
	}
	for ctx, keys := range schema {
		for k := range keys {
			if len(documented[ctx][k]) == 0 {
				t.Errorf("%s: key %q (%s) is not documented: add a table row for it", referenceFile, k, describeContext(ctx))
			}
		}
	}
	for ctx, keys := range documented {
		for k, rs := range keys {
			if _, ok := schema[ctx][k]; ok {
				continue
			}
			// Only a type documented ahead of its implementation may name
			// keys the structs do not have yet.
			for _, r := range rs {
				if r.typ == "" || !pendingType(r.typ) {
					t.Errorf("%s:%d: key %q (%s) is not a key of the configuration", referenceFile, r.line, k, describeContext(ctx))
				} else {
					t.Logf("%s:%d: %q of type %s is documented ahead of the code", referenceFile, r.line, k, r.typ)
				}
			}
		}
	}

	for _, typ := range allTypes {
		if !typeSeen[typ] {
			t.Errorf("%s: no section \"### `type: %s`\"", referenceFile, typ)
		}
	}
	for typ := range typeSeen {
		if !slices.Contains(allTypes, typ) {
			t.Errorf("%s: section for source type %q, which the code does not know", referenceFile, typ)
		}
	}
	for typ, keys := range keysOf {
		var got []string
		for _, r := range rows {
			if r.context == "sources" && r.typ == typ {
				got = append(got, r.key)
			}
		}
		sort.Strings(got)
		want := slices.Sorted(slices.Values(keys))
		if !slices.Equal(got, want) {
			t.Errorf("%s: type %s documents keys %q; it takes %q", referenceFile, typ, got, want)
		}
	}
	var common []string
	for _, r := range rows {
		if r.context == "sources" && r.typ == "" {
			common = append(common, r.key)
		}
	}
	if sort.Strings(common); !slices.Equal(common, []string{"name", "type"}) {
		t.Errorf("%s: the keys every source has are documented as %q, want name and type", referenceFile, common)
	}

	// The type column says what the field is.
	for _, r := range rows {
		ft, ok := schema[r.context][r.key]
		if !ok {
			continue
		}
		if want := docKind(ft); !strings.HasPrefix(r.kind, want) && !(want == "string" && (strings.HasPrefix(r.kind, "URL") || r.kind == "path")) {
			t.Errorf("%s:%d: %s is documented as %q; its Go type %s reads as %q", referenceFile, r.line, r.key, r.kind, ft, want)
		}
	}
}

func sortedPaths(m map[string]map[string]reflect.Type) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

func describeContext(ctx string) string {
	if ctx == "" {
		return "top level"
	}
	return "in " + ctx
}

// docKind is how the reference's type column starts for a Go type.
func docKind(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Map:
		return "map"
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Bool, t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() == reflect.Int:
		return "integer"
	case t.Kind() == reflect.Float64:
		return "number"
	}
	return "string"
}

// testPublicKey is a base64 DER SubjectPublicKeyInfo, as public_key takes.
func testPublicKey(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// The default column holds what Parse fills in when a key is left out, and
// a key documented as required cannot be left out.
func TestReferenceDefaultsAreTheCodes(t *testing.T) {
	rows, _, _ := readReference(t)
	sample := map[string]any{ // a valid value for each required key
		"watches":    []any{map[string]any{"domain": "example.com"}},
		"sources":    []any{map[string]any{"name": "s", "type": TypeCrtsh}},
		"domain":     "example.com",
		"name":       "s",
		"url":        "http://127.0.0.1:1/",
		"public_key": testPublicKey(t),
	}
	type section struct{ context, typ string }
	required := map[section][]string{}
	for _, r := range rows {
		if r.def == "required" {
			s := section{r.context, r.typ}
			required[s] = append(required[s], r.key)
		}
	}
	// minimal is the smallest configuration with a section's required keys;
	// drop leaves one of them out.
	minimal := func(s section, drop string) []byte {
		entry := map[string]any{}
		for _, k := range append(required[s], required[section{s.context, ""}]...) {
			if k != drop {
				entry[k] = sample[k]
			}
		}
		if s.context == "sources" {
			if drop != "type" {
				entry["type"] = cmpOr(s.typ, TypeCrtsh)
			}
		}
		cfg := map[string]any{"watches": sample["watches"], "sources": sample["sources"]}
		switch s.context {
		case "":
			cfg = entry
		case "watches":
			cfg["watches"] = []any{entry}
		case "sources":
			cfg["sources"] = []any{entry}
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	checked := 0
	for _, r := range rows {
		if r.typ != "" && pendingType(r.typ) {
			continue
		}
		s := section{r.context, r.typ}
		if r.def == "required" {
			if _, err := Parse(minimal(s, r.key), "test.yml"); err == nil {
				t.Errorf("%s:%d: %s is documented as required, but a configuration without it is valid", referenceFile, r.line, r.key)
			}
			continue
		}
		m := backticked.FindStringSubmatch(r.def)
		if m == nil {
			continue // a default in words, such as "256 for rfc6962, 1024 for static"
		}
		cfg, err := Parse(minimal(s, ""), "test.yml")
		if err != nil {
			t.Fatalf("%s:%d: the minimal configuration of this section does not parse: %v", referenceFile, r.line, err)
		}
		var holder reflect.Value
		switch r.context {
		case "":
			holder = reflect.ValueOf(cfg).Elem()
		case "watches":
			holder = reflect.ValueOf(&cfg.Watches[0]).Elem()
		case "sources":
			holder = reflect.ValueOf(&cfg.Sources[0]).Elem()
		}
		f, ok := yamlFields(holder.Type())[r.key]
		if !ok {
			continue // reported by TestReferenceDocumentsEveryKey
		}
		want := reflect.New(f.Type)
		if err := yaml.Unmarshal([]byte(m[1]), want.Interface()); err != nil {
			t.Errorf("%s:%d: default %s of %s does not read as a %s: %v", referenceFile, r.line, r.def, r.key, f.Type, err)
			continue
		}
		if got := holder.FieldByIndex(f.Index); !reflect.DeepEqual(got.Interface(), want.Elem().Interface()) {
			t.Errorf("%s:%d: %s (%s) is documented with default %s; the code applies %v", referenceFile, r.line, r.key, cmpOr(r.typ, describeContext(r.context)), r.def, pretty(got))
		}
		checked++
	}
	if checked < 10 {
		t.Errorf("only %d documented defaults were checked: has the default column's format changed?", checked)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func pretty(v reflect.Value) any {
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		return v.Elem().Interface()
	}
	return v.Interface()
}

// Every example marked as a full configuration is one, with the files it
// names in place (certificates for .pem files).
func TestReferenceExamplesParse(t *testing.T) {
	_, examples, _ := readReference(t)
	for _, ex := range examples {
		dir := t.TempDir()
		for _, f := range ex.files {
			path := filepath.Join(dir, f)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			content := []byte("{}\n")
			switch {
			case strings.HasSuffix(f, "pubkey.pem"): // a log list's key
				content = publicKeyPEM(t)
			case strings.HasSuffix(f, ".pem"):
				content = endEntityPEM(t)
			case strings.HasSuffix(f, ".yml"): // a watch file
				content = []byte("- domain: " + strings.TrimSuffix(filepath.Base(f), ".yml") + ".example\n")
			}
			if err := os.WriteFile(path, content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "ct_exporter.yml")
		if err := os.WriteFile(path, []byte(ex.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err != nil {
			t.Errorf("%s:%d: the example does not load:\n%v", referenceFile, ex.line, err)
			continue
		}
		if len(cfg.Watches) == 0 || len(cfg.Sources) == 0 {
			t.Errorf("%s:%d: the example watches nothing", referenceFile, ex.line)
		}
	}
}

// publicKeyPEM is a PUBLIC KEY block, as Google's log_list_pubkey.pem.
func publicKeyPEM(t *testing.T) []byte {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(testPublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func endEntityPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "www.example.com"},
		DNSNames:     []string{"www.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
