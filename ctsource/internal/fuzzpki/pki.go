// Package fuzzpki issues the certificates the fuzz targets of the sources
// are seeded with, in every form a source meets them: DER certificates and
// precertificates, the TBSCertificates a log holds, RFC 6962 log entries and
// static-ct-api data tiles.
package fuzzpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"filippo.io/sunlight"
	ct "github.com/google/certificate-transparency-go"
	ctls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/internal/testpki"
)

// Issuance is one issuance of the seed PKI, in every form a source
// meets it.
type Issuance struct {
	Pre, Final []byte // DER certificates
	PreTBS     []byte // the precertificate's TBSCertificate, poison included
	LogTBS     []byte // the TBSCertificate a precert_entry carries (poison removed)
}

// PKI is the seed PKI: a CA and the issuances it signed.
type PKI struct {
	CA        *testpki.CA
	Issuances []Issuance
	// mixed is a certificate whose SANs are of every common kind: DNS
	// names, email addresses, URIs and IP addresses.
	mixed []byte
}

// New issues a few certificates shaped like real ones: several DNS
// SANs with a wildcard, no CN, CN only, IP SANs, many SANs; precertificates
// and final certificates with embedded SCTs.
func New(tb testing.TB) *PKI {
	tb.Helper()
	ca := testpki.NewIssuer(tb, "R11", "Let's Encrypt")
	p := &PKI{CA: ca}
	many := make([]string, 8)
	for i := range many {
		many[i] = fmt.Sprintf("host%d.site.example.net", i)
	}
	for _, leaf := range []testpki.Leaf{
		{CN: "www.example.com", DNSNames: []string{"www.example.com", "example.com", "*.example.com"}, SCTs: 2},
		{DNSNames: []string{"no-cn.example.org"}, SCTs: 1},
		{CN: "only-cn.example.net"},
		{CN: "192.0.2.1", IPs: []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::7")}, SCTs: 3},
		{CN: many[0], DNSNames: many, SCTs: 2},
		{CN: "notexample.com", DNSNames: []string{"notexample.com", "example.com.evil.net"}},
	} {
		iss, err := ca.Issue(leaf)
		if err != nil {
			tb.Fatal(err)
		}
		cert, err := ctx509.ParseCertificate(iss.Precert)
		if err != nil {
			tb.Fatal(err)
		}
		logTBS, err := ctx509.RemoveCTPoison(cert.RawTBSCertificate)
		if err != nil {
			tb.Fatal(err)
		}
		p.Issuances = append(p.Issuances, Issuance{Pre: iss.Precert, Final: iss.Final, PreTBS: cert.RawTBSCertificate, LogTBS: logTBS})
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	uri, _ := url.Parse("spiffe://example.com/service")
	now := time.Now().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(0x00c0ffee),
		Subject:        pkix.Name{CommonName: "mail.example.com", Organization: []string{"Example, Inc."}},
		DNSNames:       []string{"mail.example.com", "example.com"},
		EmailAddresses: []string{"admin@example.com"},
		URIs:           []*url.URL{uri},
		IPAddresses:    []net.IP{net.ParseIP("198.51.100.7")},
		NotBefore:      now,
		NotAfter:       now.Add(90 * 24 * time.Hour),
	}
	if p.mixed, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Certificates lists every DER certificate of the seed PKI, the CA included.
func (p *PKI) Certificates() [][]byte {
	out := [][]byte{p.CA.DER, p.mixed}
	for _, is := range p.Issuances {
		out = append(out, is.Pre, is.Final)
	}
	return out
}

// leafEntry is the get-entries entry an RFC 6962 log serves for an
// issuance: the precertificate (precert_entry, with a PrecertChainEntry as
// extra_data) or the final certificate (x509_entry, with its chain).
func (p *PKI) leafEntry(tb testing.TB, is Issuance, precert bool, timestamp uint64) ct.LeafEntry {
	tb.Helper()
	leaf := ct.MerkleTreeLeaf{Version: ct.V1, LeafType: ct.TimestampedEntryLeafType, TimestampedEntry: &ct.TimestampedEntry{Timestamp: timestamp}}
	var extra []byte
	var err error
	if precert {
		leaf.TimestampedEntry.EntryType = ct.PrecertLogEntryType
		leaf.TimestampedEntry.PrecertEntry = &ct.PreCert{IssuerKeyHash: sha256.Sum256(p.CA.Cert.RawSubjectPublicKeyInfo), TBSCertificate: is.LogTBS}
		extra, err = ctls.Marshal(ct.PrecertChainEntry{PreCertificate: ct.ASN1Cert{Data: is.Pre}, CertificateChain: []ct.ASN1Cert{{Data: p.CA.DER}}})
	} else {
		leaf.TimestampedEntry.EntryType = ct.X509LogEntryType
		leaf.TimestampedEntry.X509Entry = &ct.ASN1Cert{Data: is.Final}
		extra, err = ctls.Marshal(ct.CertificateChain{Entries: []ct.ASN1Cert{{Data: p.CA.DER}}})
	}
	if err != nil {
		tb.Fatal(err)
	}
	input, err := ctls.Marshal(leaf)
	if err != nil {
		tb.Fatal(err)
	}
	return ct.LeafEntry{LeafInput: input, ExtraData: extra}
}

// Entries returns n log entries, alternately precertificates and final
// certificates, cycling through the issuances.
func (p *PKI) Entries(tb testing.TB, n int) []ct.LeafEntry {
	out := make([]ct.LeafEntry, n)
	for i := range out {
		out[i] = p.leafEntry(tb, p.Issuances[(i/2)%len(p.Issuances)], i%2 == 0, 1_750_000_000_000+uint64(i))
	}
	return out
}

// Tile is the static-ct-api data tile holding entries, numbered from first.
func (p *PKI) Tile(tb testing.TB, entries []ct.LeafEntry, first int64, archival bool) []byte {
	tb.Helper()
	var tile []byte
	for i, e := range entries {
		var leaf ct.MerkleTreeLeaf
		if rest, err := ctls.Unmarshal(e.LeafInput, &leaf); err != nil || len(rest) != 0 {
			tb.Fatal(err)
		}
		le := &sunlight.LogEntry{Timestamp: int64(leaf.TimestampedEntry.Timestamp), LeafIndex: first + int64(i), RFC6962ArchivalLeaf: archival}
		if pe := leaf.TimestampedEntry.PrecertEntry; pe != nil {
			le.IsPrecert, le.IssuerKeyHash, le.Certificate = true, pe.IssuerKeyHash, pe.TBSCertificate
			var chain ct.PrecertChainEntry
			if _, err := ctls.Unmarshal(e.ExtraData, &chain); err != nil {
				tb.Fatal(err)
			}
			le.PreCertificate = chain.PreCertificate.Data
		} else {
			le.Certificate = leaf.TimestampedEntry.X509Entry.Data
		}
		le.ChainFingerprints = [][32]byte{sha256.Sum256(p.CA.DER), {byte(i)}}
		tile = sunlight.AppendTileLeaf(tile, le)
	}
	return tile
}
