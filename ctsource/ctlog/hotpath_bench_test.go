package ctlog

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"filippo.io/sunlight"
	ct "github.com/google/certificate-transparency-go"
	ctls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/internal/testpki"
	"github.com/ct-exporter/ct_exporter/watch"
)

// benchEntries makes n log entries, half precertificates, from a pool of
// real certificates with 1 to 3 SANs (a few with many), none watched.
func benchEntries(b *testing.B, n int) []ct.LeafEntry {
	b.Helper()
	ca := testpki.NewIssuer(b, "R11", "Let's Encrypt")
	type pair struct{ pre, final, tbs []byte }
	var pool []pair
	for i := 0; i < 64; i++ {
		sans := 1 + i%3
		if i%16 == 0 {
			sans = 40
		}
		names := make([]string, sans)
		for j := range names {
			names[j] = fmt.Sprintf("host%d-%d.site%d.example.net", j, i, i)
		}
		iss, err := ca.Issue(testpki.Leaf{CN: names[0], DNSNames: names, SCTs: 2})
		if err != nil {
			b.Fatal(err)
		}
		cert, err := ctx509.ParseCertificate(iss.Precert)
		if err != nil {
			b.Fatal(err)
		}
		tbs, err := ctx509.RemoveCTPoison(cert.RawTBSCertificate)
		if err != nil {
			b.Fatal(err)
		}
		pool = append(pool, pair{iss.Precert, iss.Final, tbs})
	}
	entries := make([]ct.LeafEntry, n)
	for i := range entries {
		p := pool[i%len(pool)]
		leaf := ct.MerkleTreeLeaf{Version: ct.V1, LeafType: ct.TimestampedEntryLeafType, TimestampedEntry: &ct.TimestampedEntry{
			Timestamp: uint64(time.Now().UnixMilli()),
		}}
		var extra []byte
		var err error
		if i%2 == 0 {
			leaf.TimestampedEntry.EntryType = ct.PrecertLogEntryType
			leaf.TimestampedEntry.PrecertEntry = &ct.PreCert{IssuerKeyHash: sha256.Sum256(ca.Cert.RawSubjectPublicKeyInfo), TBSCertificate: p.tbs}
			extra, err = ctls.Marshal(ct.PrecertChainEntry{PreCertificate: ct.ASN1Cert{Data: p.pre}, CertificateChain: []ct.ASN1Cert{{Data: ca.DER}}})
		} else {
			leaf.TimestampedEntry.EntryType = ct.X509LogEntryType
			leaf.TimestampedEntry.X509Entry = &ct.ASN1Cert{Data: p.final}
			extra, err = ctls.Marshal(ct.CertificateChain{Entries: []ct.ASN1Cert{{Data: ca.DER}}})
		}
		if err != nil {
			b.Fatal(err)
		}
		input, err := ctls.Marshal(leaf)
		if err != nil {
			b.Fatal(err)
		}
		entries[i] = ct.LeafEntry{LeafInput: input, ExtraData: extra}
	}
	return entries
}

// BenchmarkDecodeGetEntries decodes a 1000-entry get-entries answer.
func BenchmarkDecodeGetEntries(b *testing.B) {
	body, err := json.Marshal(ct.GetEntriesResponse{Entries: benchEntries(b, 1000)})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	var arena []byte
	for b.Loop() {
		entries, a, err := decodeGetEntries(body, 0, arena)
		if err != nil || len(entries) != 1000 || entries[999].err != nil {
			b.Fatal(err)
		}
		arena = a
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/entry")
}

// BenchmarkMatchEntry matches entries that concern no watch (the common
// case) against 1 and 10,000 watches.
func BenchmarkMatchEntry(b *testing.B) {
	body, err := json.Marshal(ct.GetEntriesResponse{Entries: benchEntries(b, 256)})
	if err != nil {
		b.Fatal(err)
	}
	entries, _, err := decodeGetEntries(body, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 10000} {
		var ws []watch.Watch
		for i := 0; i < n; i++ {
			ws = append(ws, watch.NewWatch(fmt.Sprintf("watched%d.example.com", i), true))
		}
		set := watch.NewSet(ws)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			m := matcher{set: set}
			i := 0
			for b.Loop() {
				if c, bad := m.match(&entries[i%len(entries)]); c != nil || bad {
					b.Fatal("matched")
				}
				i++
			}
		})
	}
}

// BenchmarkLeafHashesAndTree hashes 1000 leaves and rolls them into the
// compact range, as the follower does for RFC 6962 logs.
func BenchmarkLeafHashesAndTree(b *testing.B) {
	var prefixed [][]byte
	for _, e := range benchEntries(b, 1000) {
		prefixed = append(prefixed, append([]byte{0}, e.LeafInput...))
	}
	for b.Loop() {
		r, err := compactRange(0, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := range prefixed {
			h := sha256.Sum256(prefixed[i])
			if err := r.Append(h[:], nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/entry")
}

// BenchmarkDecodeDataTile decodes a full static-ct-api data tile (256
// entries) and computes each entry's record hash, as verifying it needs.
func BenchmarkDecodeDataTile(b *testing.B) {
	var tile []byte
	for i, e := range benchEntries(b, 256) {
		var leaf ct.MerkleTreeLeaf
		if _, err := ctls.Unmarshal(e.LeafInput, &leaf); err != nil {
			b.Fatal(err)
		}
		le := &sunlight.LogEntry{Timestamp: int64(leaf.TimestampedEntry.Timestamp), LeafIndex: int64(i)}
		if pe := leaf.TimestampedEntry.PrecertEntry; pe != nil {
			le.IsPrecert, le.IssuerKeyHash, le.Certificate = true, pe.IssuerKeyHash, pe.TBSCertificate
			var chain ct.PrecertChainEntry
			if _, err := ctls.Unmarshal(e.ExtraData, &chain); err != nil {
				b.Fatal(err)
			}
			le.PreCertificate = chain.PreCertificate.Data
		} else {
			le.Certificate = leaf.TimestampedEntry.X509Entry.Data
		}
		le.ChainFingerprints = [][32]byte{{1}}
		tile = sunlight.AppendTileLeaf(tile, le)
	}
	b.SetBytes(int64(len(tile)))
	for b.Loop() {
		n, err := decodeDataTile(tile, 0, func(rawEntry, [32]byte) {})
		if err != nil || n != 256 {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/entry")
}
