package pgstate

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/ct-exporter/ct_exporter/internal/pgtest"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/state/storetest"
	"github.com/ct-exporter/ct_exporter/watch"
)

// The views of docs/sql.md show every committed issuance, one row per
// watch, with the columns documented.
func TestViews(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "views")
	c := storetest.NewClock()
	s := open(t, url, c.Now)
	a := storetest.Issuance(1, c.Now())
	a.ParseError = "x509: bad"
	storetest.Observe(t, s, a, state.Match{Watch: "example.com", Verdict: watch.Unreviewed}, state.Match{Watch: "other.example", Verdict: watch.Authorized})
	c.Advance(time.Minute)
	b := storetest.Issuance(2, c.Now())
	b.EmbeddedSCTs = 3
	storetest.Observe(t, s, b, state.Match{Watch: "example.com", Verdict: watch.IssuerUnexpected})

	ctx := context.Background()
	rows, err := s.pool.Query(ctx, `SELECT watch, verdict, first_seen, tbs_sha256, cert_sha256, issuer, issuer_cn, issuer_o, issuer_dn,
	serial, subject_cn, dns_names, ip_addresses, not_before, not_after, embedded_scts, parse_error, issuance_first_seen
FROM ct_certificates WHERE watch = $1 AND first_seen BETWEEN $2 AND $3 ORDER BY first_seen`,
		"example.com", c.Now().Add(-time.Hour), c.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type row struct {
		watch, verdict                      string
		firstSeen                           time.Time
		tbs                                 string
		cert                                *string
		issuer, issuerCN, issuerO, issuerDN string
		serial, subjectCN                   string
		dnsNames, ips                       []string
		notBefore, notAfter                 *time.Time
		scts                                *int
		parseError                          *string
		issuanceFirstSeen                   time.Time
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.watch, &r.verdict, &r.firstSeen, &r.tbs, &r.cert, &r.issuer, &r.issuerCN, &r.issuerO, &r.issuerDN,
			&r.serial, &r.subjectCN, &r.dnsNames, &r.ips, &r.notBefore, &r.notAfter, &r.scts, &r.parseError, &r.issuanceFirstSeen); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d rows for example.com, want 2", len(got))
	}
	r := got[0]
	if r.watch != "example.com" || r.verdict != "unreviewed" || r.tbs != hex.EncodeToString(a.TBSSHA256[:]) ||
		r.cert == nil || *r.cert != hex.EncodeToString(a.CertSHA256[:]) || r.issuer != "R11" || r.issuerO != "Let's Encrypt" ||
		r.serial != a.Serial || r.subjectCN != a.SubjectCN || len(r.dnsNames) != 2 || r.dnsNames[0] != a.DNSNames[0] ||
		r.notAfter == nil || !r.notAfter.Equal(a.NotAfter) || r.scts != nil || r.parseError == nil || *r.parseError != "x509: bad" {
		t.Errorf("first row %+v", r)
	}
	if r := got[1]; r.verdict != "issuer_unexpected" || r.scts == nil || *r.scts != 3 || r.parseError != nil || !r.firstSeen.Equal(c.Now()) {
		t.Errorf("second row %+v", r)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM ct_certificates WHERE watch = 'other.example' AND verdict = 'authorized'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("other.example: %d rows, %v", n, err)
	}
	var v int64
	if err := s.pool.QueryRow(ctx, `SELECT value FROM ct_counters WHERE name = 'new_certificates' AND labels = ARRAY['example.com', 'R11', 'unreviewed']`).Scan(&v); err != nil || v != 1 {
		t.Errorf("ct_counters: %d, %v", v, err)
	}
}

// A database at schema version 2 (before the views) is migrated to the
// views at start, its data kept.
func TestViewsMigratedFromVersion2(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.CreateDB(t, "v2")
	c := storetest.NewClock()
	s := open(t, url, c.Now)
	storetest.Observe(t, s, storetest.Issuance(1, c.Now()), state.Match{Watch: "example.com", Verdict: watch.Unreviewed})
	ctx := context.Background()
	// Back to version 2, as an exporter before the views left it.
	if _, err := s.pool.Exec(ctx, `DROP VIEW ct_certificates; DROP VIEW ct_counters; DROP INDEX issuance_watches_watch_first_seen;
DELETE FROM ct_exporter_schema WHERE version > 2`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, url, c.Now)
	var n, v int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM ct_certificates WHERE watch = 'example.com'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("ct_certificates after the migration: %d rows, %v", n, err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT max(version) FROM ct_exporter_schema`).Scan(&v); err != nil || v != SchemaVersion || v < 3 {
		t.Errorf("schema version %d, %v", v, err)
	}
}
