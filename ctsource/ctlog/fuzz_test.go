package ctlog

// Fuzz targets for what a log sends: certificates as matching reads them,
// get-entries answers, MerkleTreeLeafs, static-ct-api data tiles,
// checkpoints and STHs. Each is seeded with real-shaped inputs built from
// fuzzpki's certificates and sunlight's own encoders. Run them with .ci/fuzz.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/sunlight"
	"filippo.io/torchwood"
	ct "github.com/google/certificate-transparency-go"
	ctls "github.com/google/certificate-transparency-go/tls"
	"golang.org/x/mod/sumdb/note"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/fuzzpki"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/staticlogfake"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// FuzzExtractIdentifiers checks the two promises matching rests on, on
// every input:
//   - walk ⊇ parse: whenever the lean walk reads the input, it finds every
//     DNS SAN, every CN and every IP SAN that certificate-transparency-go's
//     strict parser finds (a name it misses is a certificate no watch ever
//     sees); where it cannot read it, the strict parser's names are used;
//   - matched ⇒ recorded: whenever a name is found (either way), the
//     certificate is readable, and a watch on that name matches the
//     issuance the recorder would store.
//
// tbs selects the TBSCertificate form a precert_entry carries.
func FuzzExtractIdentifiers(f *testing.F) {
	p := fuzzpki.New(f)
	for _, der := range p.Certificates() {
		f.Add(der, false)
	}
	for _, is := range p.Issuances {
		f.Add(is.LogTBS, true)
		f.Add(is.PreTBS, true)
	}
	f.Add([]byte{0x30, 0x00}, false)
	f.Fuzz(func(t *testing.T, der []byte, tbs bool) {
		var id cert.Identifiers
		walked := cert.ExtractIdentifiers(der, tbs, &id) == nil
		var strict cert.Identifiers
		parsed := strictIdentifiers(der, tbs, &strict)
		if walked && parsed {
			for _, n := range strict.Names {
				if !slices.Contains(id.Names, n) {
					t.Errorf("the strict parse finds the name %q, the lean walk does not: lean %q, strict %q", n, id.Names, strict.Names)
				}
			}
			for _, a := range strict.IPs {
				if !slices.Contains(id.IPs, a) {
					t.Errorf("the strict parse finds IP SAN %v, the lean walk does not: lean %v, strict %v", a, id.IPs, strict.IPs)
				}
			}
		}
		if !walked {
			id = strict
		}
		if len(id.Names) == 0 && len(id.IPs) == 0 {
			return
		}
		e := rawEntry{der: der, precert: tbs}
		c, err := readEntry(&e)
		if err != nil {
			t.Fatalf("names %q %v were found, but the certificate cannot be read: %v", id.Names, id.IPs, err)
		}
		names := c.Names()
		for _, n := range cert.AppendNormalized(nil, id.Names) {
			if n != "" && !slices.Contains(names, n) { // an empty name matches no watch
				t.Fatalf("the name %q was matched, the certificate records %q", n, names)
			}
		}
		for _, a := range id.IPs {
			if !slices.Contains(c.IPAddresses, a) {
				t.Fatalf("the IP %v was matched, the certificate records %v", a, c.IPAddresses)
			}
		}
		// Through the recorder: a watch on a matched name concerns the issuance.
		for _, n := range cert.AppendNormalized(nil, id.Names) {
			d, reason := watch.NormalizeDomain(n)
			if reason != "" || d != n {
				continue
			}
			set := watch.NewSet([]watch.Watch{watch.NewWatch(d, false)})
			rec := &ctsource.Recorder{Policy: func() *watch.Set { return set }}
			var commit state.Commit
			rec.Observe(&commit, c)
			if m := commit.Observations[0].Matches; len(m) != 1 || m[0].Watch != d {
				t.Fatalf("a watch on %q does not concern the issuance recorded (names %q): %v", d, names, m)
			}
			break
		}
	})
}

// FuzzDecodeGetEntries: decoding a get-entries answer never panics, and
// the one-pass scanner reads exactly what encoding/json reads: whenever
// both accept an answer, they give the same entries (leaf hash,
// certificate, precertificate flag and full precertificate, error or not).
//
// The scanner may accept answers encoding/json refuses (raw newlines in a
// base64 string, unquoted words as skipped values): that is leniency, not a
// different reading, and is not checked here.
func FuzzDecodeGetEntries(f *testing.F) {
	p := fuzzpki.New(f)
	es := p.Entries(f, 3)
	for _, set := range [][]ct.LeafEntry{es[:1], es[1:2], es[:3]} {
		body, err := json.Marshal(ct.GetEntriesResponse{Entries: set})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body, int64(1000*len(set)))
	}
	indented, err := json.MarshalIndent(ct.GetEntriesResponse{Entries: es[:2]}, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(indented, int64(0))
	b64 := base64.StdEncoding.EncodeToString
	e0, e1 := es[0], es[1]
	// Keys in another order, unknown keys of every kind, an escape that
	// forces the encoding/json path, and answers that are not entries.
	f.Add([]byte(`{"entries":[{"extra_data":"`+b64(e0.ExtraData)+`","leaf_input":"`+b64(e0.LeafInput)+`"}]}`), int64(7))
	f.Add([]byte(`{"note":{"a":[1,-2.5e3,true,null,"x"]},"entries":[{"leaf_input":"`+b64(e1.LeafInput)+`","index":1,"extra_data":"`+b64(e1.ExtraData)+`"}],"more":false}`), int64(1))
	f.Add([]byte(`{"entries":[{"leaf_input":"`+strings.Replace(b64(e1.LeafInput), "/", `\/`, 1)+`","extra_data":"`+b64(e1.ExtraData)+`"}]}`), int64(1))
	f.Add([]byte(`{"entries":[]}`), int64(0))
	f.Add([]byte(`{"entries":[{"leaf_input":"AAA=","extra_data":""}]}`), int64(0))
	f.Add([]byte(`{"error":"bad request"}`), int64(0))
	f.Fuzz(func(t *testing.T, body []byte, start int64) {
		fast, _, errFast := decodeGetEntries(body, start, nil)
		slow, errSlow := decodeGetEntriesJSON(body, start)
		for _, e := range fast {
			if e.hasPrecertificate() {
				e.precertificate()
			}
		}
		if errFast != nil || errSlow != nil {
			return
		}
		if len(fast) != len(slow) {
			t.Fatalf("scanner reads %d entries, encoding/json %d", len(fast), len(slow))
		}
		for i := range fast {
			a, b := &fast[i], &slow[i]
			if a.index != b.index || a.index != start+int64(i) {
				t.Fatalf("entry %d: index %d (scanner) / %d (encoding/json)", i, a.index, b.index)
			}
			if a.leafHash != b.leafHash {
				t.Fatalf("entry %d: leaf hash %x (scanner) != %x (encoding/json)", i, a.leafHash, b.leafHash)
			}
			if !bytes.Equal(a.der, b.der) || a.precert != b.precert || (a.err == nil) != (b.err == nil) {
				t.Fatalf("entry %d differs:\nscanner       precert=%v err=%v der=%x\nencoding/json precert=%v err=%v der=%x",
					i, a.precert, a.err, a.der, b.precert, b.err, b.der)
			}
			if a.hasPrecertificate() != b.hasPrecertificate() {
				t.Fatalf("entry %d: precertificate given by one path only", i)
			}
			if a.hasPrecertificate() {
				pa, erra := a.precertificate()
				pb, errb := b.precertificate()
				if !bytes.Equal(pa, pb) || (erra == nil) != (errb == nil) {
					t.Fatalf("entry %d: precertificate %x, %v (scanner) != %x, %v (encoding/json)", i, pa, erra, pb, errb)
				}
			}
		}
	})
}

// FuzzParseLeaf: parseLeaf never panics on any leaf_input and extra_data,
// and agrees with certificate-transparency-go's TLS decoding: for a leaf
// that decodes completely there, parseLeaf succeeds exactly when it is a v1
// timestamped x509_entry or precert_entry, with the same entry type and
// certificate or TBSCertificate bytes.
func FuzzParseLeaf(f *testing.F) {
	p := fuzzpki.New(f)
	for _, e := range p.Entries(f, 4) {
		f.Add(e.LeafInput, []byte(base64.StdEncoding.EncodeToString(e.ExtraData)))
	}
	f.Add([]byte{0, 0}, []byte(""))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 1, 0x30, 0, 0}, []byte("AAAA"))
	f.Fuzz(func(t *testing.T, leaf, extra []byte) {
		prefixed := append([]byte{0}, leaf...)
		e := parseLeaf(42, prefixed, extra)
		if e.index != 42 || e.leafHash != sha256.Sum256(prefixed) {
			t.Fatalf("index %d, leaf hash %x", e.index, e.leafHash)
		}
		if e.hasPrecertificate() {
			if !e.precert {
				t.Fatal("precertificate given for an x509_entry")
			}
			e.precertificate()
		}
		precertificateOf(leaf) // any bytes as extra_data
		var mtl ct.MerkleTreeLeaf
		rest, err := ctls.Unmarshal(leaf, &mtl)
		if err != nil || len(rest) != 0 {
			return
		}
		te := mtl.TimestampedEntry
		supported := mtl.Version == ct.V1 && mtl.LeafType == ct.TimestampedEntryLeafType && te != nil &&
			(te.EntryType == ct.X509LogEntryType || te.EntryType == ct.PrecertLogEntryType)
		if !supported {
			if e.err == nil {
				t.Fatalf("parseLeaf accepts a leaf ct-go reads as version %d, leaf type %d, entry %+v", mtl.Version, mtl.LeafType, te)
			}
			return
		}
		if e.err != nil {
			t.Fatalf("parseLeaf rejects a leaf ct-go reads completely: %v", e.err)
		}
		var want []byte
		switch te.EntryType {
		case ct.X509LogEntryType:
			want = te.X509Entry.Data
		case ct.PrecertLogEntryType:
			want = te.PrecertEntry.TBSCertificate
		}
		if e.precert != (te.EntryType == ct.PrecertLogEntryType) || !bytes.Equal(e.der, want) {
			t.Fatalf("parseLeaf reads precert=%v der=%x, ct-go entry type %v der=%x", e.precert, e.der, te.EntryType, want)
		}
	})
}

// FuzzDecodeDataTile: decoding a data tile never panics, yields entries
// numbered start, start+1, … in order, and the record hash computed in one
// pass over the tile's bytes equals SHA-256(0x00 || MerkleTreeLeaf) of the
// entry sunlight reads at the same position, re-serialized by sunlight.
// (ReadTileLeafMaybeArchival reads everything ReadTileLeaf does, and leaves
// without the leaf index extension too.)
func FuzzDecodeDataTile(f *testing.F) {
	p := fuzzpki.New(f)
	es := p.Entries(f, 4)
	f.Add(p.Tile(f, es, 256, false), int64(256))
	f.Add(p.Tile(f, es[:1], 0, false), int64(0))
	f.Add(p.Tile(f, es[1:2], 7, false), int64(7))
	f.Add(p.Tile(f, es[:2], 1<<33, true), int64(1<<33))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, tile []byte, start int64) {
		var got []rawEntry
		var records [][32]byte
		n, err := decodeDataTile(tile, start, func(e rawEntry, rh [32]byte) {
			got = append(got, e)
			records = append(records, rh)
		})
		if n != len(got) {
			t.Fatalf("decodeDataTile reports %d entries, yielded %d", n, len(got))
		}
		for k := range got {
			e := &got[k]
			if e.index != start+int64(k) {
				t.Fatalf("entry %d yielded with index %d, want %d", k, e.index, start+int64(k))
			}
			if e.leafHash != records[k] {
				t.Fatalf("entry %d: leaf hash %x != record hash %x", k, e.leafHash, records[k])
			}
			if (e.hasPrecertificate()) != e.precert {
				t.Fatalf("entry %d: precert %v but precertificate given: %v", k, e.precert, e.hasPrecertificate())
			}
		}
		rest := tile
		k := 0
		for ; len(rest) > 0; k++ {
			le, r, serr := sunlight.ReadTileLeafMaybeArchival(rest)
			if serr != nil {
				break
			}
			if k >= len(got) {
				t.Fatalf("sunlight reads entry %d, decodeDataTile stopped after %d: %v", k, n, err)
			}
			want := sha256.Sum256(append([]byte{0}, le.MerkleTreeLeaf()...))
			e := &got[k]
			if records[k] != want {
				t.Fatalf("entry %d: record hash %x, sunlight's MerkleTreeLeaf hashes to %x", k, records[k], want)
			}
			if e.precert != le.IsPrecert || !bytes.Equal(e.der, le.Certificate) {
				t.Fatalf("entry %d: precert=%v der=%x, sunlight precert=%v der=%x", k, e.precert, e.der, le.IsPrecert, le.Certificate)
			}
			if e.precert {
				pre, perr := e.precertificate()
				if perr != nil || !bytes.Equal(pre, le.PreCertificate) {
					t.Fatalf("entry %d: precertificate %x, %v; sunlight %x", k, pre, perr, le.PreCertificate)
				}
			}
			rest = r
		}
		if len(rest) == 0 && (err != nil || n != k) {
			t.Fatalf("sunlight reads the whole tile (%d entries), decodeDataTile %d: %v", k, n, err)
		}
	})
}

// fuzzLogKey is the fixed key of the fuzzed static-ct-api log: fixed, so
// that a saved corpus entry still verifies in a later run.
func fuzzLogKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	scalar := sha256.Sum256([]byte("ct_exporter fuzz log key"))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

const fuzzLogOrigin = "fuzz.example/log"

// signCheckpoint signs a checkpoint as a static-ct-api log does: an RFC
// 6962 tree head signature, wrapped in a note signature.
func signCheckpoint(tb testing.TB, key *ecdsa.PrivateKey, origin string, size uint64, root [32]byte, ms uint64, extension string) []byte {
	tb.Helper()
	input, err := ct.SerializeSTHSignatureInput(ct.SignedTreeHead{Version: ct.V1, TreeSize: size, Timestamp: ms, SHA256RootHash: root})
	if err != nil {
		tb.Fatal(err)
	}
	digest := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		tb.Fatal(err)
	}
	ths := append([]byte{4 /* sha256 */, 3 /* ecdsa */, byte(len(sig) >> 8), byte(len(sig))}, sig...)
	signer, err := sunlight.NewRFC6962InjectedSigner(origin, key.Public(), ths, int64(ms))
	if err != nil {
		tb.Fatal(err)
	}
	text := fmt.Sprintf("%s\n%d\n%s\n%s", origin, size, base64.StdEncoding.EncodeToString(root[:]), extension)
	signed, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		if extension != "" {
			// The RFC 6962 signer refuses extension lines: sign without
			// them and add them to the text, which no longer verifies.
			signed = signCheckpoint(tb, key, origin, size, root, ms, "")
			return bytes.Replace(signed, []byte(base64.StdEncoding.EncodeToString(root[:])+"\n"), []byte(base64.StdEncoding.EncodeToString(root[:])+"\n"+extension), 1)
		}
		tb.Fatal(err)
	}
	return signed
}

// FuzzCheckpoint fuzzes what the static follower's head does with a
// checkpoint: note.Open with an RFC 6962 verifier for the log's key and the
// note's own origin, torchwood.ParseCheckpoint of the verified text, and
// sunlight.RFC6962SignatureTimestamp of the first verified signature. None
// may panic; a verified note has a signature, and its text parses as a
// checkpoint of that origin. Unverified notes go through the same parsers,
// so that their code is fuzzed beyond what a forged signature reaches.
func FuzzCheckpoint(f *testing.F) {
	key := fuzzLogKey(f)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	now := uint64(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	empty := sha256.Sum256(nil)
	root := sha256.Sum256([]byte("root"))
	f.Add(signCheckpoint(f, key, fuzzLogOrigin, 0, empty, now, ""))
	f.Add(signCheckpoint(f, key, fuzzLogOrigin, 1000, root, now+1, ""))
	f.Add(signCheckpoint(f, key, fuzzLogOrigin, 1<<40, root, now+2, "ext\n"))
	f.Add(signCheckpoint(f, key, "ct.example.com/2025h1", 256, root, 0, ""))
	f.Add(signCheckpoint(f, other, fuzzLogOrigin, 1000, root, now, ""))
	f.Add([]byte(fuzzLogOrigin + "\n1000\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"))
	f.Add([]byte(fuzzLogOrigin + "\n1000\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n\n— " + fuzzLogOrigin + " AAAAAAAAAAAAAAAA\n"))
	hugeSigner, err := staticlogfake.NewSigner(fuzzLogOrigin, key)
	if err != nil {
		f.Fatal(err)
	}
	huge, err := hugeSigner.SignSize(1<<63+5, root, int64(now))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(huge)
	pub := key.Public()
	fallback, err := sunlight.NewRFC6962Verifier(fuzzLogOrigin, pub)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, signed []byte) {
		// head's own verification: a tree head it accepts has a size an
		// int64 holds, and tree_size is only ever a huge size's.
		head, headErr := openCheckpoint(signed, pub)
		var headVE *verifyError
		if headErr == nil && head.Size < 0 {
			t.Fatalf("checkpoint accepted with size %d", head.Size)
		}
		if errors.As(headErr, &headVE) && headVE.check == CheckTreeSize {
			text, _, _ := strings.Cut(string(signed), "\n\n")
			if _, ok := hugeTreeSize(text + "\n"); !ok {
				t.Fatalf("tree_size failure for %q: %v", signed, headErr)
			}
		}
		origin, _, _ := strings.Cut(string(signed), "\n")
		v, err := sunlight.NewRFC6962Verifier(origin, pub)
		verifier := v
		if err != nil {
			// head stops here; the note is still fuzzed, unverified.
			verifier = fallback
		}
		n, err := note.Open(signed, note.VerifierList(verifier))
		if err != nil {
			var unverified *note.UnverifiedNoteError
			if errors.As(err, &unverified) {
				torchwood.ParseCheckpoint(unverified.Note.Text)
				for _, s := range unverified.Note.UnverifiedSigs {
					sunlight.RFC6962SignatureTimestamp(s)
				}
			}
			return
		}
		if v == nil {
			// Only the fallback can have verified: the origin is not the first line.
			origin = fuzzLogOrigin
		}
		if len(n.Sigs) == 0 {
			t.Fatal("note.Open verified a note without signatures")
		}
		cp, err := torchwood.ParseCheckpoint(n.Text)
		if err != nil || cp.Origin != origin {
			t.Fatalf("a verified checkpoint does not parse as one of origin %q: %q, %v", origin, cp.Origin, err)
		}
		if v != nil && (headErr != nil || head.Size != cp.N || head.Root != cp.Hash) {
			t.Fatalf("sunlight verifies tree %d %x, head gives %+v, %v", cp.N, cp.Hash, head, headErr)
		}
		for _, s := range n.Sigs {
			if ms, err := sunlight.RFC6962SignatureTimestamp(s); err == nil && ms < 0 {
				t.Fatalf("negative timestamp %d", ms)
			}
		}
	})
}

// FuzzSTH: an RFC 6962 get-sth answer goes through the same decoding and
// signature check as head (certificate-transparency-go's GetSTHResponse,
// ToSignedTreeHead and SignatureVerifier). None may panic, and a tree head
// that verifies is one the log signed: the fuzzer cannot forge a signature,
// so a verified head with another size, time or root is a verification bug.
func FuzzSTH(f *testing.F) {
	log := ctlogfake.New(f)
	verifier, err := ct.NewSignatureVerifier(mustPublicKey(f, log.PublicKeyDER()))
	if err != nil {
		f.Fatal(err)
	}
	type head struct {
		size, ts uint64
		root     [32]byte
	}
	signed := map[head]bool{}
	for i, size := range []uint64{0, 1, 1000, 1 << 40} {
		root := sha256.Sum256([]byte{byte(i)})
		ts := uint64(1750000000000 + i)
		sth := log.SignSTH(size, ts, root)
		signed[head{size, ts, root}] = true
		sig, err := ctls.Marshal(sth.TreeHeadSignature)
		if err != nil {
			f.Fatal(err)
		}
		body, err := json.Marshal(ct.GetSTHResponse{TreeSize: size, Timestamp: ts, SHA256RootHash: root[:], TreeHeadSignature: sig})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	f.Add([]byte(`{"tree_size":1,"timestamp":1,"sha256_root_hash":"","tree_head_signature":""}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var r ct.GetSTHResponse
		if json.Unmarshal(body, &r) != nil {
			return
		}
		sth, err := r.ToSignedTreeHead()
		if err != nil {
			return
		}
		if verifier.VerifySTHSignature(*sth) != nil {
			return
		}
		if !signed[head{sth.TreeSize, sth.Timestamp, sth.SHA256RootHash}] {
			t.Fatalf("a tree head the log never signed verifies: size %d, time %d, root %x", sth.TreeSize, sth.Timestamp, sth.SHA256RootHash)
		}
	})
}

func mustPublicKey(tb testing.TB, der []byte) crypto.PublicKey {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
