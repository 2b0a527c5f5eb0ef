package config

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Describe writes, for a person, what the configuration watches and how each
// watch judges what it finds (the output of --config.check): every watch
// up to DescribeFullLimit of them, a summary beyond.
func (c *Config) Describe(w io.Writer) { c.describe(w, len(c.Watches) <= DescribeFullLimit) }

// DescribeFull is Describe listing every watch however many there are
// (--config.check.full).
func (c *Config) DescribeFull(w io.Writer) { c.describe(w, true) }

func (c *Config) describe(w io.Writer, full bool) {
	fmt.Fprintf(w, "%d watch(es); new issuances stay visible for %s, at most %d series per watch\n\n",
		len(c.Watches), c.RecentWindow, c.RecentSeriesLimit)
	if full {
		c.describeWatches(w)
	} else {
		c.summariseWatches(w)
	}
	c.describeSources(w)
}

// summariseWatches says how many watches of each kind there are, and every
// warning once per expression, instead of a paragraph per watch.
func (c *Config) summariseWatches(w io.Writer) {
	var ips, subdomains, withIssuers, withKeys, withCerts int
	files := map[string]int{}
	byLabel := map[string]map[string]int{}
	warned := map[string]bool{}
	var warnings []string
	for i, cw := range c.Policy.Watches() {
		switch {
		case cw.IsIP():
			ips++
		case cw.IncludeSubdomains:
			subdomains++
		}
		if len(cw.ExpectedIssuers) > 0 {
			withIssuers++
		}
		if len(cw.AuthorizedKeys) > 0 {
			withKeys++
		}
		if len(cw.AuthorizedCerts) > 0 {
			withCerts++
		}
		f := c.Watches[i].File
		if j := strings.LastIndexByte(f, ':'); j >= 0 {
			f = f[:j]
		}
		files[f]++
		for _, name := range c.Policy.LabelNames() {
			if byLabel[name] == nil {
				byLabel[name] = map[string]int{}
			}
			byLabel[name][cw.Labels[name]]++
		}
		for _, m := range cw.ExpectedIssuers {
			if !m.Anchored() && !warned[m.String()] {
				warned[m.String()] = true
				warnings = append(warnings, fmt.Sprintf("warning: expected issuer %s (watch %s and maybe others) is not anchored at both ends (^ at the start, $ at the end): "+
					"it also accepts longer DNs that merely contain a match, such as a look-alike O or extra attributes", m, cw.Domain))
			}
		}
	}
	n := len(c.Watches)
	fmt.Fprintf(w, "watches (a summary; --config.check.full lists each):\n")
	fmt.Fprintf(w, "  %d with their subdomains, %d without, %d IP address or prefix\n", subdomains, n-subdomains-ips, ips)
	fmt.Fprintf(w, "  %d with expected_issuers (others: issuer_unexpected), %d without (unreviewed)\n", withIssuers, n-withIssuers)
	fmt.Fprintf(w, "  %d with authorized keys, %d with reviewed issuances\n", withKeys, withCerts)
	for i, f := range slices.Sorted(maps.Keys(files)) {
		if i == 10 {
			fmt.Fprintf(w, "  ... and %d more file(s)\n", len(files)-10)
			break
		}
		fmt.Fprintf(w, "  %d from %s\n", files[f], f)
	}
	for _, name := range c.Policy.LabelNames() {
		var parts []string
		for _, v := range slices.Sorted(maps.Keys(byLabel[name])) {
			shown := v
			if v == "" {
				shown = "(none)"
			}
			parts = append(parts, fmt.Sprintf("%s: %d", shown, byLabel[name][v]))
		}
		fmt.Fprintf(w, "  label %s: %s\n", name, strings.Join(parts, ", "))
	}
	for _, s := range warnings {
		fmt.Fprintf(w, "  %s\n", s)
	}
}

func (c *Config) describeWatches(w io.Writer) {
	for i, cw := range c.Policy.Watches() {
		scope := "only " + cw.Domain
		switch {
		case cw.IsIP():
			scope = "IP address SANs in " + cw.Domain
		case cw.IncludeSubdomains:
			scope = cw.Domain + " and every subdomain (*." + cw.Domain + ")"
		}
		fmt.Fprintf(w, "watch %s: %s\n", cw.Domain, scope)
		if n := len(cw.AuthorizedKeys); n > 0 {
			fmt.Fprintf(w, "  authorized: %d key(s) (%d from files)\n", n, n-len(c.Watches[i].AuthorizedKeys))
		}
		if n := len(cw.AuthorizedCerts); n > 0 {
			fmt.Fprintf(w, "  authorized: %d reviewed issuance(s)\n", n)
		}
		if len(cw.ExpectedIssuers) == 0 {
			fmt.Fprintf(w, "  any other issuance: unreviewed (no expected_issuers)\n")
		} else {
			var accepts []string
			for _, m := range cw.ExpectedIssuers {
				accepts = append(accepts, m.Describe())
			}
			fmt.Fprintf(w, "  issuer_allowed: %s\n", strings.Join(accepts, "; or "))
			fmt.Fprintf(w, "  any other issuer: issuer_unexpected\n")
			for _, m := range cw.ExpectedIssuers {
				if !m.Anchored() {
					fmt.Fprintf(w, "  warning: expected issuer %s is not anchored at both ends (^ at the start, $ at the end): "+
						"it also accepts longer DNs that merely contain a match, such as a look-alike O or extra attributes\n", m)
				}
			}
		}
	}
}

func (c *Config) describeSources(w io.Writer) {
	fmt.Fprintf(w, "\n%d source(s)\n", len(c.Sources))
	for _, s := range c.Sources {
		fmt.Fprintf(w, "source %s: %s %s every %s (timeout %s, %s between requests)\n",
			s.Name, s.Type, s.URL, s.Interval, s.Timeout, s.RequestInterval)
		if n, round := c.SearchRound(&s); n > 0 {
			fmt.Fprintf(w, "  searches %d watch(es) a round: at least %s at its request spacing\n", n, Duration(round))
			if why := c.Overdue(&s); why != "" {
				fmt.Fprintf(w, "  warning: %s\n", why)
			}
		}
		if s.Type == TypeLogList {
			fmt.Fprintf(w, "  follows the logs in states %s, each every %s; a list naming more than %d (max_logs) is refused\n",
				strings.Join(s.States, ", "), s.LogInterval, s.MaxLogs)
			if s.PublicKeyDER != nil {
				kind := "RSA"
				if k, _ := x509.ParsePKIXPublicKey(s.PublicKeyDER); k != nil {
					if _, ok := k.(*ecdsa.PublicKey); ok {
						kind = "ECDSA"
					}
				}
				fmt.Fprintf(w, "  accepted only when its signature %s verifies with an %s key (SPKI SHA-256 %x); otherwise refused (bad_signature)\n",
					s.SignatureURL, kind, sha256.Sum256(s.PublicKeyDER))
			} else {
				fmt.Fprintf(w, "  not verified: no public_key (whoever can change the list chooses the logs followed)\n")
			}
		}
		if s.Type == TypeCertspotter {
			if s.TokenFile != "" {
				fmt.Fprintf(w, "  API key read from %s (%d characters)\n", s.TokenFile, len(s.Token.Reveal()))
			} else {
				fmt.Fprintf(w, "  anonymous: no token_file (the API allows anonymous queries at a low volume)\n")
			}
		}
	}
}

// DescribeFullLimit is the number of watches up to which Describe lists
// every watch; beyond it, it summarises them (DescribeFull lists them all).
const DescribeFullLimit = 25

// SearchRound is, for a search source (crtsh, certspotter), the least time
// a round of searches takes: one request per watch it can search (not IP
// watches), request_interval apart. Longer than the interval, the source
// falls behind: each watch is searched less often than every interval.
// Zero for other sources.
func (c *Config) SearchRound(s *Source) (watches int, round time.Duration) {
	if s.Type != TypeCrtsh && s.Type != TypeCertspotter {
		return 0, 0
	}
	for _, w := range c.Policy.Watches() {
		if !w.IsIP() {
			watches++
		}
	}
	return watches, time.Duration(watches) * time.Duration(s.RequestInterval)
}

// Overdue says, for a search source that cannot search all its watches
// within its interval, what the user should know; "" when it can.
func (c *Config) Overdue(s *Source) string {
	n, round := c.SearchRound(s)
	if round <= time.Duration(s.Interval) {
		return ""
	}
	return fmt.Sprintf("source %s cannot search its %d watches within its interval %s: at one request every %s (request_interval) a round takes at least %s, so each watch is searched about every %s, not every %s; "+
		"raise interval to at least %s (or lower request_interval, if the service allows it), or rely on ctlog/loglist sources, which follow logs whatever the number of watches",
		s.Name, n, s.Interval, s.RequestInterval, Duration(round), Duration(round), s.Interval, Duration(round))
}
