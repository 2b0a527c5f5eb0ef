// Package testpki makes real certificates for tests: CAs, precertificates
// and the final certificates that embed SCTs for them, signed with
// crypto/x509 exactly as a CA issuing through CT would; and self-signed
// TLS server certificates for an exporter the tests serve over HTTPS.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	ct "github.com/google/certificate-transparency-go"
	ctls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
)

var (
	oidCTPoison  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}
	oidCTSCTList = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
)

// CA is a certificate authority that can issue.
type CA struct {
	Cert *x509.Certificate
	DER  []byte
	Key  crypto.Signer
}

// NewRoot makes a self-signed root CA.
func NewRoot(cn, org string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := caTemplate(cn, org)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("testpki: root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, DER: der, Key: key}, nil
}

// NewIssuer makes an issuing CA (CN cn, O org) under a new root, as public
// CAs issue, and fails the test if it cannot.
func NewIssuer(t testing.TB, cn, org string) *CA {
	t.Helper()
	_, ca := NewChain(t, "Test Root", "Test PKI", cn, org)
	return ca
}

// NewChain makes a root (for a log's accepted roots) and an issuing CA
// under it, and fails the test if it cannot.
func NewChain(t testing.TB, rootCN, rootOrg, cn, org string) (root, issuer *CA) {
	t.Helper()
	root, err := NewRoot(rootCN, rootOrg)
	if err != nil {
		t.Fatal(err)
	}
	if issuer, err = root.NewIntermediate(cn, org); err != nil {
		t.Fatal(err)
	}
	return root, issuer
}

// NewIntermediate makes an intermediate CA signed by ca.
func (ca *CA) NewIntermediate(cn, org string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, caTemplate(cn, org), ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("testpki: intermediate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, DER: der, Key: key}, nil
}

func caTemplate(cn, org string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: cn, Organization: nonEmpty(org), Country: []string{"US"}},
		NotBefore:             time.Now().Add(-24 * time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// Leaf describes a certificate to issue. Zero values get sensible defaults.
type Leaf struct {
	CN        string
	DNSNames  []string
	IPs       []net.IP
	Serial    *big.Int
	NotBefore time.Time
	NotAfter  time.Time
	Key       crypto.Signer // the subject key; a new P-256 key when nil
	SCTs      int           // SCTs to embed in the final certificate
}

// Issued is one issuance: a precertificate and its final certificate.
type Issued struct {
	Precert []byte // DER, with the critical poison extension
	Final   []byte // DER, with the SCT list extension (when SCTs > 0)
	Key     crypto.Signer
}

func (ca *CA) leafTemplate(l *Leaf) (*x509.Certificate, error) {
	if l.Key == nil {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		l.Key = key
	}
	if l.Serial == nil {
		l.Serial = randomSerial()
	}
	if l.NotBefore.IsZero() {
		l.NotBefore = time.Now().Add(-time.Hour).Truncate(time.Second)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = l.NotBefore.Add(90 * 24 * time.Hour)
	}
	return &x509.Certificate{
		SerialNumber:          l.Serial,
		Subject:               pkix.Name{CommonName: l.CN},
		DNSNames:              l.DNSNames,
		IPAddresses:           l.IPs,
		NotBefore:             l.NotBefore,
		NotAfter:              l.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}, nil
}

// Issue makes a precertificate and the matching final certificate. Both carry
// the same TBSCertificate apart from the poison and SCT-list extensions.
func (ca *CA) Issue(l Leaf) (*Issued, error) {
	tmpl, err := ca.leafTemplate(&l)
	if err != nil {
		return nil, err
	}
	tmpl.ExtraExtensions = []pkix.Extension{{Id: oidCTPoison, Critical: true, Value: asn1.NullBytes}}
	pre, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, l.Key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("testpki: precertificate: %w", err)
	}
	tmpl.ExtraExtensions = nil
	if l.SCTs > 0 {
		list, err := ca.sctList(pre, l.SCTs)
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidCTSCTList, Value: list}}
	}
	final, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, l.Key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("testpki: final certificate: %w", err)
	}
	return &Issued{Precert: pre, Final: final, Key: l.Key}, nil
}

// sctList returns the extension value of an SCT list holding n SCTs from n
// test logs, each signed over the precertificate as RFC 6962 §3.2 says.
func (ca *CA) sctList(precert []byte, n int) ([]byte, error) {
	cert, err := ctx509.ParseCertificate(precert)
	if err != nil && ctx509.IsFatal(err) {
		return nil, err
	}
	tbs, err := ctx509.RemoveCTPoison(cert.RawTBSCertificate)
	if err != nil {
		return nil, err
	}
	entry := ct.LogEntry{Leaf: ct.MerkleTreeLeaf{
		Version:  ct.V1,
		LeafType: ct.TimestampedEntryLeafType,
		TimestampedEntry: &ct.TimestampedEntry{
			EntryType:    ct.PrecertLogEntryType,
			PrecertEntry: &ct.PreCert{IssuerKeyHash: sha256.Sum256(ca.Cert.RawSubjectPublicKeyInfo), TBSCertificate: tbs},
		},
	}}
	var list ctx509.SignedCertificateTimestampList
	for i := 0; i < n; i++ {
		logKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		spki, err := x509.MarshalPKIXPublicKey(logKey.Public())
		if err != nil {
			return nil, err
		}
		sct := ct.SignedCertificateTimestamp{
			SCTVersion: ct.V1,
			LogID:      ct.LogID{KeyID: sha256.Sum256(spki)},
			Timestamp:  uint64(time.Now().UnixMilli()),
		}
		entry.Leaf.TimestampedEntry.Timestamp = sct.Timestamp
		input, err := ct.SerializeSCTSignatureInput(sct, entry)
		if err != nil {
			return nil, err
		}
		digest := sha256.Sum256(input)
		sig, err := ecdsa.SignASN1(rand.Reader, logKey, digest[:])
		if err != nil {
			return nil, err
		}
		sct.Signature = ct.DigitallySigned{
			Algorithm: ctls.SignatureAndHashAlgorithm{Hash: ctls.SHA256, Signature: ctls.ECDSA},
			Signature: sig,
		}
		raw, err := ctls.Marshal(sct)
		if err != nil {
			return nil, err
		}
		list.SCTList = append(list.SCTList, ctx509.SerializedSCT{Val: raw})
	}
	raw, err := ctls.Marshal(list)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(raw)
}

// PEM encodes a DER certificate.
func PEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// SPKISHA256 is the SHA-256 of a key's SubjectPublicKeyInfo, the form
// authorized_keys takes.
func SPKISHA256(key crypto.PublicKey) [32]byte {
	spki, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		panic(err)
	}
	return sha256.Sum256(spki)
}

// TLSServer makes a self-signed TLS server certificate for an IP address,
// its key, and a pool holding the certificate for a client to trust, and
// fails the test if it cannot.
func TLSServer(t testing.TB, ip string) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ct_exporter test"},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certPEM, keyPEM, pool
}
