package loglist

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/internal/ctlogfake"
	"github.com/ct-exporter/ct_exporter/internal/testenv"
)

// signer is a test key that signs log lists as their publisher would.
type signer struct {
	name string
	key  crypto.Signer
}

func (s signer) publicDER(t *testing.T) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(s.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// sign is the detached signature of data: RSASSA-PKCS1-v1_5 with SHA-256
// (as Google signs log_list.json), or ECDSA with SHA-256 in ASN.1.
func (s signer) sign(t *testing.T, data []byte) []byte {
	t.Helper()
	digest := sha256.Sum256(data)
	sig, err := s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func rsaSigner(t *testing.T) signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{"rsa", k}
}

func ecdsaSigner(t *testing.T) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{"ecdsa", k}
}

// signedListServer serves /v3/log_list.json with an ETag (answering 304 to
// a request naming the current one, as gstatic does) and its detached
// signature at /v3/log_list.sig (404 when there is none).
type signedListServer struct {
	*httptest.Server
	mu          sync.Mutex
	list, sig   []byte
	version     int
	listGets    int
	sigGets     int
	notModified int
	always304   bool // answer 304 to every conditional request
}

func newSignedListServer(t *testing.T) *signedListServer {
	s := &signedListServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r.URL.Path {
		case "/v3/log_list.json":
			s.listGets++
			etag := fmt.Sprintf(`"v%d"`, s.version)
			if inm := r.Header.Get("If-None-Match"); inm != "" && (inm == etag || s.always304) {
				s.notModified++
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", etag)
			w.Write(s.list)
		case "/v3/log_list.sig":
			s.sigGets++
			if s.sig == nil {
				http.NotFound(w, r)
				return
			}
			w.Write(s.sig)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// serve publishes a new version: list, and sig as its signature (nil: none).
func (s *signedListServer) serve(list, sig []byte) {
	s.mu.Lock()
	s.list, s.sig = list, sig
	s.version++
	s.mu.Unlock()
}

func (s *signedListServer) counts() (listGets, sigGets, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listGets, s.sigGets, s.notModified
}

// accepted records what a loglist source accepted: its logs and timestamps.
type accepted struct {
	discoveries
	timestamps []time.Time
}

func (a *accepted) env() *ctsource.Env {
	return &ctsource.Env{Logger: promslog.NewNopLogger(), LogListAccepted: func(ts time.Time) { a.timestamps = append(a.timestamps, ts) }}
}

func (a *accepted) names() []string {
	var out []string
	for _, l := range a.logs {
		out = append(out, l.Name)
	}
	return out
}

// logListAt is a v3 list with the given log_list_timestamp.
func logListAt(t *testing.T, ts string, logs ...map[string]any) []byte {
	return []byte(strings.Replace(string(logListJSON(t, logs...)), `"2026-11-24T00:00:00Z"`, `"`+ts+`"`, 1))
}

// With a public key, a list is accepted only when its detached signature
// verifies over the exact bytes served, for an RSA key (Google's
// log_list.sig: PKCS#1 v1.5 with SHA-256) and an ECDSA key alike. A list
// tampered with after signing, signed by another key, or served without a
// signature is refused as bad_signature (once per poll, never as http_4xx):
// the previous list stays in effect, with its timestamp, and the refused
// list is fetched and refused again at the next poll (its ETag is not
// taken). A 304 only ever answers for the list in effect.
func TestSignedLogList(t *testing.T) {
	logKey := ctlogfake.New(t).PublicKeyDER()
	logA := listLog("A log", "https://a.example/", logKey, logState("usable"), nil)
	logB := listLog("B log", "https://b.example/", logKey, logState("usable"), nil)
	logEvil := listLog("Evil log", "https://evil.example/", logKey, logState("usable"), nil)
	rsaKey, ecKey := rsaSigner(t), ecdsaSigner(t)
	for _, tc := range []struct {
		key    signer
		others []signer // keys that must not verify its lists
	}{
		{rsaKey, []signer{rsaSigner(t), ecKey}},
		{ecKey, []signer{ecdsaSigner(t), rsaKey}},
	} {
		t.Run(tc.key.name, func(t *testing.T) {
			srv := newSignedListServer(t)
			errs := map[string]int{}
			var a accepted
			l, err := New("google", srv.URL+"/v3/log_list.json", []string{"usable"}, 200, time.Hour, 5*time.Second, func(r string) { errs[r]++ }, a.found)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.RequireSignature(tc.key.publicDER(t), srv.URL+"/v3/log_list.sig"); err != nil {
				t.Fatal(err)
			}
			l.http.BackoffBase, l.sigHTTP.BackoffBase = time.Millisecond, time.Millisecond
			env := a.env()
			poll := func() error { return l.Poll(context.Background(), env) }

			// A good signature: accepted, and its timestamp reported.
			v1 := logListAt(t, "2026-10-01T12:00:00Z", logA)
			srv.serve(v1, tc.key.sign(t, v1))
			if err := poll(); err != nil || a.calls != 1 || len(a.logs) != 1 {
				t.Fatalf("a correctly signed list: %v, %d calls, logs %v", err, a.calls, a.names())
			}
			if want := time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC); len(a.timestamps) != 1 || !a.timestamps[0].Equal(want) {
				t.Fatalf("timestamps reported %v, want [%v]", a.timestamps, want)
			}

			refused := 0
			expectRefused := func(what string) {
				t.Helper()
				refused++
				err := poll()
				if ctsource.ReasonOf(err) != ctsource.ReasonBadSignature || errs[ctsource.ReasonBadSignature] != refused {
					t.Fatalf("%s: %v, errors %v; want bad_signature counted %d times", what, err, errs, refused)
				}
				if !strings.Contains(err.Error(), "keeping the previous list") {
					t.Errorf("%s: the error %q does not say the previous list is kept", what, err)
				}
				if a.calls != 1 || len(a.logs) != 1 || a.logs[0].Name != "a_log" || len(a.timestamps) != 1 {
					t.Fatalf("%s replaced the list in effect: %d calls, logs %v, timestamps %v", what, a.calls, a.names(), a.timestamps)
				}
			}

			// Tampered after signing: a log added to the signed bytes.
			signed := logListAt(t, "2026-10-02T12:00:00Z", logA, logB)
			tampered := logListAt(t, "2026-10-02T12:00:00Z", logA, logB, logEvil)
			srv.serve(tampered, tc.key.sign(t, signed))
			lists, _, _ := srv.counts()
			expectRefused("a list tampered with after signing")
			expectRefused("the tampered list at the next poll")
			if gets, _, notModified := srv.counts(); gets != lists+2 || notModified != 0 {
				t.Fatalf("the tampered list was fetched %d times in 2 polls and answered 304 %d times: its ETag was taken", gets-lists, notModified)
			}
			// One byte changed (a space added) is tampering too.
			srv.serve(append([]byte(" "), signed...), tc.key.sign(t, signed))
			expectRefused("the signed list with one byte added")

			// Signed by another key.
			for _, other := range tc.others {
				v2 := logListAt(t, "2026-10-03T12:00:00Z", logA, logEvil)
				srv.serve(v2, other.sign(t, v2))
				expectRefused("a list signed by another " + other.name + " key")
			}

			// No signature at all (404).
			v2 := logListAt(t, "2026-10-04T12:00:00Z", logA, logEvil)
			srv.serve(v2, nil)
			expectRefused("a list without signature")
			expectRefused("the list without signature at the next poll")
			// An empty or garbage signature.
			srv.serve(v2, []byte{})
			expectRefused("a list with an empty signature")
			srv.serve(v2, []byte("<html>not a signature</html>"))
			expectRefused("a list with an HTML page for signature")
			if errs[ctsource.ReasonHTTP4xx] != 0 || errs[ctsource.ReasonBadResponse] != 0 {
				t.Fatalf("a refused list counted under other reasons too: %v", errs)
			}

			// A server answering 304 to every conditional request: the 304
			// is for the list in effect (its ETag is the one sent), which
			// stays; the refused list is never taken.
			srv.mu.Lock()
			srv.always304 = true
			srv.mu.Unlock()
			_, sigs, _ := srv.counts()
			if err := poll(); err != nil || a.calls != 1 || a.logs[0].Name != "a_log" || len(a.logs) != 1 {
				t.Fatalf("a 304 after refused lists: %v, %d calls, logs %v", err, a.calls, a.names())
			}
			if _, s, _ := srv.counts(); s != sigs {
				t.Fatal("a 304 for the list in effect fetched a signature")
			}
			srv.mu.Lock()
			srv.always304 = false
			srv.mu.Unlock()

			// A correctly signed new list is accepted.
			v3 := logListAt(t, "2026-10-05T12:00:00Z", logA, logB)
			srv.serve(v3, tc.key.sign(t, v3))
			if err := poll(); err != nil || a.calls != 2 || len(a.logs) != 2 || len(a.timestamps) != 2 || !a.timestamps[1].Equal(time.Date(2026, 10, 5, 12, 0, 0, 0, time.UTC)) {
				t.Fatalf("a correctly signed new list: %v, %d calls, logs %v, timestamps %v", err, a.calls, a.names(), a.timestamps)
			}
			// Unchanged: answered 304, nothing fetched or refused again.
			_, sigs, nms := srv.counts()
			if err := poll(); err != nil || a.calls != 2 {
				t.Fatalf("the accepted list unchanged: %v, %d calls", err, a.calls)
			}
			if _, s, nm := srv.counts(); s != sigs || nm != nms+1 {
				t.Fatalf("the unchanged list: %d signature fetches, %d answered 304; want 0 and 1", s-sigs, nm-nms)
			}
			if errs[ctsource.ReasonBadSignature] != refused {
				t.Fatalf("bad_signature counted %d times for %d refusals", errs[ctsource.ReasonBadSignature], refused)
			}
		})
	}
}

// A signature that cannot be fetched for a transient reason (a 503) is
// counted as that, not as a bad signature; the list is not accepted
// either, and is accepted once the signature can be read.
func TestSignedLogListSignatureUnavailable(t *testing.T) {
	key := rsaSigner(t)
	logKey := ctlogfake.New(t).PublicKeyDER()
	list := logListAt(t, "2026-10-01T00:00:00Z", listLog("A log", "https://a.example/", logKey, logState("usable"), nil))
	var mu sync.Mutex
	down := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasSuffix(r.URL.Path, ".sig") {
			if down {
				http.Error(w, "unavailable", http.StatusServiceUnavailable)
				return
			}
			w.Write(key.sign(t, list))
			return
		}
		w.Write(list)
	}))
	defer srv.Close()
	errs := map[string]int{}
	var a accepted
	l, err := New("google", srv.URL+"/log_list.json", []string{"usable"}, 200, time.Hour, 5*time.Second, func(r string) { errs[r]++ }, a.found)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RequireSignature(key.publicDER(t), srv.URL+"/log_list.sig"); err != nil {
		t.Fatal(err)
	}
	l.http.BackoffBase, l.sigHTTP.BackoffBase = time.Millisecond, time.Millisecond
	err = l.Poll(context.Background(), a.env())
	if ctsource.ReasonOf(err) != ctsource.ReasonHTTP5xx || errs[ctsource.ReasonHTTP5xx] == 0 || errs[ctsource.ReasonBadSignature] != 0 || a.calls != 0 {
		t.Fatalf("signature answering 503: %v, errors %v, %d lists accepted", err, errs, a.calls)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	if err := l.Poll(context.Background(), a.env()); err != nil || a.calls != 1 {
		t.Fatalf("signature back: %v, %d lists accepted", err, a.calls)
	}
}

// A list read from a file is verified with a signature file (Google's pair,
// log_list.json and log_list.sig, downloaded side by side): a tampered
// file, or a missing signature file, is refused.
func TestSignedLogListFile(t *testing.T) {
	key := ecdsaSigner(t)
	logKey := ctlogfake.New(t).PublicKeyDER()
	dir := t.TempDir()
	listPath, sigPath := filepath.Join(dir, "log_list.json"), filepath.Join(dir, "log_list.sig")
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v1 := logListAt(t, "2026-10-01T00:00:00Z", listLog("A log", "https://a.example/", logKey, logState("usable"), nil))
	write(listPath, v1)
	write(sigPath, key.sign(t, v1))
	errs := map[string]int{}
	var a accepted
	l, err := New("mine", listPath, []string{"usable"}, 200, time.Hour, time.Second, func(r string) { errs[r]++ }, a.found)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RequireSignature(key.publicDER(t), sigPath); err != nil {
		t.Fatal(err)
	}
	if err := l.Poll(context.Background(), a.env()); err != nil || a.calls != 1 {
		t.Fatalf("a signed list file: %v, %d calls", err, a.calls)
	}
	v2 := logListAt(t, "2026-10-02T00:00:00Z", listLog("A log", "https://a.example/", logKey, logState("usable"), nil),
		listLog("Evil log", "https://evil.example/", logKey, logState("usable"), nil))
	write(listPath, v2) // the signature file still signs v1
	if err := l.Poll(context.Background(), a.env()); ctsource.ReasonOf(err) != ctsource.ReasonBadSignature || errs[ctsource.ReasonBadSignature] != 1 || a.calls != 1 {
		t.Fatalf("a list file changed after signing: %v, errors %v, %d calls", err, errs, a.calls)
	}
	if err := os.Remove(sigPath); err != nil {
		t.Fatal(err)
	}
	if err := l.Poll(context.Background(), a.env()); ctsource.ReasonOf(err) != ctsource.ReasonBadSignature || errs[ctsource.ReasonBadSignature] != 2 || a.calls != 1 {
		t.Fatalf("a list file without its signature file: %v, errors %v, %d calls", err, errs, a.calls)
	}
	write(sigPath, key.sign(t, v2))
	if err := l.Poll(context.Background(), a.env()); err != nil || a.calls != 2 || len(a.logs) != 2 {
		t.Fatalf("the list file signed: %v, %d calls, %d logs", err, a.calls, len(a.logs))
	}
}

// The signature openssl makes with the command that verifies Google's list
// (openssl dgst -sha256 -verify log_list_pubkey.pem -signature log_list.sig
// log_list.json), from an RSA key in a PEM file, verifies here; and one
// byte changed does not.
func TestSignedLogListOpenSSLInterop(t *testing.T) {
	openssl := testenv.Require(t, "openssl", "openssl")
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "key.pem")
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
		return out
	}
	run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keyPath)
	pubPEM := run("pkey", "-in", keyPath, "-pubout")
	block, _ := pem.Decode(pubPEM)
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("openssl pkey -pubout wrote %q", pubPEM)
	}
	list := logListAt(t, "2026-10-01T00:00:00Z", listLog("A log", "https://a.example/", ctlogfake.New(t).PublicKeyDER(), logState("usable"), nil))
	listPath, sigPath := filepath.Join(dir, "log_list.json"), filepath.Join(dir, "log_list.sig")
	if err := os.WriteFile(listPath, list, 0o644); err != nil {
		t.Fatal(err)
	}
	run("dgst", "-sha256", "-sign", keyPath, "-out", sigPath, listPath)
	key, err := ParseSignatureKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile(sigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(key, list, sig); err != nil {
		t.Fatalf("openssl's signature does not verify: %v", err)
	}
	list[len(list)-1] ^= 1
	if err := verify(key, list, sig); err == nil {
		t.Fatal("openssl's signature verifies over changed bytes")
	}
}

// Only RSA (2048 bits or more) and ECDSA keys sign log lists.
func TestSignatureKeyTypes(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]crypto.Signer{"ed25519": edKey, "rsa1024": weak} {
		der, err := x509.MarshalPKIXPublicKey(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseSignatureKey(der); err == nil {
			t.Errorf("a %s key accepted", name)
		}
	}
	if _, err := ParseSignatureKey([]byte("not DER")); err == nil {
		t.Error("garbage accepted as a key")
	}
	l, err := New("x", "https://example.com/log_list.json", []string{"usable"}, 1, time.Hour, time.Second, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RequireSignature(ecdsaSigner(t).publicDER(t), ""); err == nil {
		t.Error("a key without a signature location accepted")
	}
}
