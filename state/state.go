// Package state is the exporter's memory: which issuances it has seen (and
// for which watches), how far each source has read, and the persisted
// counters. It is a bbolt database: every change is one transaction that
// either reaches the disk whole (fsync) or not at all, so a SIGKILL at any
// instant neither loses a counted issuance nor counts one twice, and a write
// touches only the pages it changes.
package state

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/ct-exporter/ct_exporter/watch"
)

// formatVersion is the layout of the buckets. A file with a newer version is
// refused rather than misread.
const formatVersion = 1

// ExpiredGrace is how long after its NotAfter an issuance is still recorded.
// Older ones are ignored when seen and pruned when no longer recent, so an
// issuance can never be pruned and then counted again.
const ExpiredGrace = 24 * time.Hour

var (
	bucketMeta      = []byte("meta")
	bucketIssuances = []byte("issuances")  // tbs_sha256 → record
	bucketFirstSeen = []byte("first_seen") // first seen (8) | tbs (32) | watch → ∅
	bucketExpiry    = []byte("expiry")     // not_after (8) | tbs (32) → ∅
	bucketCounters  = []byte("counters")   // name \0 label values… → uint64
	bucketCursors   = []byte("cursors")    // source → opaque
	bucketIDs       = []byte("ids")        // source → { id (8) → tbs (32) | not_after (8) }
	bucketLogs      = []byte("logs")       // log → opaque position (CT log tailing)

	keyFormat  = []byte("format")
	keyVersion = []byte("version")
	keyCreated = []byte("created")
	keyCount   = []byte("issuances")

	formatName = []byte("ct_exporter state")
)

// Counter names persisted in the state file.
const (
	CounterNewCertificates = "new_certificates" // labels: watch, issuer, verdict
	// CounterParseErrors counts the issuances first seen for a watch (or
	// flagged later) with a certificate a strict X.509 parser refuses.
	CounterParseErrors = "certificate_parse_errors" // labels: watch
	// CounterLogProcessed counts the entries of a CT log processed, and
	// CounterLogMalformed those from which no name could be read (see
	// Commit).
	CounterLogProcessed = "log_entries_processed" // labels: log
	CounterLogMalformed = "log_malformed_entries" // labels: log
)

// IssuerOther is the issuer label of ct_new_certificates_total under which a
// watch's issuers beyond Policy.MaxIssuersPerWatch are counted.
const IssuerOther = "other"

// DefaultMaxIssuersPerWatch is Policy.MaxIssuersPerWatch when it is 0.
const DefaultMaxIssuersPerWatch = 100

// ErrUnrecordable is wrapped by the errors of Tx.Observe for an issuance the
// state cannot record (a key or a record beyond what bbolt stores). The
// fault is the certificate's, not the store's: nothing of it was written,
// and the transaction can go on without it.
var ErrUnrecordable = errors.New("cannot be recorded")

// Policy is what the current configuration says about recent issuances.
type Policy struct {
	RecentWindow time.Duration
	SeriesLimit  int // recent series per watch
	// MaxIssuersPerWatch bounds the issuer label values of
	// ct_new_certificates_total per watch: the issuers first counted beyond
	// it are counted as IssuerOther. An issuer already counted keeps its
	// own series, also when the limit is lowered. 0 means
	// DefaultMaxIssuersPerWatch.
	MaxIssuersPerWatch int
	// Verdict judges an issuance for a watch; false when the watch is not
	// configured (any more).
	Verdict func(watchName string, is *Issuance) (watch.Verdict, bool)
}

// Store is an open state file.
type Store struct {
	db   *bbolt.DB
	path string

	writeMu sync.Mutex // one transaction at a time, applied in commit order
	// maxKey and maxValue are bbolt's limits, lowered by tests.
	maxKey, maxValue int

	// Mirror is the in-memory copy of what the metrics show.
	*Mirror
}

// Options tune Open; the zero value is fine.
type Options struct {
	Now func() time.Time // for tests
	// MaxKeySize and MaxValueSize lower bbolt's limits on a key and a
	// value, for tests: certificates that exceed them are refused as they
	// would be at bbolt's own limits. 0 means bbolt's.
	MaxKeySize, MaxValueSize int
}

// Open opens the state file, creating it when it does not exist. A file that
// exists but cannot be read is never replaced: the error says what to do.
func Open(path string, opts Options) (*Store, error) {
	s := &Store{
		path:     path,
		Mirror:   NewMirror(opts.Now),
		maxKey:   bbolt.MaxKeySize,
		maxValue: bbolt.MaxValueSize,
	}
	if opts.MaxKeySize > 0 {
		s.maxKey = min(opts.MaxKeySize, bbolt.MaxKeySize)
	}
	if opts.MaxValueSize > 0 {
		s.maxValue = min(opts.MaxValueSize, bbolt.MaxValueSize)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := create(path, s.now()); err != nil {
			return nil, fmt.Errorf("state: create %s: %w", path, err)
		}
	case err != nil:
		return nil, fmt.Errorf("state: %w", err)
	case fi.Size() == 0:
		// bbolt would initialize an empty file; ours are never empty (see
		// create), so this one lost its content.
		return nil, damaged(path, errors.New("the file is empty"))
	}
	if err := checkFile(path); err != nil {
		return nil, damaged(path, err)
	}
	if err := s.open(); err != nil {
		if errors.Is(err, bberrors.ErrTimeout) {
			return nil, fmt.Errorf("state: %s is locked: another ct_exporter is using it", path)
		}
		return nil, damaged(path, err)
	}
	return s, nil
}

// open opens the file with bbolt and loads the mirror. bbolt panics on some
// damage checkFile cannot see; that is a damaged file, not a crash.
func (s *Store) open() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt: %v", r)
			if s.db != nil {
				s.db.Close()
				s.db = nil
			}
		}
	}()
	db, err := bbolt.Open(s.path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	s.db = db
	if err := s.load(); err != nil {
		db.Close()
		s.db = nil
		return err
	}
	return nil
}

func damaged(path string, err error) error {
	return fmt.Errorf("state: %s cannot be read (%v). It was left untouched. "+
		"Restore it from a backup, or move it aside to start with an empty state "+
		"(certificates already reported will then be reported again)", path, err)
}

// create writes an empty state file under a temporary name and renames it
// into place, so that a crash never leaves a half-initialized file at path.
func create(path string, now time.Time) error {
	tmp := path + ".new"
	os.Remove(tmp)
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketIssuances, bucketFirstSeen, bucketExpiry, bucketCounters, bucketCursors, bucketIDs, bucketLogs} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyFormat, formatName); err != nil {
			return err
		}
		if err := meta.Put(keyVersion, u64(formatVersion)); err != nil {
			return err
		}
		if err := meta.Put(keyCreated, u64(uint64(now.Unix()))); err != nil {
			return err
		}
		return meta.Put(keyCount, u64(0))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

func (s *Store) load() error {
	return s.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || string(meta.Get(keyFormat)) != string(formatName) {
			return errors.New("not a ct_exporter state file")
		}
		v, ok := readU64(meta.Get(keyVersion))
		if !ok {
			return errors.New("no format version")
		}
		if v != formatVersion {
			return fmt.Errorf("format version %d, this ct_exporter reads version %d", v, formatVersion)
		}
		for _, name := range [][]byte{bucketIssuances, bucketFirstSeen, bucketExpiry, bucketCounters, bucketCursors, bucketIDs, bucketLogs} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("bucket %s is missing", name)
			}
		}
		if s.count, ok = readU64(meta.Get(keyCount)); !ok {
			return errors.New("no issuance count")
		}
		return tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			n, ok := readU64(v)
			if !ok {
				return fmt.Errorf("counter %q is corrupt", k)
			}
			s.setCounter(string(k), n)
			return nil
		})
	})
}

// Close closes the file. Nothing is lost by not calling it.
func (s *Store) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.db.Close()
}

// callerError marks an error returned by the function given to Update, so
// that only failures to write count as write errors.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }
func (e callerError) Unwrap() error { return e.err }

// Update runs fn in one write transaction. Either everything fn did is on
// disk when Update returns nil, or nothing is. In-memory effects (counters,
// recent series) are applied only once the transaction is durable.
func (s *Store) Update(fn func(*Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx := &Tx{s: s, now: s.now(), counters: map[string]uint64{}}
	s.mu.RLock()
	tx.policy = s.policy
	s.mu.RUnlock()
	err := s.db.Update(func(btx *bbolt.Tx) error {
		tx.btx = btx
		if err := fn(tx); err != nil {
			return callerError{err}
		}
		if tx.countDelta != 0 {
			meta := btx.Bucket(bucketMeta)
			n, _ := readU64(meta.Get(keyCount))
			if err := meta.Put(keyCount, u64(uint64(int64(n)+tx.countDelta))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		var ce callerError
		if errors.As(err, &ce) {
			return ce.err
		}
		s.AddWriteError()
		return fmt.Errorf("state: write %s: %w", s.path, err)
	}
	s.apply(tx)
	return nil
}

// View runs fn in a read-only transaction; Tx methods that write fail.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(btx *bbolt.Tx) error {
		return fn(&Tx{s: s, btx: btx, now: s.now()})
	})
}

func (s *Store) apply(tx *Tx) {
	s.Apply(Change{Counters: tx.counters, CountDelta: tx.countDelta, Recent: tx.recent, SCTs: tx.scts, ParseErrors: tx.parseErrors})
}

// SetPolicy installs the configuration's view of recent issuances and
// rebuilds the recent series from the state file: verdicts are judged again
// (a certificate the user authorized changes series), and the cap is applied
// again. It reads only the issuances first seen within the window.
func (s *Store) SetPolicy(p Policy) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	now := s.now()
	byWatch := map[string][]Recent{}
	err := s.db.View(func(btx *bbolt.Tx) error {
		issuances := btx.Bucket(bucketIssuances)
		c := btx.Bucket(bucketFirstSeen).Cursor()
		start := firstSeenKey(now.Add(-p.RecentWindow), [32]byte{}, "")
		var cached *Issuance
		for k, _ := c.Seek(start); k != nil; k, _ = c.Next() {
			if len(k) < 40 {
				return fmt.Errorf("%w: first_seen key %x", errCorrupt, k)
			}
			w := string(k[40:])
			if cached == nil || string(cached.TBSSHA256[:]) != string(k[8:40]) {
				v := issuances.Get(k[8:40])
				if v == nil {
					return fmt.Errorf("%w: first_seen names unknown issuance %x", errCorrupt, k[8:40])
				}
				is, err := DecodeIssuance(k[8:40], v)
				if err != nil {
					return err
				}
				cached = is
			}
			verdict, ok := p.Verdict(w, cached)
			if !ok {
				continue
			}
			i := cached.watchIndex(w)
			if i < 0 {
				return fmt.Errorf("%w: issuance %x has no match for %s", errCorrupt, cached.TBSSHA256, w)
			}
			byWatch[w] = append(byWatch[w], NewRecent(cached, cached.Watches[i].FirstSeen, w, verdict))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: %s: %w", s.path, err)
	}
	s.Rebuild(p, byWatch)
	return nil
}

// Recent is one exposed recent-issuance series, with its label values
// computed once.
type Recent struct {
	Watch        string
	Verdict      watch.Verdict
	FirstSeen    time.Time
	TBSSHA256    [32]byte
	CertSHA256   [32]byte
	Issuer       string // label value
	Serial       string
	SubjectCN    string
	DNSNames     string // bounded, comma-joined, escaped
	EmbeddedSCTs int    // -1 while only the precertificate is known
	NotBefore    time.Time
	NotAfter     time.Time
	// ParseError is why a strict parser refuses a certificate of the
	// issuance, bounded and escaped; empty when they parse.
	ParseError string
}

// MaxDNSNamesLabel bounds the dns_names label value.
const MaxDNSNamesLabel = 200

// CertHex is cert_sha256 in hex, empty when no certificate could be tied
// to the issuance (a log entry whose precertificate does not match its
// proven TBSCertificate).
func CertHex(h [32]byte) string {
	if h == ([32]byte{}) {
		return ""
	}
	return hex.EncodeToString(h[:])
}

// ParseErrorLabel is a parse error as a label value: parser messages can
// quote certificate fields.
func ParseErrorLabel(e string) string { return watch.Label(e) }

// NewRecent is the recent series of an issuance first seen for watch w.
func NewRecent(is *Issuance, firstSeen time.Time, w string, v watch.Verdict) Recent {
	return Recent{
		Watch:        w,
		Verdict:      v,
		FirstSeen:    firstSeen,
		TBSSHA256:    is.TBSSHA256,
		CertSHA256:   is.CertSHA256,
		Issuer:       watch.Label(is.Issuer.Label()),
		Serial:       watch.Label(is.Serial),
		SubjectCN:    watch.Label(is.SubjectCN),
		DNSNames:     namesLabel(is),
		EmbeddedSCTs: is.EmbeddedSCTs,
		NotBefore:    is.NotBefore,
		NotAfter:     is.NotAfter,
		ParseError:   ParseErrorLabel(is.ParseError),
	}
}

func namesLabel(is *Issuance) string {
	names := make([]string, 0, len(is.DNSNames)+len(is.IPs))
	for _, n := range is.DNSNames {
		names = append(names, watch.Escape(n))
	}
	for _, a := range is.IPs {
		names = append(names, a.String())
	}
	const reserve = len(",+9999 more")
	var b strings.Builder
	for i, n := range names {
		limit := MaxDNSNamesLabel
		if i < len(names)-1 {
			limit -= reserve
		}
		sep := min(i, 1)
		if b.Len()+sep+len(n) > limit {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "+%d more", len(names)-i)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
	}
	return b.String()
}

// Counter is one persisted counter's value.
type Counter struct {
	Name   string
	Labels []string
	Value  uint64
}

// Snapshot is a consistent copy of what the metrics show; taking it costs no
// disk I/O.
type Snapshot struct {
	Counters     []Counter
	Recent       []Recent // sorted by watch, then first seen
	Dropped      map[string]uint64
	Certificates uint64 // issuances in the file
	WriteErrors  uint64
	ReadErrors   uint64 // of a shared state's mirror; 0 for the state file
}

// CounterKey is a counter's name and label values, NUL-separated. Label
// values never hold a NUL: watches are host names or prefixes, and values
// from certificates are escaped (watch.Label).
func CounterKey(name string, labels ...string) string {
	return name + "\x00" + strings.Join(labels, "\x00")
}

// ParseCounterKey splits a counter key into its name and label values.
func ParseCounterKey(k string) (string, []string) {
	parts := strings.Split(k, "\x00")
	return parts[0], parts[1:]
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func readU64(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

func firstSeenKey(t time.Time, tbs [32]byte, w string) []byte {
	k := make([]byte, 0, 40+len(w))
	k = binary.BigEndian.AppendUint64(k, uint64(unixNano(t)))
	k = append(k, tbs[:]...)
	return append(k, w...)
}

func expiryKey(t time.Time, tbs [32]byte) []byte {
	k := make([]byte, 0, 40)
	k = binary.BigEndian.AppendUint64(k, uint64(unixNano(t)))
	return append(k, tbs[:]...)
}

// Bounds of the times keys order: Unix nanoseconds in an int64 end in
// 2262, and keys do not go before 1970.
var (
	minKeyTime = time.Unix(0, 0)
	maxKeyTime = time.Unix(0, math.MaxInt64)
)

// unixNano is t in Unix nanoseconds, saturated to [0, MaxInt64]: a
// certificate valid until 9999 (RFC 5280's "no expiry") must expire last,
// not wrap around to a date that has passed, and be pruned and then
// counted again.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minKeyTime):
		return 0
	case t.After(maxKeyTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}
