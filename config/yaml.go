package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// problems collects every error of a file, so a user fixes them in one go.
type problems struct {
	file string
	errs []error
}

func (p *problems) add(line int, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s", p.file, line, fmt.Sprintf(format, args...)))
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// addRaw adds a yaml type error ("line 7: cannot unmarshal …").
func (p *problems) addRaw(e string) {
	if m := yamlLine.FindStringSubmatch(e); m != nil {
		n, _ := strconv.Atoi(m[1])
		p.add(n, "%s", m[2])
		return
	}
	p.errs = append(p.errs, fmt.Errorf("%s: %s", p.file, e))
}

func (p *problems) err() error { return errors.Join(p.errs...) }

var typeOfConfig = reflect.TypeFor[Config]()

// checkKeys walks the YAML tree beside the Go types it decodes into and
// reports every key no field takes, with its line and the keys that exist.
// (yaml's own KnownFields stops at the first and names Go types.)
func checkKeys(p *problems, n *yaml.Node, t reflect.Type, where string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				p.add(k.Line, "unknown key %q in %s; the keys are: %s", k.Value, where, strings.Join(sortedKeys(fields), ", "))
				continue
			}
			checkKeys(p, v, f.Type, fmt.Sprintf("%s.%s", where, k.Value))
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			checkKeys(p, item, t.Elem(), describeItem(where, i, item))
		}
	}
}

// describeItem names a list entry the way a user finds it in the file.
func describeItem(list string, i int, item *yaml.Node) string {
	if item.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(item.Content); j += 2 {
			if k := item.Content[j].Value; k == "domain" || k == "name" {
				return fmt.Sprintf("%s entry %q", strings.TrimPrefix(list, "the configuration."), item.Content[j+1].Value)
			}
		}
	}
	return fmt.Sprintf("%s entry %d", strings.TrimPrefix(list, "the configuration."), i+1)
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f
	}
	return fields
}

func sortedKeys(m map[string]reflect.StructField) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// lookup follows a path of mapping keys and sequence indices. It returns
// the deepest node reached, and whether the whole path exists.
func lookup(n *yaml.Node, path ...any) (*yaml.Node, bool) {
	for _, step := range path {
		var next *yaml.Node
		switch s := step.(type) {
		case string:
			next = mappingValue(n, s)
		case int:
			if n.Kind == yaml.SequenceNode && s < len(n.Content) {
				next = n.Content[s]
			}
		}
		if next == nil {
			return n, false
		}
		n = next
	}
	return n, true
}

// line is the line of the value at path, or of the deepest node on the way
// when it is absent: a trailing "" key gives the line of the entry itself.
func line(n *yaml.Node, path ...any) int {
	found, _ := lookup(n, path...)
	return found.Line
}

// has reports whether the file sets the value at path.
func has(n *yaml.Node, path ...any) bool {
	_, ok := lookup(n, path...)
	return ok
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// yamlKeys lists the keys of the mapping at path.
func yamlKeys(n *yaml.Node, path ...any) []string {
	m, ok := lookup(n, path...)
	if !ok || m.Kind != yaml.MappingNode {
		return nil
	}
	keys := make([]string, 0, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		keys = append(keys, m.Content[i].Value)
	}
	return keys
}
