package staticlogfake

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	mathrand "math/rand/v2"

	"filippo.io/sunlight"
	ct "github.com/google/certificate-transparency-go"
	ctls "github.com/google/certificate-transparency-go/tls"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Signer signs checkpoints as Sunlight does: a signed note whose RFC 6962
// signature line (sunlight's injected signer: key ID from the origin and
// the log ID, body the timestamp and the TreeHeadSignature) comes with an
// Ed25519 witness signature under the same name and two grease lines, in
// random order, so that clients are exercised on what they must skip.
type Signer struct {
	origin  string
	key     *ecdsa.PrivateKey
	witness note.Signer
}

// NewSigner returns a signer for the log named origin (the checkpoint's
// first line) whose RFC 6962 key is key. Its witness key is new.
func NewSigner(origin string, key *ecdsa.PrivateKey) (*Signer, error) {
	skey, _, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return nil, fmt.Errorf("staticlogfake: witness key for %q: %w", origin, err)
	}
	w, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("staticlogfake: witness key for %q: %w", origin, err)
	}
	return &Signer{origin: origin, key: key, witness: w}, nil
}

// Origin is the log's name, the checkpoint's first line.
func (s *Signer) Origin() string { return s.origin }

// Sign returns the signed checkpoint of tree, timestamped ts (ms since
// the epoch).
func (s *Signer) Sign(tree tlog.Tree, ts int64) ([]byte, error) {
	return s.SignSize(uint64(tree.N), tree.Hash, ts)
}

// SignSize is Sign for a tree of any size, 2^63 and beyond included, which
// no log reaches and tlog.Tree cannot hold, but a misbehaving log's key can
// still sign.
func (s *Signer) SignSize(size uint64, root tlog.Hash, ts int64) ([]byte, error) {
	sig, err := signTreeHead(s.key, size, ts, root)
	if err != nil {
		return nil, err
	}
	var rs note.Signer
	if size <= math.MaxInt64 {
		// It checks the signature with sunlight's verifier, as clients will.
		rs, err = sunlight.NewRFC6962InjectedSigner(s.origin, s.key.Public(), sig, ts)
	} else {
		// sunlight's verifier refuses such a size whatever the signature:
		// the same signature line, unchecked.
		var v note.Verifier
		v, err = sunlight.NewRFC6962Verifier(s.origin, s.key.Public())
		if v != nil {
			rs = rawSigner{v, append(binary.BigEndian.AppendUint64(nil, uint64(ts)), sig...)}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("staticlogfake: checkpoint signer: %w", err)
	}
	signers := []note.Signer{rs, s.witness}
	mathrand.Shuffle(len(signers), func(i, j int) { signers[i], signers[j] = signers[j], signers[i] })
	// torchwood.Checkpoint's text, for any size.
	text := fmt.Sprintf("%s\n%d\n%s\n", s.origin, size, base64.StdEncoding.EncodeToString(root[:]))
	signed, err := note.Sign(&note.Note{Text: text, UnverifiedSigs: grease(s.origin)}, signers...)
	if err != nil {
		return nil, fmt.Errorf("staticlogfake: signing checkpoint %d: %w", size, err)
	}
	return signed, nil
}

// rawSigner gives a precomputed note signature under a verifier's name and
// key hash.
type rawSigner struct {
	v   note.Verifier
	sig []byte
}

func (s rawSigner) Name() string                { return s.v.Name() }
func (s rawSigner) KeyHash() uint32             { return s.v.KeyHash() }
func (s rawSigner) Sign([]byte) ([]byte, error) { return s.sig, nil }

// grease returns signature lines no client knows a key for, one under an
// unknown name and one under the log's own name, as Sunlight adds.
func grease(origin string) []note.Signature {
	g1 := make([]byte, 5+mathrand.IntN(100))
	rand.Read(g1)
	g2 := make([]byte, 5+mathrand.IntN(100))
	rand.Read(g2)
	out := []note.Signature{
		{Name: "grease.invalid", Hash: binary.BigEndian.Uint32(g1), Base64: base64.StdEncoding.EncodeToString(g1)},
		{Name: origin, Hash: binary.BigEndian.Uint32(g2), Base64: base64.StdEncoding.EncodeToString(g2)},
	}
	mathrand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// SignTreeHead returns the TLS-encoded DigitallySigned TreeHeadSignature
// of RFC 6962 §3.5 over a tree of size leaves with root hash root at ts
// (ms), which both a get-sth answer and a checkpoint carry.
func SignTreeHead(key *ecdsa.PrivateKey, size, ts int64, root [32]byte) ([]byte, error) {
	return signTreeHead(key, uint64(size), ts, root)
}

func signTreeHead(key *ecdsa.PrivateKey, size uint64, ts int64, root [32]byte) ([]byte, error) {
	input, err := ct.SerializeSTHSignatureInput(ct.SignedTreeHead{
		Version: ct.V1, TreeSize: size, Timestamp: uint64(ts), SHA256RootHash: ct.SHA256Hash(root),
	})
	if err != nil {
		return nil, fmt.Errorf("staticlogfake: tree head %d: %w", size, err)
	}
	ds, err := ctls.CreateSignature(*key, ctls.SHA256, input)
	if err != nil {
		return nil, fmt.Errorf("staticlogfake: signing tree head %d: %w", size, err)
	}
	return ctls.Marshal(ds)
}
