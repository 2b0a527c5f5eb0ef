package watch

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLabel: a label value taken from a certificate is at most MaxLabel
// bytes of valid UTF-8, printable ASCII but for the "…" of a cut value; a
// short printable value is unchanged; a cut value ends with the first 8 hex
// digits of the SHA-256 of the whole value after a prefix of its escaped
// form; and two different values never give the same label (for cut ones,
// but for a 32-bit hash collision no fuzzer finds).
func FuzzLabel(f *testing.F) {
	f.Add("R11", "E5")
	f.Add("Let's Encrypt", "Let\\'s Encrypt")
	f.Add("\xff\xfeCA", `\xff\xfeCA`)
	f.Add("Évil \u202eCA\n", "")
	f.Add(strings.Repeat("A", 256), strings.Repeat("A", 257))
	f.Add(strings.Repeat("A", 40000), strings.Repeat("A", 39999)+"B")
	f.Add(strings.Repeat("\u00e9", 100), strings.Repeat("\u00e9", 101))
	f.Add(strings.Repeat("x", 250)+"\U0001F600", strings.Repeat("x", 251)+"\U0001F600")
	f.Fuzz(func(t *testing.T, a, b string) {
		la := checkLabel(t, a)
		lb := checkLabel(t, b)
		if a != b && la == lb {
			t.Fatalf("%q and %q give the same label %q", a, b, la)
		}
	})
}

func checkLabel(t *testing.T, s string) string {
	t.Helper()
	l := Label(s)
	if len(l) > MaxLabel {
		t.Fatalf("Label(%q) is %d bytes", s, len(l))
	}
	if !utf8.ValidString(l) {
		t.Fatalf("Label(%q) = %q is not valid UTF-8", s, l)
	}
	e := Escape(s)
	body := l
	if len(e) <= MaxLabel {
		if l != e {
			t.Fatalf("Label(%q) = %q, want the escaped value %q", s, l, e)
		}
		if printable(s) && l != s {
			t.Fatalf("Label(%q) = %q changed a printable value", s, l)
		}
	} else {
		sum := sha256.Sum256([]byte(s))
		tail := "…" + hex.EncodeToString(sum[:4])
		var ok bool
		if body, ok = strings.CutSuffix(l, tail); !ok {
			t.Fatalf("Label of %d bytes = %q does not end with %q", len(s), l, tail)
		}
		if len(l) != MaxLabel || !strings.HasPrefix(e, body) {
			t.Fatalf("Label of %d bytes = %q: not %d bytes, or not a prefix of the escaped value", len(s), l, MaxLabel)
		}
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; c < 0x20 || c > 0x7e {
			t.Fatalf("Label(%q) = %q has byte %#x", s, l, c)
		}
	}
	return l
}

// printable reports whether Escape keeps s as it is.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	return true
}
