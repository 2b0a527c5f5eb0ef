package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// An issuance whose certificate the strict parser refuses says so in the
// table (escaped) and in JSON; one with no certificate tied to it links
// crt.sh by serial.
func TestCheckRowsShowParseErrors(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	is := &state.Issuance{
		TBSSHA256: [32]byte{0xab}, Serial: "0badc0de", DNSNames: []string{"odd.example.com"},
		Issuer: watch.Issuer{CN: "Odd CA", DN: "CN=Odd CA"}, NotBefore: now, NotAfter: now.Add(time.Hour),
		EmbeddedSCTs: -1, FirstSeen: now, ParseError: "x509: cannot parse URI \"\x1b[2J\"",
	}
	row := newCheckRow(is, state.Match{Watch: "example.com", Verdict: watch.IssuerAllowed})
	if row.Link != "https://crt.sh/?serial=0badc0de" || row.CertSHA256 != "" {
		t.Fatalf("link %q, cert_sha256 %q", row.Link, row.CertSHA256)
	}
	var table bytes.Buffer
	printCheckTable(&table, []checkRow{row})
	if !strings.Contains(table.String(), `the certificate does not parse (strict X.509): x509: cannot parse URI "\u{1b}[2J"`) ||
		strings.Contains(table.String(), "\x1b") {
		t.Fatalf("table:\n%s", table.String())
	}
	b, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"parse_error":"x509: cannot parse URI \"\u001b[2J\""`) {
		t.Fatalf("json: %s", b)
	}
}
