package main

// The RFC 6962 log: get-entries answers for aligned batches are JSON
// precomputed at start, others are built on the fly; proofs come from the
// stored tree.

import (
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	ct "github.com/google/certificate-transparency-go"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/ct-exporter/ct_exporter/internal/staticlogfake"
)

type rfcLog struct {
	g      *Generator
	n      int64
	batch  int64
	bodies [][]byte // get-entries answers for [k·batch, (k+1)·batch-1]
	tree   *staticlogfake.Tree
	root   [32]byte
	sth    []byte // get-sth answer
	stats  *stats
}

// buildRFC6962 precomputes the answers for entries.
func buildRFC6962(g *Generator, entries []Entry, batch int64, key *ecdsa.PrivateKey, ts int64, st *stats) (*rfcLog, error) {
	n := int64(len(entries))
	l := &rfcLog{g: g, n: n, batch: batch, stats: st}
	l.bodies = make([][]byte, (n+batch-1)/batch)
	leaves := make([]byte, 32*n)
	parallel(len(l.bodies), func(k int) {
		lo, hi := int64(k)*batch, min(int64(k+1)*batch, n)
		l.bodies[k] = appendEntriesJSON(nil, entries[lo:hi], leaves[32*lo:32*hi])
	})
	l.tree = staticlogfake.NewTree(leaves)
	var err error
	if l.root, err = l.tree.Root(n); err != nil {
		return nil, err
	}
	sig, err := staticlogfake.SignTreeHead(key, n, ts, l.root)
	if err != nil {
		return nil, err
	}
	l.sth, err = json.Marshal(ct.GetSTHResponse{
		TreeSize: uint64(n), Timestamp: uint64(ts), SHA256RootHash: l.root[:], TreeHeadSignature: sig,
	})
	return l, err
}

// bodySize is the exact length of appendEntriesJSON's output.
func bodySize(entries []Entry) int {
	n := len(`{"entries":[]}`)
	if len(entries) > 0 {
		n-- // no comma after the last
	}
	for i := range entries {
		e := &entries[i]
		leaf := 17 + len(e.Cert)
		extra := len(e.CA.chainTLS)
		if e.Precert {
			leaf += 32
			extra += 3 + len(e.PreCert)
		}
		n += len(`{"leaf_input":"","extra_data":""},`) + base64.StdEncoding.EncodedLen(leaf) + base64.StdEncoding.EncodedLen(extra)
	}
	return n
}

func appendU24(dst, p []byte) []byte {
	n := len(p)
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n))
	return append(dst, p...)
}

// appendLeafInput appends the entry's RFC 6962 MerkleTreeLeaf (no extensions).
func (e *Entry) appendLeafInput(dst []byte) []byte {
	dst = append(dst, 0, 0) // v1, timestamped_entry
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Timestamp))
	if e.Precert {
		dst = append(dst, 0, 1)
		dst = append(dst, e.CA.keyHash[:]...)
	} else {
		dst = append(dst, 0, 0)
	}
	dst = appendU24(dst, e.Cert)
	return append(dst, 0, 0)
}

// appendExtraData appends the entry's RFC 6962 extra_data: a
// PrecertChainEntry or a certificate chain.
func (e *Entry) appendExtraData(dst []byte) []byte {
	if e.Precert {
		dst = appendU24(dst, e.PreCert)
	}
	return append(dst, e.CA.chainTLS...)
}

// appendEntriesJSON appends a get-entries answer; hashes, when not nil,
// receives the leaf hashes.
func appendEntriesJSON(dst []byte, entries []Entry, hashes []byte) []byte {
	if dst == nil {
		dst = make([]byte, 0, bodySize(entries))
	}
	dst = append(dst, `{"entries":[`...)
	var buf []byte
	for i := range entries {
		e := &entries[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		buf = e.appendLeafInput(buf[:0])
		if hashes != nil {
			h := tlog.RecordHash(buf)
			copy(hashes[32*i:], h[:])
		}
		dst = append(dst, `{"leaf_input":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, buf)
		dst = append(dst, `","extra_data":"`...)
		// extra_data ends with the CA's chain, whose base64 is precomputed.
		buf = buf[:0]
		if e.Precert {
			buf = appendU24(buf, e.PreCert)
		}
		dst = appendBase64WithChain(dst, buf, e.CA)
		dst = append(dst, `"}`...)
	}
	return append(dst, "]}"...)
}

// appendBase64WithChain appends the base64 of head followed by c's chain.
func appendBase64WithChain(dst, head []byte, c *ca) []byte {
	r := len(head) % 3
	full := len(head) - r
	dst = base64.StdEncoding.AppendEncode(dst, head[:full])
	if r > 0 {
		var group [3]byte
		copy(group[:], head[full:])
		copy(group[r:], c.chainTLS)
		dst = base64.StdEncoding.AppendEncode(dst, group[:])
	}
	return append(dst, c.chainB64[r]...)
}

func (l *rfcLog) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /ct/v1/get-sth", func(w http.ResponseWriter, r *http.Request) {
		l.stats.reply(w, "get-sth", "application/json", l.sth)
	})
	mux.HandleFunc("GET /ct/v1/get-entries", l.getEntries)
	mux.HandleFunc("GET /ct/v1/get-sth-consistency", l.getConsistency)
	mux.HandleFunc("GET /ct/v1/get-entry-and-proof", l.getEntryAndProof)
	mux.HandleFunc("GET /ct/v1/get-roots", func(w http.ResponseWriter, r *http.Request) {
		var rsp ct.GetRootsResponse
		for _, c := range l.g.roots {
			rsp.Certificates = append(rsp.Certificates, base64.StdEncoding.EncodeToString(c.der))
		}
		l.replyJSON(w, "get-roots", rsp)
	})
}

func (l *rfcLog) replyJSON(w http.ResponseWriter, kind string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	l.stats.reply(w, kind, "application/json", body)
}

// params parses non-negative integer query parameters.
func params(w http.ResponseWriter, r *http.Request, names ...string) ([]int64, bool) {
	out := make([]int64, len(names))
	for i, n := range names {
		v, err := strconv.ParseInt(r.URL.Query().Get(n), 10, 64)
		if err != nil || v < 0 {
			http.Error(w, fmt.Sprintf("bad parameter %q", n), http.StatusBadRequest)
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

func (l *rfcLog) getEntries(w http.ResponseWriter, r *http.Request) {
	p, ok := params(w, r, "start", "end")
	if !ok {
		return
	}
	start, end := p[0], p[1]
	if start > end || start >= l.n {
		http.Error(w, "start beyond end or the tree size", http.StatusBadRequest)
		return
	}
	// As real logs, answer at most a batch.
	end = min(end, l.n-1, start+l.batch-1)
	if start%l.batch == 0 && end == min(start+l.batch-1, l.n-1) {
		l.stats.reply(w, "get-entries", "application/json", l.bodies[start/l.batch])
		return
	}
	entries := make([]Entry, 0, end-start+1)
	for i := start; i <= end; i++ {
		entries = append(entries, l.g.Entry(i))
	}
	l.stats.reply(w, "get-entries-unaligned", "application/json", appendEntriesJSON(nil, entries, nil))
}

func (l *rfcLog) getConsistency(w http.ResponseWriter, r *http.Request) {
	p, ok := params(w, r, "first", "second")
	if !ok {
		return
	}
	first, second := p[0], p[1]
	if first > second || second > l.n {
		http.Error(w, "bad tree sizes", http.StatusBadRequest)
		return
	}
	rsp := ct.GetSTHConsistencyResponse{Consistency: [][]byte{}}
	if first > 0 && first < second {
		proof, err := tlog.ProveTree(second, first, l.tree)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, h := range proof {
			rsp.Consistency = append(rsp.Consistency, h[:])
		}
	}
	l.replyJSON(w, "get-sth-consistency", rsp)
}

func (l *rfcLog) getEntryAndProof(w http.ResponseWriter, r *http.Request) {
	p, ok := params(w, r, "leaf_index", "tree_size")
	if !ok {
		return
	}
	idx, size := p[0], p[1]
	if size == 0 || size > l.n || idx >= size {
		http.Error(w, "bad leaf_index or tree_size", http.StatusBadRequest)
		return
	}
	proof, err := tlog.ProveRecord(size, idx, l.tree)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	e := l.g.Entry(idx)
	rsp := ct.GetEntryAndProofResponse{
		LeafInput: e.appendLeafInput(nil), ExtraData: e.appendExtraData(nil), AuditPath: [][]byte{},
	}
	for _, h := range proof {
		rsp.AuditPath = append(rsp.AuditPath, h[:])
	}
	l.replyJSON(w, "get-entry-and-proof", rsp)
}
