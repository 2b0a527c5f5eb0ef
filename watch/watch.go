package watch

import (
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strings"
)

// Verdict is what a watch says about a newly seen issuance. The string values
// are part of the public contract (the verdict label).
type Verdict uint8

// Verdicts, ordered by how much they need a person: eviction under the series
// cap removes the least urgent first.
const (
	Authorized Verdict = iota + 1
	IssuerAllowed
	Unreviewed
	IssuerUnexpected
)

var verdictNames = [...]string{
	Authorized:       "authorized",
	IssuerAllowed:    "issuer_allowed",
	Unreviewed:       "unreviewed",
	IssuerUnexpected: "issuer_unexpected",
}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) && verdictNames[v] != "" {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Issuer is the part of a certificate's issuer that expected_issuers compares.
type Issuer struct {
	CN, O string
	DN    string // RFC 4514 order, ", " separated: "CN=R11, O=Let's Encrypt, C=US"
}

// Label is the issuer label value: its CN, or O when there is no CN.
func (i Issuer) Label() string {
	if i.CN != "" {
		return i.CN
	}
	return i.O
}

// Candidate holds the facts a verdict is made from.
type Candidate struct {
	TBSSHA256  [32]byte
	SPKISHA256 [32]byte
	Issuer     Issuer
}

// IssuerMatcher is one expected_issuers entry.
type IssuerMatcher struct {
	text     string
	re       *regexp.Regexp
	anchored bool
}

// ParseIssuerMatcher compiles an expected_issuers entry: a plain string equals
// the issuer's O or CN (case-insensitively); /…/ is an RE2 expression searched
// for in the issuer DN, so that only ^ and $ make it match the whole DN.
func ParseIssuerMatcher(s string) (IssuerMatcher, error) {
	if len(s) >= 2 && strings.HasPrefix(s, "/") && strings.HasSuffix(s, "/") {
		expr := s[1 : len(s)-1]
		re, err := regexp.Compile(expr)
		if err != nil {
			return IssuerMatcher{}, fmt.Errorf("invalid regular expression %s: %w", s, err)
		}
		// regexp.Compile parsed it with the same flags just now.
		parsed, err := syntax.Parse(expr, syntax.Perl)
		if err != nil {
			return IssuerMatcher{}, fmt.Errorf("invalid regular expression %s: %w", s, err)
		}
		return IssuerMatcher{text: s, re: re, anchored: anchoredAt(parsed, true) && anchoredAt(parsed, false)}, nil
	}
	if strings.TrimSpace(s) == "" {
		return IssuerMatcher{}, fmt.Errorf("an expected issuer cannot be empty")
	}
	return IssuerMatcher{text: s}, nil
}

// Matches reports whether the issuer is the one this entry names.
func (m IssuerMatcher) Matches(i Issuer) bool {
	if m.re != nil {
		return m.re.MatchString(i.DN)
	}
	return strings.EqualFold(m.text, i.O) || strings.EqualFold(m.text, i.CN)
}

// Anchored reports whether the entry accepts only whole issuers: true for a
// plain entry, and for an expression that every match must begin at the
// start of the DN (^) and end at its end ($). An expression that is not
// also accepts longer DNs around a match: /^CN=R11, O=Let's Encrypt/
// accepts "CN=R11, O=Let's Encrypt Evil Twin, C=US".
func (m IssuerMatcher) Anchored() bool { return m.re == nil || m.anchored }

// anchoredAt reports whether every match of re begins at the start of the
// text (start) or ends at its end (!start). Multi-line ^ and $ (?m) do not
// count: they match at a newline too.
func anchoredAt(re *syntax.Regexp, start bool) bool {
	switch re.Op {
	case syntax.OpBeginText:
		return start
	case syntax.OpEndText:
		return !start
	case syntax.OpCapture:
		return anchoredAt(re.Sub[0], start)
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			return false
		}
		if start {
			return anchoredAt(re.Sub[0], start)
		}
		return anchoredAt(re.Sub[len(re.Sub)-1], start)
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !anchoredAt(sub, start) {
				return false
			}
		}
		return true
	}
	return false
}

// String is the entry as written in the configuration.
func (m IssuerMatcher) String() string { return m.text }

// Describe says in words what the entry accepts, for --config.check.
func (m IssuerMatcher) Describe() string {
	if m.re != nil {
		return fmt.Sprintf("issuer DN matching %s", m.text)
	}
	return fmt.Sprintf("issuer O or CN equal to %q (any case)", m.text)
}

// Watch is one watched domain (or IP address or prefix) with its policy.
type Watch struct {
	Domain            string // normalized; the watch label
	IncludeSubdomains bool
	ExpectedIssuers   []IssuerMatcher
	AuthorizedKeys    map[[32]byte]struct{} // SPKI SHA-256
	AuthorizedCerts   map[[32]byte]struct{} // tbs_sha256
	// Labels are the watch's own labels (name → value), exposed on
	// ct_watch_info for the alerting rules to join.
	Labels map[string]string

	prefix netip.Prefix // valid for IP watches
}

// NewWatch returns a watch for a domain that NormalizeDomain accepted.
func NewWatch(domain string, includeSubdomains bool) Watch {
	w := Watch{Domain: domain, IncludeSubdomains: includeSubdomains}
	if a, err := netip.ParseAddr(domain); err == nil {
		w.prefix = netip.PrefixFrom(a, a.BitLen())
	} else if p, err := netip.ParsePrefix(domain); err == nil {
		w.prefix = p
	}
	return w
}

// IsIP reports whether the watch is on an IP address or prefix.
func (w *Watch) IsIP() bool { return w.prefix.IsValid() }

// MatchesName reports whether a normalized DNS name or subject CN concerns
// this watch.
func (w *Watch) MatchesName(name string) bool {
	if w.IsIP() {
		a, err := netip.ParseAddr(name)
		return err == nil && w.prefix.Contains(a.Unmap())
	}
	if name == w.Domain {
		return true
	}
	if w.IncludeSubdomains && strings.HasSuffix(name, w.Domain) &&
		name[len(name)-len(w.Domain)-1] == '.' {
		return true
	}
	// *.example.com covers x.example.com but neither example.com nor a.x.example.com.
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		_, parent, found := strings.Cut(w.Domain, ".")
		return found && parent == rest
	}
	return false
}

// MatchesIP reports whether an IP address SAN concerns this watch.
func (w *Watch) MatchesIP(a netip.Addr) bool {
	return w.IsIP() && w.prefix.Contains(a.Unmap())
}

// Verdict judges an issuance this watch matched.
func (w *Watch) Verdict(c Candidate) Verdict {
	if _, ok := w.AuthorizedKeys[c.SPKISHA256]; ok {
		return Authorized
	}
	if _, ok := w.AuthorizedCerts[c.TBSSHA256]; ok {
		return Authorized
	}
	if len(w.ExpectedIssuers) == 0 {
		return Unreviewed
	}
	for _, m := range w.ExpectedIssuers {
		if m.Matches(c.Issuer) {
			return IssuerAllowed
		}
	}
	return IssuerUnexpected
}
