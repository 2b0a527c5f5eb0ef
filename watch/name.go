// Package watch decides which watches a certificate concerns and what verdict
// each gives it. Everything here is a pure function of its arguments: no I/O.
package watch

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// NormalizeName puts a name from a certificate or from the configuration in
// the form matching compares: lower case, A-labels (punycode) for
// internationalized labels, no trailing dot. Certificate fields are
// attacker-controlled, so a name IDNA rejects is not an error: it is lower-cased
// and still matched by label suffix.
func NormalizeName(name string) string {
	name = strings.TrimSuffix(name, ".")
	if isASCII(name) {
		return strings.ToLower(name)
	}
	prefix := ""
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		prefix, name = "*.", rest
	}
	if a, err := idna.Lookup.ToASCII(name); err == nil {
		return prefix + a
	}
	// IDNA refuses the name as a whole (an underscore in one label, say):
	// label by label, so that x_y.bücher.example still ends in the
	// A-label a watch on bücher.example holds.
	labels := strings.Split(name, ".")
	for i, l := range labels {
		if isASCII(l) {
			labels[i] = strings.ToLower(l)
		} else if a, err := idna.Lookup.ToASCII(l); err == nil {
			labels[i] = a
		} else if a, err := idna.Punycode.ToASCII(strings.ToLower(l)); err == nil {
			labels[i] = a
		} else {
			labels[i] = strings.ToLower(l)
		}
	}
	return prefix + strings.Join(labels, ".")
}

// NormalizeDomain validates and normalizes a domain written in the
// configuration. It returns the reason when the domain cannot be watched.
func NormalizeDomain(domain string) (string, string) {
	d := strings.TrimSpace(domain)
	if d == "" {
		return "", "the domain is empty"
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return netip.MustParseAddr(d).Unmap().String(), ""
	}
	if p, err := netip.ParsePrefix(d); err == nil {
		return p.Masked().String(), ""
	}
	if strings.HasPrefix(d, "*.") {
		return "", "wildcards are not domains: watch " + strings.TrimPrefix(d, "*.") + " with include_subdomains: true"
	}
	if strings.Contains(d, "://") || strings.ContainsAny(d, "/:@ ") {
		return "", "a domain is a host name such as example.com, not a URL"
	}
	a, err := idna.Lookup.ToASCII(strings.TrimSuffix(d, "."))
	if err != nil {
		return "", "not a valid host name: " + err.Error()
	}
	a = strings.ToLower(a)
	// IDNA accepts a root label, so "example.com.." would keep a dot.
	if strings.HasSuffix(a, ".") || strings.Contains(a, "..") {
		return "", "not a valid host name: empty label"
	}
	if !strings.Contains(a, ".") {
		return "", "a top-level domain alone cannot be watched"
	}
	// DNS's limit; it also bounds the state keys a watch is part of.
	if len(a) > 253 {
		return "", "not a valid host name: longer than 253 characters"
	}
	return a, ""
}

// Escape renders an attacker-controlled string for display and label values:
// printable ASCII is kept, everything else becomes a \x or \u escape, and the
// backslash itself is escaped, so two different inputs never look alike.
func Escape(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r >= 0x20 && r <= 0x7e:
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, `\u{%x}`, r)
		}
		i += size
	}
	return b.String()
}

// MaxLabel bounds a label value taken from a certificate or an upstream.
const MaxLabel = 256

// Label renders an attacker-controlled string as a label value: escaped
// (see Escape) and at most MaxLabel bytes. A longer value is cut and ends
// with "…" and the first 8 hex digits of the SHA-256 of the whole value,
// so that two different long values stay two label values. A certificate
// with a 40,000-character issuer must cost neither a 40 kB series nor a
// state key bbolt refuses.
func Label(s string) string {
	e := Escape(s)
	if len(e) <= MaxLabel {
		return e
	}
	sum := sha256.Sum256([]byte(s))
	tail := "…" + hex.EncodeToString(sum[:4])
	return e[:MaxLabel-len(tail)] + tail
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
