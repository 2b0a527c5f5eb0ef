package watch

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustWatch(t testing.TB, domain string, sub bool) Watch {
	t.Helper()
	d, why := NormalizeDomain(domain)
	if why != "" {
		t.Fatalf("NormalizeDomain(%q): %s", domain, why)
	}
	return NewWatch(d, sub)
}

func TestMatching(t *testing.T) {
	set := NewSet([]Watch{
		mustWatch(t, "example.com", true),      // 0
		mustWatch(t, "www.example.org", false), // 1
		mustWatch(t, "Bücher.example", true),   // 2
		mustWatch(t, "192.0.2.0/24", false),    // 3
		mustWatch(t, "2001:db8::1", false),     // 4
		mustWatch(t, "example.org", false),     // 5
	})
	for _, tc := range []struct {
		names []string
		ips   []string
		want  []int
	}{
		{names: []string{"example.com"}, want: []int{0}},
		{names: []string{"EXAMPLE.com."}, want: []int{0}},
		{names: []string{"a.b.example.com"}, want: []int{0}},
		{names: []string{"*.example.com"}, want: []int{0}},
		{names: []string{"notexample.com"}},
		{names: []string{"example.com.evil.net"}},
		{names: []string{"example.co"}},
		{names: []string{"www.example.org"}, want: []int{1}},
		{names: []string{"a.www.example.org"}},             // no subdomains for watch 1
		{names: []string{"*.example.org"}, want: []int{1}}, // the wildcard covers www.example.org
		{names: []string{"*.www.example.org"}},             // does not cover www.example.org itself
		{names: []string{"*.*.example.org"}},               // not a wildcard the client honours
		{names: []string{"example.org"}, want: []int{5}},   // apex only
		{names: []string{"x.example.org"}},                 // not a subdomain watch
		{names: []string{"www.bücher.example"}, want: []int{2}},
		{names: []string{"www.xn--bcher-kva.example"}, want: []int{2}},
		{names: []string{"WWW.XN--BCHER-KVA.EXAMPLE"}, want: []int{2}},
		{names: []string{"x_y.bücher.example"}, want: []int{2}},   // IDNA refuses the name, not its labels
		{names: []string{"x_y.BÜCHER.example."}, want: []int{2}},  // and case, trailing dot
		{names: []string{"*.x_y.bücher.example"}, want: []int{2}}, // a wildcard of it
		{names: []string{"x_y.bücher.example.evil"}},              // a look-alike stays one
		{names: []string{"evil_<b>.example.com"}, want: []int{0}}, // not a host name: still matched by label suffix
		{names: []string{"192.0.2.7"}, want: []int{3}},            // an IP in the CN
		{ips: []string{"192.0.2.200"}, want: []int{3}},
		{ips: []string{"::ffff:192.0.2.1"}, want: []int{3}},
		{ips: []string{"198.51.100.1"}},
		{ips: []string{"2001:db8::1"}, want: []int{4}},
		{names: []string{"www.example.org", "example.com", "x.example.com"}, ips: []string{"192.0.2.1"}, want: []int{0, 1, 3}},
		{names: []string{""}},
		{names: []string{"."}},
	} {
		var names []string
		for _, n := range tc.names {
			names = append(names, NormalizeName(n))
		}
		var ips []netip.Addr
		for _, s := range tc.ips {
			ips = append(ips, netip.MustParseAddr(s))
		}
		got := set.Match(nil, names, ips)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Match(%q, %v) = %v, want %v", tc.names, tc.ips, got, tc.want)
		}
	}
}

func TestVerdicts(t *testing.T) {
	le, err := ParseIssuerMatcher("let's encrypt")
	if err != nil {
		t.Fatal(err)
	}
	re, err := ParseIssuerMatcher("/^CN=E[5-9], O=Let's Encrypt/")
	if err != nil {
		t.Fatal(err)
	}
	key, cert := [32]byte{1}, [32]byte{2}
	r11 := Issuer{CN: "R11", O: "Let's Encrypt", DN: "CN=R11, O=Let's Encrypt, C=US"}
	e6 := Issuer{CN: "E6", O: "Other", DN: "CN=E6, O=Let's Encrypt, C=US"}
	evil := Issuer{CN: "Evil CA", O: "Evil", DN: "CN=Evil CA, O=Evil"}

	open := mustWatch(t, "example.com", true)
	strict := open
	strict.ExpectedIssuers = []IssuerMatcher{le, re}
	strict.AuthorizedKeys = map[[32]byte]struct{}{key: {}}
	strict.AuthorizedCerts = map[[32]byte]struct{}{cert: {}}

	for _, tc := range []struct {
		w    Watch
		c    Candidate
		want Verdict
	}{
		{open, Candidate{Issuer: evil}, Unreviewed},
		{strict, Candidate{Issuer: r11}, IssuerAllowed},
		{strict, Candidate{Issuer: e6}, IssuerAllowed},
		{strict, Candidate{Issuer: evil}, IssuerUnexpected},
		{strict, Candidate{Issuer: evil, SPKISHA256: key}, Authorized},
		{strict, Candidate{Issuer: evil, TBSSHA256: cert}, Authorized},
		{strict, Candidate{Issuer: Issuer{O: "LET'S ENCRYPT"}}, IssuerAllowed},
		{strict, Candidate{Issuer: Issuer{CN: "Let's Encrypt Fake"}}, IssuerUnexpected},
	} {
		if got := tc.w.Verdict(tc.c); got != tc.want {
			t.Errorf("Verdict(%+v) = %v, want %v", tc.c.Issuer, got, tc.want)
		}
	}
	// A set judges by the watch on the domain it is asked about.
	other := mustWatch(t, "example.org", false)
	other.ExpectedIssuers = strict.ExpectedIssuers
	set := NewSet([]Watch{open, other})
	if v, ok := set.Verdict("example.com", Candidate{Issuer: evil}); !ok || v != Unreviewed {
		t.Errorf("set.Verdict(example.com) = %v, %v; want unreviewed", v, ok)
	}
	if v, ok := set.Verdict("example.org", Candidate{Issuer: evil}); !ok || v != IssuerUnexpected {
		t.Errorf("set.Verdict(example.org) = %v, %v; want issuer_unexpected", v, ok)
	}
	if _, ok := set.Verdict("example.net", Candidate{Issuer: r11}); ok {
		t.Error("a verdict for a domain no watch is on")
	}
	if _, err := ParseIssuerMatcher("/(/"); err == nil {
		t.Error("invalid regexp accepted")
	}
	for v, want := range map[Verdict]string{Authorized: "authorized", IssuerAllowed: "issuer_allowed", Unreviewed: "unreviewed", IssuerUnexpected: "issuer_unexpected"} {
		if v.String() != want {
			t.Errorf("%d.String() = %s, want %s (a pinned label value)", v, v, want)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"www.example.com":    "www.example.com",
		"a\\b":               `a\\b`,
		"<script>x</script>": "<script>x</script>", // markup is the renderer's business
		"bad\x00\nname":      `bad\u{0}\u{a}name`,
		"bücher":             `b\u{fc}cher`,
		"\xff\xfe":           `\xff\xfe`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// Matching cost must not grow with the number of watches.
func BenchmarkMatch(b *testing.B) {
	names := []string{"www.shop.example-42.com", "api.example-42.com", "unrelated.example.net"}
	for _, n := range []int{1, 10000} {
		var ws []Watch
		for i := 0; i < n; i++ {
			ws = append(ws, mustWatch(b, fmt.Sprintf("example-%d.com", i), true))
		}
		set := NewSet(ws)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var dst []int
			for b.Loop() {
				dst = set.Match(dst[:0], names, nil)
			}
		})
	}
}

func TestLabelIsBounded(t *testing.T) {
	if got := Label("R11"); got != "R11" {
		t.Fatalf("short value changed: %q", got)
	}
	long := strings.Repeat("x", 40000)
	a, b := Label(long), Label(long[:39999]+"y")
	if len(a) > MaxLabel || len(b) > MaxLabel {
		t.Fatalf("labels of %d and %d bytes", len(a), len(b))
	}
	if a == b {
		t.Fatal("two long values give one label")
	}
	if !strings.HasPrefix(a, "xxxx") || !strings.Contains(a, "…") {
		t.Fatalf("label %q", a)
	}
	// Escaping comes first: the bound holds for what is exposed.
	if got := Label(strings.Repeat("\xff", 300)); len(got) > MaxLabel || !strings.HasPrefix(got, `\xff`) {
		t.Fatalf("escaped label %q (%d bytes)", got, len(got))
	}
}

// Anchored is what --config.check warns on: an expression some match of
// which need not start at the DN's start or end at its end.
func TestIssuerMatcherAnchored(t *testing.T) {
	const (
		twin   = "CN=R10, O=Let's Encrypt Evil Twin, C=US"
		before = "OU=Evil, CN=R10, O=Let's Encrypt, C=US"
		after  = "CN=R10, O=Let's Encrypt, C=US, OU=Evil"
		line   = "OU=Evil\nCN=R10, O=Let's Encrypt, C=US"
	)
	for _, tc := range []struct {
		entry     string
		lookAlike string // a longer DN the entry accepts; "" when anchored
	}{
		{"Let's Encrypt", ""}, // equality
		{"/^CN=R1[0-4], O=Let's Encrypt, C=US$/", ""},
		{`/\ACN=R1[0-4], O=Let's Encrypt, C=US\z/`, ""},
		{"/^(CN=R1[0-4]|CN=E[5-9]), O=Let's Encrypt, C=US$/", ""},
		{"/^CN=R10, O=Let's Encrypt, C=US$|^CN=R11, O=Let's Encrypt, C=US$/", ""},
		{"/^CN=R1[0-4], O=Let's Encrypt/", twin},
		{"/CN=R1[0-4], O=Let's Encrypt, C=US$/", before},
		{"/^CN=R10, O=Let's Encrypt, C=US$|Let's Encrypt/", twin},
		{"/^(CN=R10, O=Let's Encrypt, C=US$|CN=R10, O=Let's Encrypt)/", after},
		{"/(?m)^CN=R1[0-4], O=Let's Encrypt, C=US$/", line}, // ^ also after a newline
		{"/Let's Encrypt/", twin},
	} {
		m, err := ParseIssuerMatcher(tc.entry)
		if err != nil {
			t.Fatal(err)
		}
		if want := tc.lookAlike == ""; m.Anchored() != want {
			t.Errorf("%s: Anchored() = %v, want %v", tc.entry, m.Anchored(), want)
		}
		// What the warning is about: an unanchored expression accepts a
		// look-alike, an anchored one none.
		if tc.lookAlike != "" && !m.Matches(Issuer{DN: tc.lookAlike}) {
			t.Errorf("%s does not accept %q: the case proves nothing", tc.entry, tc.lookAlike)
		}
		if tc.lookAlike == "" {
			for _, dn := range []string{twin, before, after, line} {
				if m.Matches(Issuer{CN: "R10", O: "Let's Encrypt Evil Twin", DN: dn}) {
					t.Errorf("%s accepts %q", tc.entry, dn)
				}
			}
		}
		if m.String() != tc.entry {
			t.Errorf("String() = %q, want the entry %q", m.String(), tc.entry)
		}
	}
}
