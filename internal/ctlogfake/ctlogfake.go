// Package ctlogfake is an httptest fake of an RFC 6962 Certificate
// Transparency log, for tests of a CT log monitor.
//
// It is a real log on the wire: entries are TLS-encoded MerkleTreeLeaf
// structures in a real RFC 6962 Merkle tree, tree heads are signed with a
// real ECDSA P-256 key, and proofs are real inclusion and consistency
// proofs, all in the JSON that RFC 6962 §4 and certificate-transparency-go's
// types define. Unlike a real log it never advances on its own: entries
// appended with AddCert, AddPrecert, AddPrecertEntry, AddRaw or
// AddRawPrecert stay invisible to get-entries until Publish signs a tree
// head that covers them.
//
// It also misbehaves on demand: bad STH signatures, rollbacks (ServeSTH),
// split views (Fork), corrupted entries, HTTP errors with Retry-After, and
// slowness (SetDelay).
package ctlogfake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ct "github.com/google/certificate-transparency-go"
	ctls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// DefaultMaxBatch is how many entries get-entries returns at most when
// MaxBatch is not set.
const DefaultMaxBatch = 256

// Endpoint names, as Fail, SetDelay and Requests take them.
const (
	GetSTH            = "get-sth"
	GetEntries        = "get-entries"
	GetSTHConsistency = "get-sth-consistency"
	GetProofByHash    = "get-proof-by-hash"
	GetEntryAndProof  = "get-entry-and-proof"
	GetRoots          = "get-roots"
)

const pathPrefix = "/ct/v1/"

// Log is a running fake CT log. Its URL plus "/" is the log's base URL;
// the endpoints are under URL + "/ct/v1/".
type Log struct {
	*httptest.Server

	// MaxBatch caps how many entries one get-entries answers with, as real
	// logs return fewer than asked (typically 256 to 1000). Zero or less
	// means DefaultMaxBatch. Set it before the log serves requests.
	MaxBatch int

	t     testing.TB
	key   *ecdsa.PrivateKey
	spki  []byte
	logID [32]byte

	done      chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex
	entries   []entry
	tree      *testonly.Tree
	byHash    map[[32]byte]int64 // leaf hash -> first index
	roots     [][]byte
	rootSeen  map[string]bool
	published *ct.SignedTreeHead
	now       func() time.Time

	// Faults.
	badSig     bool
	badSigFor  *ct.SignedTreeHead // the STH badSigSTH was made from
	badSigSTH  *ct.SignedTreeHead
	override   *ct.SignedTreeHead
	fork       bool
	forkFor    *ct.SignedTreeHead
	forkSTH    *ct.SignedTreeHead
	corrupt    map[int64]bool
	fails      []*failRule
	delays     map[string]time.Duration
	counts     map[string]int
	countTotal int
}

type entry struct {
	leafInput []byte
	extraData []byte
	hash      [32]byte
	certEnd   int // offset just past the certificate / TBS bytes in leafInput; 0 if empty
}

type failRule struct {
	endpoint   string
	left       int // < 0: until ClearFaults
	status     int
	retryAfter time.Duration
}

// New starts a fake log with a new P-256 key and an empty published tree
// head; t.Cleanup closes it.
func New(t testing.TB) *Log {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	l := &Log{
		t:        t,
		key:      key,
		spki:     spki,
		logID:    sha256.Sum256(spki),
		done:     make(chan struct{}),
		tree:     testonly.New(rfc6962.DefaultHasher),
		byHash:   make(map[[32]byte]int64),
		rootSeen: make(map[string]bool),
		now:      time.Now,
		corrupt:  make(map[int64]bool),
		delays:   make(map[string]time.Duration),
		counts:   make(map[string]int),
	}
	l.published = l.sign(0, uint64(time.Now().UnixMilli()), l.rootAt(0))
	l.Server = httptest.NewServer(http.HandlerFunc(l.serveHTTP))
	t.Cleanup(l.shutdown)
	return l
}

// shutdown releases delayed handlers and closes the server.
func (l *Log) shutdown() {
	l.closeOnce.Do(func() { close(l.done) })
	l.Server.Close()
}

// PublicKeyDER is the log's public key as a DER SubjectPublicKeyInfo.
func (l *Log) PublicKeyDER() []byte { return append([]byte(nil), l.spki...) }

// LogID is the SHA-256 of the DER SubjectPublicKeyInfo.
func (l *Log) LogID() [32]byte { return l.logID }

// AddCert appends an x509_entry for leaf (DER) whose extra_data is the
// certificate chain (DER, issuer first). It returns the leaf index.
func (l *Log) AddCert(leaf []byte, chain ...[]byte) int64 {
	l.t.Helper()
	ts := uint64(time.Now().UnixMilli())
	mtl := ct.CreateX509MerkleTreeLeaf(ct.ASN1Cert{Data: leaf}, ts)
	input, err := ctls.Marshal(*mtl)
	if err != nil {
		l.t.Fatalf("ctlogfake: AddCert: encoding MerkleTreeLeaf: %v", err)
	}
	extra, err := ctls.Marshal(ct.CertificateChain{Entries: asn1Certs(chain)})
	if err != nil {
		l.t.Fatalf("ctlogfake: AddCert: encoding certificate chain: %v", err)
	}
	return l.append(input, extra, len(input)-2, chain)
}

// AddPrecert appends a precert_entry for precert (DER, with the critical CT
// poison) issued by issuer (DER), as RFC 6962 §3.2 builds it: the
// TBSCertificate without the poison and the SHA-256 of the issuer's
// SubjectPublicKeyInfo. The extra_data is a PrecertChainEntry whose
// certificate chain is issuer followed by chain (chain may repeat issuer
// first; it is not added twice). When issuer is a precertificate signing
// certificate (CT extended key usage), chain[0] must be the CA that issues
// the final certificate, and the TBSCertificate's issuer is rewritten as
// RFC 6962 says. It returns the leaf index.
func (l *Log) AddPrecert(precert []byte, issuer []byte, chain ...[]byte) int64 {
	l.t.Helper()
	if len(chain) > 0 && string(chain[0]) == string(issuer) {
		chain = chain[1:]
	}
	full := append([][]byte{issuer}, chain...)
	// Only the precertificate, its issuer and, after a precertificate
	// signing certificate, the next CA need to parse.
	var parsed []*ctx509.Certificate
	for i, der := range append([][]byte{precert}, full...) {
		c, err := ctx509.ParseCertificate(der)
		if ctx509.IsFatal(err) {
			l.t.Fatalf("ctlogfake: AddPrecert: parsing certificate %d: %v", i, err)
		}
		parsed = append(parsed, c)
		if i == 2 || (i == 1 && !ct.IsPreIssuer(c)) {
			break
		}
	}
	ts := uint64(time.Now().UnixMilli())
	mtl, err := ct.MerkleTreeLeafFromChain(parsed, ct.PrecertLogEntryType, ts)
	if err != nil {
		l.t.Fatalf("ctlogfake: AddPrecert: %v", err)
	}
	input, err := ctls.Marshal(*mtl)
	if err != nil {
		l.t.Fatalf("ctlogfake: AddPrecert: encoding MerkleTreeLeaf: %v", err)
	}
	extra, err := ctls.Marshal(ct.PrecertChainEntry{
		PreCertificate:   ct.ASN1Cert{Data: precert},
		CertificateChain: asn1Certs(full),
	})
	if err != nil {
		l.t.Fatalf("ctlogfake: AddPrecert: encoding PrecertChainEntry: %v", err)
	}
	return l.append(input, extra, len(input)-2, full)
}

// AddPrecertEntry appends a precert_entry for a TBSCertificate the caller
// made, for TBS bytes certificate-transparency-go cannot parse or build: the
// leaf holds tbs and issuerKeyHash as given, the extra_data is a well-formed
// PrecertChainEntry of precert (non-empty) and chain (issuer first). It
// returns the leaf index.
func (l *Log) AddPrecertEntry(tbs []byte, issuerKeyHash [32]byte, precert []byte, chain ...[]byte) int64 {
	l.t.Helper()
	input, certEnd := l.rawLeaf("AddPrecertEntry", ct.PrecertLogEntryType, issuerKeyHash[:], tbs)
	extra, err := ctls.Marshal(ct.PrecertChainEntry{
		PreCertificate:   ct.ASN1Cert{Data: precert},
		CertificateChain: asn1Certs(chain),
	})
	if err != nil {
		l.t.Fatalf("ctlogfake: AddPrecertEntry: encoding PrecertChainEntry: %v", err)
	}
	return l.append(input, extra, certEnd, chain)
}

// AddRawPrecert appends a precert_entry whose leaf TBSCertificate and
// extra_data are arbitrary bytes, sent as given: empty, garbage, or a real
// PrecertChainEntry whose precertificate does not match the leaf. The
// issuer key hash is all zeros. It returns the leaf index.
func (l *Log) AddRawPrecert(tbs, extraData []byte) int64 {
	l.t.Helper()
	input, certEnd := l.rawLeaf("AddRawPrecert", ct.PrecertLogEntryType, make([]byte, 32), tbs)
	return l.append(input, clone(extraData), certEnd, nil)
}

// AddRaw appends a leaf whose certificate bytes are arbitrary, for malformed
// entries. For ct.X509LogEntryType certOrTBS is the certificate and the
// extra_data an empty chain; for ct.PrecertLogEntryType it is the
// TBSCertificate (with an all-zero issuer key hash) and also the extra_data's
// pre_certificate. Other entry types are encoded like an x509_entry with that
// type number. Empty certOrTBS is allowed although RFC 6962 forbids it.
func (l *Log) AddRaw(entryType ct.LogEntryType, certOrTBS []byte) int64 {
	l.t.Helper()
	var keyHash []byte
	if entryType == ct.PrecertLogEntryType {
		keyHash = make([]byte, 32)
	}
	input, certEnd := l.rawLeaf("AddRaw", entryType, keyHash, certOrTBS)
	var extra []byte
	if entryType == ct.PrecertLogEntryType {
		extra = appendUint24Bytes(nil, certOrTBS) // pre_certificate
	}
	extra = append(extra, 0, 0, 0) // empty certificate_chain
	return l.append(input, extra, certEnd, nil)
}

// rawLeaf encodes a MerkleTreeLeaf by hand, so that any bytes fit (ct-go's
// encoder refuses an empty certificate or TBS): version, leaf type, now,
// entry type, the issuer key hash when given, body with a uint24 length and
// no CtExtensions. certEnd is the offset just past body, 0 when body is
// empty.
func (l *Log) rawLeaf(caller string, entryType ct.LogEntryType, issuerKeyHash, body []byte) (input []byte, certEnd int) {
	l.t.Helper()
	if len(body) >= 1<<24 {
		l.t.Fatalf("ctlogfake: %s: %d bytes do not fit a uint24 length", caller, len(body))
	}
	ts := uint64(time.Now().UnixMilli())
	input = []byte{byte(ct.V1), byte(ct.TimestampedEntryLeafType)}
	input = binary.BigEndian.AppendUint64(input, ts)
	input = binary.BigEndian.AppendUint16(input, uint16(entryType))
	input = append(input, issuerKeyHash...)
	input = appendUint24Bytes(input, body)
	if len(body) > 0 {
		certEnd = len(input)
	}
	return append(input, 0, 0), certEnd // no CtExtensions
}

func appendUint24Bytes(b, data []byte) []byte {
	n := len(data)
	b = append(b, byte(n>>16), byte(n>>8), byte(n))
	return append(b, data...)
}

func asn1Certs(ders [][]byte) []ct.ASN1Cert {
	out := make([]ct.ASN1Cert, 0, len(ders))
	for _, d := range ders {
		out = append(out, ct.ASN1Cert{Data: d})
	}
	return out
}

func (l *Log) append(input, extra []byte, certEnd int, chain [][]byte) int64 {
	h := [32]byte(rfc6962.DefaultHasher.HashLeaf(input))
	l.mu.Lock()
	defer l.mu.Unlock()
	idx := int64(len(l.entries))
	l.entries = append(l.entries, entry{leafInput: input, extraData: extra, hash: h, certEnd: certEnd})
	l.tree.Append(h[:])
	if _, ok := l.byHash[h]; !ok {
		l.byHash[h] = idx
	}
	if len(chain) > 0 {
		root := chain[len(chain)-1]
		if !l.rootSeen[string(root)] {
			l.rootSeen[string(root)] = true
			l.roots = append(l.roots, root)
		}
	}
	return idx
}

// Size is the number of entries appended, published or not.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.entries))
}

// LeafHash is the RFC 6962 leaf hash of the entry at index as appended
// (CorruptEntry does not change it).
func (l *Log) LeafHash(index int64) [32]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries[index].hash
}

// Entry is the entry at index as appended (CorruptEntry does not change it).
func (l *Log) Entry(index int64) ct.LeafEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[index]
	return ct.LeafEntry{LeafInput: clone(e.leafInput), ExtraData: clone(e.extraData)}
}

// RootAt is the root hash of the tree of the first size entries appended.
func (l *Log) RootAt(size int64) [32]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rootAt(uint64(size))
}

func (l *Log) rootAt(size uint64) [32]byte { return [32]byte(l.tree.HashAt(size)) }

// SetSTHTimestamp sets the clock Publish reads STH timestamps from
// (time.Now when nil).
func (l *Log) SetSTHTimestamp(f func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f == nil {
		f = time.Now
	}
	l.now = f
}

// Publish signs a tree head covering every entry appended so far and serves
// it from get-sth from now on. get-entries serves up to its tree size.
func (l *Log) Publish() *ct.SignedTreeHead {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := uint64(len(l.entries))
	l.published = l.sign(size, uint64(l.now().UnixMilli()), l.rootAt(size))
	return copySTH(l.published)
}

// Published is the tree head Publish last signed (the empty tree's before
// the first Publish), whatever get-sth is made to serve.
func (l *Log) Published() *ct.SignedTreeHead {
	l.mu.Lock()
	defer l.mu.Unlock()
	return copySTH(l.published)
}

// SignSTH signs an arbitrary tree head with the log's key, e.g. to serve a
// correctly signed but inconsistent one with ServeSTH.
func (l *Log) SignSTH(treeSize, timestamp uint64, root [32]byte) *ct.SignedTreeHead {
	return copySTH(l.sign(treeSize, timestamp, root))
}

func (l *Log) sign(treeSize, timestamp uint64, root [32]byte) *ct.SignedTreeHead {
	sth := &ct.SignedTreeHead{
		Version:        ct.V1,
		TreeSize:       treeSize,
		Timestamp:      timestamp,
		SHA256RootHash: ct.SHA256Hash(root),
		LogID:          ct.SHA256Hash(l.logID),
	}
	input, err := ct.SerializeSTHSignatureInput(*sth)
	if err != nil {
		panic(fmt.Sprintf("ctlogfake: serializing STH: %v", err))
	}
	sth.TreeHeadSignature = l.signBytes(input)
	return sth
}

func (l *Log) signBytes(data []byte) ct.DigitallySigned {
	// ct-go's tls.CreateSignature takes the ecdsa.PrivateKey by value.
	ds, err := ctls.CreateSignature(*l.key, ctls.SHA256, data)
	if err != nil {
		panic(fmt.Sprintf("ctlogfake: signing: %v", err))
	}
	return ct.DigitallySigned(ds)
}

func copySTH(s *ct.SignedTreeHead) *ct.SignedTreeHead {
	if s == nil {
		return nil
	}
	c := *s
	c.TreeHeadSignature.Signature = clone(s.TreeHeadSignature.Signature)
	return &c
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// ServeBadSTHSignature makes get-sth serve its tree head with a signature
// made by the log's key over different bytes (the root hash with a bit
// flipped), so it is well-formed but does not verify.
func (l *Log) ServeBadSTHSignature() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.badSig = true
}

// ServeSTH makes get-sth serve sth as it is (e.g. an older one from Publish,
// a rollback) instead of the published one; nil stops that. get-entries
// still serves up to the published tree size.
func (l *Log) ServeSTH(sth *ct.SignedTreeHead) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.override = copySTH(sth)
}

// Fork makes get-sth serve a split view of the published tree head: a
// correctly signed tree head of the same size and timestamp whose root is
// that of a tree whose last leaf differs (any other root for the empty
// tree). Entries and proofs still come from the real tree, so consistency
// and inclusion proofs do not verify against the forked root.
func (l *Log) Fork() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fork = true
}

// CorruptEntry makes get-entries and get-entry-and-proof serve the entry at
// index with the last byte of its certificate (or TBSCertificate) flipped in
// its lowest bit, or its timestamp's lowest bit flipped when the certificate
// is empty, so that its leaf hash no longer matches the tree.
func (l *Log) CorruptEntry(index int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.corrupt[index] = true
}

// Fail makes the next n requests to endpoint ("get-entries", "get-sth", …;
// "" for any) answer HTTP status with a short text body, and with a
// Retry-After header of whole seconds (rounded up) when retryAfter > 0.
// n <= 0 fails every request until ClearFaults. Rules are consumed in the
// order they were added.
func (l *Log) Fail(endpoint string, n int, status int, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n <= 0 {
		n = -1
	}
	l.fails = append(l.fails, &failRule{endpoint: normEndpoint(endpoint), left: n, status: status, retryAfter: retryAfter})
}

// SetDelay makes requests to endpoint ("" for any without a delay of its
// own) wait d before they are handled (faults included). A request whose
// client gives up is dropped at once. d <= 0 removes the delay.
func (l *Log) SetDelay(endpoint string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d <= 0 {
		delete(l.delays, normEndpoint(endpoint))
		return
	}
	l.delays[normEndpoint(endpoint)] = d
}

// ClearFaults removes every fault: bad signatures, ServeSTH, Fork, corrupt
// entries, failures and delays. Requests counts are kept.
func (l *Log) ClearFaults() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.badSig, l.badSigFor, l.badSigSTH = false, nil, nil
	l.override = nil
	l.fork, l.forkFor, l.forkSTH = false, nil, nil
	l.corrupt = make(map[int64]bool)
	l.fails = nil
	l.delays = make(map[string]time.Duration)
}

// Requests is how many requests endpoint received, failed, delayed or
// cancelled ones included ("" = all requests, unknown paths included).
func (l *Log) Requests(endpoint string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if endpoint == "" {
		return l.countTotal
	}
	return l.counts[normEndpoint(endpoint)]
}

func normEndpoint(e string) string {
	e = strings.TrimPrefix(e, "/")
	e = strings.TrimPrefix(e, "ct/v1/")
	return strings.TrimSuffix(e, "/")
}

// servedSTH is what get-sth answers with; l.mu must be held.
func (l *Log) servedSTH() *ct.SignedTreeHead {
	sth := l.published
	switch {
	case l.override != nil:
		sth = l.override
	case l.fork:
		if l.forkFor != l.published {
			l.forkFor, l.forkSTH = l.published, l.forked(l.published)
		}
		sth = l.forkSTH
	}
	if l.badSig {
		if l.badSigFor != sth {
			bad := copySTH(sth)
			other := *bad
			other.Version = ct.V1
			other.SHA256RootHash[0] ^= 0x01
			input, err := ct.SerializeSTHSignatureInput(other)
			if err != nil {
				panic(fmt.Sprintf("ctlogfake: serializing STH: %v", err))
			}
			bad.TreeHeadSignature = l.signBytes(input)
			l.badSigFor, l.badSigSTH = sth, bad
		}
		sth = l.badSigSTH
	}
	return sth
}

// forked signs a tree head like sth for a tree whose last leaf differs.
func (l *Log) forked(sth *ct.SignedTreeHead) *ct.SignedTreeHead {
	n := sth.TreeSize
	var root [32]byte
	if n == 0 {
		root = sha256.Sum256([]byte("ctlogfake fork of the empty tree"))
	} else {
		t := testonly.New(rfc6962.DefaultHasher)
		for i := uint64(0); i+1 < n; i++ {
			t.Append(l.tree.LeafHash(i))
		}
		alt := sha256.Sum256(append([]byte("ctlogfake fork"), l.tree.LeafHash(n-1)...))
		t.Append(rfc6962.DefaultHasher.HashLeaf(alt[:]))
		root = [32]byte(t.Hash())
	}
	return l.sign(n, sth.Timestamp, root)
}

// leafEntry is the entry at i as served; l.mu must be held.
func (l *Log) leafEntry(i int64) ct.LeafEntry {
	e := l.entries[i]
	le := ct.LeafEntry{LeafInput: e.leafInput, ExtraData: e.extraData}
	if l.corrupt[i] {
		b := clone(e.leafInput)
		if e.certEnd > 0 {
			b[e.certEnd-1] ^= 0x01
		} else {
			b[9] ^= 0x01 // lowest byte of the timestamp
		}
		le.LeafInput = b
	}
	return le
}

func (l *Log) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ep := normEndpoint(r.URL.Path)
	known := strings.HasPrefix(r.URL.Path, pathPrefix)

	l.mu.Lock()
	l.countTotal++
	l.counts[ep]++
	d, ok := l.delays[ep]
	if !ok {
		d = l.delays[""]
	}
	l.mu.Unlock()

	if d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return
		case <-l.done:
			timer.Stop()
			return
		}
	}

	l.mu.Lock()
	for i, f := range l.fails {
		if f.endpoint != "" && f.endpoint != ep {
			continue
		}
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				l.fails = append(l.fails[:i:i], l.fails[i+1:]...)
			}
		}
		l.mu.Unlock()
		if f.retryAfter > 0 {
			secs := (f.retryAfter + time.Second - 1) / time.Second
			w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
		}
		http.Error(w, fmt.Sprintf("ctlogfake: injected failure %d", f.status), f.status)
		return
	}
	l.mu.Unlock()

	var h func(r *http.Request) (any, int, string)
	switch {
	case !known:
	case ep == GetSTH:
		h = l.getSTH
	case ep == GetEntries:
		h = l.getEntries
	case ep == GetSTHConsistency:
		h = l.getSTHConsistency
	case ep == GetProofByHash:
		h = l.getProofByHash
	case ep == GetEntryAndProof:
		h = l.getEntryAndProof
	case ep == GetRoots:
		h = l.getRoots
	}
	if h == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rsp, status, msg := h(r)
	if status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	body, err := json.Marshal(rsp)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func bad(format string, args ...any) (any, int, string) {
	return nil, http.StatusBadRequest, fmt.Sprintf(format, args...)
}

// intParams parses the named non-negative decimal query parameters.
func intParams(r *http.Request, names ...string) ([]int64, error) {
	q := r.URL.Query()
	out := make([]int64, len(names))
	for i, n := range names {
		v := q.Get(n)
		if v == "" {
			return nil, fmt.Errorf("missing parameter %q", n)
		}
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad parameter %q: %v", n, err)
		}
		if x < 0 {
			return nil, fmt.Errorf("parameter %q is negative", n)
		}
		out[i] = x
	}
	return out, nil
}

func (l *Log) getSTH(*http.Request) (any, int, string) {
	l.mu.Lock()
	sth := copySTH(l.servedSTH())
	l.mu.Unlock()
	sig, err := ctls.Marshal(sth.TreeHeadSignature)
	if err != nil {
		return nil, http.StatusInternalServerError, err.Error()
	}
	return ct.GetSTHResponse{
		TreeSize:          sth.TreeSize,
		Timestamp:         sth.Timestamp,
		SHA256RootHash:    sth.SHA256RootHash[:],
		TreeHeadSignature: sig,
	}, http.StatusOK, ""
}

func (l *Log) getEntries(r *http.Request) (any, int, string) {
	p, err := intParams(r, "start", "end")
	if err != nil {
		return bad("%v", err)
	}
	start, end := p[0], p[1]
	if start > end {
		return bad("start %d > end %d", start, end)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	size := int64(l.published.TreeSize)
	if start >= size {
		return bad("start %d is beyond the tree size %d", start, size)
	}
	max := int64(l.MaxBatch)
	if max <= 0 {
		max = DefaultMaxBatch
	}
	end = min(end, size-1, start+max-1)
	rsp := ct.GetEntriesResponse{Entries: make([]ct.LeafEntry, 0, end-start+1)}
	for i := start; i <= end; i++ {
		rsp.Entries = append(rsp.Entries, l.leafEntry(i))
	}
	return rsp, http.StatusOK, ""
}

func (l *Log) getSTHConsistency(r *http.Request) (any, int, string) {
	p, err := intParams(r, "first", "second")
	if err != nil {
		return bad("%v", err)
	}
	first, second := uint64(p[0]), uint64(p[1])
	if first > second {
		return bad("first %d > second %d", first, second)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if second > l.tree.Size() {
		return bad("second %d is beyond the tree size %d", second, l.tree.Size())
	}
	rsp := ct.GetSTHConsistencyResponse{Consistency: [][]byte{}}
	if first == 0 || first == second {
		return rsp, http.StatusOK, "" // as Trillian answers: an empty proof
	}
	proof, err := l.tree.ConsistencyProof(first, second)
	if err != nil {
		return nil, http.StatusInternalServerError, err.Error()
	}
	rsp.Consistency = append(rsp.Consistency, proof...)
	return rsp, http.StatusOK, ""
}

func (l *Log) getProofByHash(r *http.Request) (any, int, string) {
	p, err := intParams(r, "tree_size")
	if err != nil {
		return bad("%v", err)
	}
	size := uint64(p[0])
	hv := r.URL.Query().Get("hash")
	if hv == "" {
		return bad("missing parameter %q", "hash")
	}
	hash, err := base64.StdEncoding.DecodeString(hv)
	if err != nil {
		return bad("bad parameter %q: %v", "hash", err)
	}
	if len(hash) != sha256.Size {
		return bad("hash is %d bytes, want %d", len(hash), sha256.Size)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if size == 0 || size > l.tree.Size() {
		return bad("tree_size %d is not in [1, %d]", size, l.tree.Size())
	}
	idx, ok := l.byHash[[32]byte(hash)]
	if !ok || uint64(idx) >= size {
		return nil, http.StatusNotFound, "no leaf with that hash in the tree of that size"
	}
	proof, err := l.tree.InclusionProof(uint64(idx), size)
	if err != nil {
		return nil, http.StatusInternalServerError, err.Error()
	}
	return ct.GetProofByHashResponse{LeafIndex: idx, AuditPath: append([][]byte{}, proof...)}, http.StatusOK, ""
}

func (l *Log) getEntryAndProof(r *http.Request) (any, int, string) {
	p, err := intParams(r, "leaf_index", "tree_size")
	if err != nil {
		return bad("%v", err)
	}
	idx, size := uint64(p[0]), uint64(p[1])
	l.mu.Lock()
	defer l.mu.Unlock()
	if size == 0 || size > l.tree.Size() {
		return bad("tree_size %d is not in [1, %d]", size, l.tree.Size())
	}
	if idx >= size {
		return bad("leaf_index %d >= tree_size %d", idx, size)
	}
	proof, err := l.tree.InclusionProof(idx, size)
	if err != nil {
		return nil, http.StatusInternalServerError, err.Error()
	}
	le := l.leafEntry(int64(idx))
	return ct.GetEntryAndProofResponse{
		LeafInput: le.LeafInput,
		ExtraData: le.ExtraData,
		AuditPath: append([][]byte{}, proof...),
	}, http.StatusOK, ""
}

func (l *Log) getRoots(*http.Request) (any, int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rsp := ct.GetRootsResponse{Certificates: []string{}}
	for _, r := range l.roots {
		rsp.Certificates = append(rsp.Certificates, base64.StdEncoding.EncodeToString(r))
	}
	return rsp, http.StatusOK, ""
}
