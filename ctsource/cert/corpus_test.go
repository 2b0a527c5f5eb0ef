package cert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ctx509 "github.com/google/certificate-transparency-go/x509"

	"github.com/ct-exporter/ct_exporter/internal/testenv"
	"github.com/ct-exporter/ct_exporter/watch"
)

// recordedNames returns the names ctsource records of a DER certificate,
// normalized (IP addresses in netip.Addr's form); an error means ctsource
// cannot record the certificate at all. It is the one place in this file
// that knows ctsource's certificate API, so that the test follows a change
// of reader by a change here alone.
func recordedNames(der []byte) ([]string, error) {
	c, err := Read(der)
	if err != nil {
		return nil, err
	}
	names := c.Names()
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names, nil
}

// The corpus: zlint's testdata, about 1,500 certificates, many of them
// deliberately non-conforming (each lint has certificates that break its
// rule), which is what the reader must survive. The version is pinned in
// tools/corpus/go.mod; the hash is pinned here too, so that the test reads
// exactly these bytes whatever the module cache holds.
const (
	zlintModule = "github.com/zmap/zlint/v3"
	zlintPinned = "v3.7.3"
	zlintSum    = "h1:k7MZOUjW0nhmvqvG/VtHExOREuXkcTAfee9zoNRe8Vo="
)

// zlintDir returns the directory of the extracted zlint module, downloading
// it into the module cache when it is not there. Without a network it skips
// the test, or fails it in CI.
func zlintDir(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		testenv.Unavailable(t, "the go command is needed to fetch the zlint corpus: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// Run in tools/corpus, whose go.sum verifies the download; GOWORK=off
	// keeps a go.work file from mixing in other modules.
	cmd := exec.CommandContext(ctx, goTool, "mod", "download", "-json", zlintModule+"@"+zlintPinned)
	cmd.Dir = filepath.Join(testenv.RepoRoot(), "tools", "corpus")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var mod struct{ Dir, Sum, Error string }
	if err := json.Unmarshal(out, &mod); err != nil && runErr == nil {
		t.Fatalf("go mod download: reading its answer: %v\n%s", err, out)
	}
	if runErr != nil || mod.Error != "" {
		why := strings.TrimSpace(mod.Error + "\n" + stderr.String())
		// A hash that does not match is tampering or a wrong pin, never a
		// network to do without.
		if strings.Contains(why, "checksum mismatch") || strings.Contains(why, "SECURITY ERROR") {
			t.Fatalf("go mod download %s@%s in %s: %v\n%s", zlintModule, zlintPinned, cmd.Dir, runErr, why)
		}
		testenv.Unavailable(t, "cannot download the zlint corpus (%s@%s, go mod download in %s): %v: %s",
			zlintModule, zlintPinned, cmd.Dir, runErr, why)
	}
	if mod.Sum != zlintSum {
		t.Fatalf("%s@%s has hash %s, want the pinned %s", zlintModule, zlintPinned, mod.Sum, zlintSum)
	}
	if fi, err := os.Stat(filepath.Join(mod.Dir, "testdata")); err != nil || !fi.IsDir() {
		t.Fatalf("%s@%s in %q has no testdata directory: %v", zlintModule, zlintPinned, mod.Dir, err)
	}
	return mod.Dir
}

// corpusCert is one certificate of the corpus.
type corpusCert struct {
	file  string // relative to the corpus's root
	index int    // of the CERTIFICATE block in the file, from 0
	der   []byte
}

// readCorpus returns every certificate of every PEM file under dir, in
// lexical order of the files.
func readCorpus(t *testing.T, dir string) []corpusCert {
	t.Helper()
	marker := []byte("-----BEGIN CERTIFICATE-----")
	var certs []corpusCert
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(path, ".pem") && !bytes.Contains(data, marker) {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		found := 0
		for rest := data; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type == "CERTIFICATE" {
				certs = append(certs, corpusCert{file: filepath.ToSlash(rel), index: found, der: block.Bytes})
				found++
			}
		}
		// pem.Decode passes over a block it cannot read: every one missed
		// would be a certificate the test claims to have read.
		if want := bytes.Count(data, marker); found != want {
			t.Errorf("%s: %d CERTIFICATE blocks decoded of %d begun", rel, found, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading the corpus: %v", err)
	}
	return certs
}

// nameSet is a set of normalized names; IP addresses in netip.Addr's form.
type nameSet map[string]bool

// add adds names, normalized. A name that normalizes to nothing (an empty
// CN or dNSName) can match no watch: it is no name.
func (s nameSet) add(names ...string) {
	for _, n := range names {
		if n = watch.NormalizeName(n); n != "" {
			s[n] = true
		}
	}
}

func (s nameSet) addIP(ip net.IP) {
	if a, ok := netip.AddrFromSlice(ip); ok {
		s[a.Unmap().String()] = true
	}
}

func (s nameSet) sorted() []string {
	out := make([]string, 0, len(s))
	for n := range s {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// missing returns the names of want that s lacks, sorted.
func (s nameSet) missing(want ...nameSet) []string {
	var out []string
	for _, w := range want {
		for n := range w {
			if !s[n] && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// The subject CN, whichever of the subject's attributes holds it: a
// certificate may have several, or one in a multi-valued RDN.
const oidCN = "2.5.4.3"

// ctGoNames parses der with certificate-transparency-go's x509, tolerating
// its non-fatal errors as ctsource does.
func ctGoNames(der []byte) (nameSet, error) {
	cert, err := ctx509.ParseCertificate(der)
	if cert == nil || (err != nil && ctx509.IsFatal(err)) {
		if err == nil {
			err = errors.New("no certificate")
		}
		return nil, err
	}
	s := nameSet{}
	s.add(cert.DNSNames...)
	for _, atv := range cert.Subject.Names {
		// A value of a string type the parser cannot decode is no string:
		// that parser found no name there.
		if v, ok := atv.Value.(string); ok && atv.Type.String() == oidCN {
			s.add(v)
		}
	}
	for _, ip := range cert.IPAddresses {
		s.addIP(ip)
	}
	return s, nil
}

// stdlibNames parses der with crypto/x509, a second opinion on what a
// certificate names.
func stdlibNames(der []byte) (nameSet, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	s := nameSet{}
	s.add(cert.DNSNames...)
	for _, atv := range cert.Subject.Names {
		// A value of a string type the parser cannot decode is no string:
		// that parser found no name there.
		if v, ok := atv.Value.(string); ok && atv.Type.String() == oidCN {
			s.add(v)
		}
	}
	for _, ip := range cert.IPAddresses {
		s.addIP(ip)
	}
	return s, nil
}

// walkNames reads der with the lean walk the log followers match with.
func walkNames(der []byte) (nameSet, error) {
	var id Identifiers
	if err := ExtractIdentifiers(der, false, &id); err != nil {
		return nil, err
	}
	s := nameSet{}
	s.add(id.Names...)
	for _, a := range id.IPs {
		s[a.Unmap().String()] = true
	}
	return s, nil
}

// TestZlintCorpusDifferential reads a corpus of real-world and deliberately
// odd certificates with the full parsers, the lean walk and ctsource's
// recording, and holds them to what matching relies on: the walk finds every
// name the full parse finds, and ctsource records every certificate that
// names anything, with all those names — a certificate a strict parser
// refuses is still one a watched domain must hear about.
func TestZlintCorpusDifferential(t *testing.T) {
	certs := readCorpus(t, filepath.Join(zlintDir(t), "testdata"))
	// Far fewer would mean the corpus was not read, not that it is clean.
	if len(certs) < 1000 {
		t.Fatalf("read %d certificates from the zlint corpus, want over 1000", len(certs))
	}
	var n struct {
		certs, ctRejected, stdRejected, walkFailed, named, notRecordable             int
		walkMissesCt, recordedMisses, walkMissesStd, recordedMissesStd, fieldsDiffer int
	}
	for _, c := range certs {
		n.certs++
		where := fmt.Sprintf("%s (certificate %d)", c.file, c.index)
		ct, ctErr := ctGoNames(c.der)
		if ctErr != nil {
			n.ctRejected++
		}
		std, stdErr := stdlibNames(c.der)
		if stdErr != nil {
			n.stdRejected++
		}
		walk, walkErr := walkNames(c.der)
		if walkErr != nil {
			n.walkFailed++
			t.Logf("%s: the walk fails: %v (ct-go: %v; names by ct-go %q)", where, walkErr, ctErr, ct.sorted())
		}

		// 1. The walk finds what the full parse finds.
		if walkErr == nil {
			if miss := walk.missing(ct); len(miss) > 0 {
				n.walkMissesCt++
				t.Errorf("%s: the walk misses %q that ct-go finds (walk %q)", where, miss, walk.sorted())
			}
			// crypto/x509 is a second opinion, counted and listed but not
			// held to: ctsource records what ct-go reads, and crypto/x509
			// reads some strings its own way (T61String as Latin-1).
			if miss := walk.missing(std); len(miss) > 0 {
				n.walkMissesStd++
				t.Logf("%s: the walk misses %q that crypto/x509 finds (walk %q)", where, miss, walk.sorted())
			}
		}

		// 2. A certificate that names anything is recorded, with every
		// name either reader found.
		if len(ct)+len(walk) == 0 {
			continue
		}
		n.named++
		names, recErr := recordedNames(c.der)
		if recErr != nil {
			n.notRecordable++
			t.Errorf("%s: not recordable, yet it names %q: %v", where, nameSet{}.missing(ct, walk), recErr)
			continue
		}
		recorded := nameSet{}
		for _, name := range names {
			recorded[name] = true
		}
		if miss := recorded.missing(ct, walk); len(miss) > 0 {
			n.recordedMisses++
			t.Errorf("%s: ctsource records %q, missing %q", where, recorded.sorted(), miss)
		}
		if miss := recorded.missing(std); len(miss) > 0 {
			n.recordedMissesStd++
			t.Logf("%s: ctsource records %q, missing %q that crypto/x509 finds", where, recorded.sorted(), miss)
		}
		// 3. Where ct-go reads the certificate, the tolerant reader reads
		// the same fields (the identity of ordinary certificates must not
		// depend on which reader saw them).
		if ctErr == nil {
			if diff := sameFields(c.der); diff != "" {
				n.fieldsDiffer++
				t.Errorf("%s: %s", where, diff)
			}
		}
	}
	t.Logf("zlint %s corpus: %d certificates; rejected by ct-go %d, by crypto/x509 %d; walk failures %d; "+
		"with a name %d, not recordable %d; walk ⊉ ct-go %d, recorded ⊉ ct-go ∪ walk %d; "+
		"fields differing from ct-go's %d; (crypto/x509, not asserted: walk ⊉ it %d, recorded ⊉ it %d)",
		zlintPinned, n.certs, n.ctRejected, n.stdRejected, n.walkFailed,
		n.named, n.notRecordable, n.walkMissesCt, n.recordedMisses, n.fieldsDiffer,
		n.walkMissesStd, n.recordedMissesStd)
}

// sameFields compares what Read reads with what ct-go parses,
// for a certificate ct-go reads; "" when they agree.
func sameFields(der []byte) string {
	c, err := Read(der)
	if err != nil {
		return fmt.Sprintf("not readable: %v", err)
	}
	p, err := ctx509.ParseCertificate(der)
	if p == nil || ctx509.IsFatal(err) {
		return ""
	}
	stripped, serial, err := StripTBS(p.RawTBSCertificate)
	o := ""
	if len(p.Issuer.Organization) > 0 {
		o = p.Issuer.Organization[0]
	}
	scts := len(p.SCTList.SCTList)
	if p.IsPrecertificate() {
		scts = -1
	}
	switch {
	case err != nil:
		return fmt.Sprintf("StripTBS of ct-go's TBSCertificate: %v", err)
	case c.TBSSHA256 != sha256.Sum256(stripped):
		return "tbs_sha256 differs"
	case c.Serial != hex.EncodeToString(serial):
		return fmt.Sprintf("serial %s, ct-go %x", c.Serial, serial)
	case c.SPKISHA256 != sha256.Sum256(p.RawSubjectPublicKeyInfo):
		return "spki_sha256 differs"
	case c.Issuer.CN != p.Issuer.CommonName || c.Issuer.O != o:
		return fmt.Sprintf("issuer CN %q O %q, ct-go %q %q", c.Issuer.CN, c.Issuer.O, p.Issuer.CommonName, o)
	case !c.NotBefore.Equal(p.NotBefore) || !c.NotAfter.Equal(p.NotAfter):
		return fmt.Sprintf("validity %v–%v, ct-go %v–%v", c.NotBefore, c.NotAfter, p.NotBefore, p.NotAfter)
	case c.Precert != p.IsPrecertificate() || c.EmbeddedSCTs != scts:
		return fmt.Sprintf("precert %v, SCTs %d; ct-go %v, %d", c.Precert, c.EmbeddedSCTs, p.IsPrecertificate(), scts)
	}
	return ""
}
