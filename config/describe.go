package config

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
)

// Describe writes, for a person, what the configuration watches and how each
// watch judges what it finds (the output of --config.check).
func (c *Config) Describe(w io.Writer) {
	fmt.Fprintf(w, "%d watch(es); new issuances stay visible for %s, at most %d series per watch\n\n",
		len(c.Watches), c.RecentWindow, c.RecentSeriesLimit)
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
	fmt.Fprintf(w, "\n%d source(s)\n", len(c.Sources))
	for _, s := range c.Sources {
		fmt.Fprintf(w, "source %s: %s %s every %s (timeout %s, %s between requests)\n",
			s.Name, s.Type, s.URL, s.Interval, s.Timeout, s.RequestInterval)
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
