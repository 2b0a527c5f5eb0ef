package collector

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/ct-exporter/ct_exporter/state"
)

// RecentState is what the recent-issuance series are built from:
// *state.Store in the exporter.
type RecentState interface {
	// RecentVersion changes whenever the recent series Snapshot returns
	// would: an issuance recorded, judged again, or leaving the window.
	RecentVersion() (generation uint64, until time.Time)
	Snapshot() state.Snapshot
}

// recent holds the recent-issuance families. There can be tens of
// thousands of series; they change only when an issuance is recorded,
// judged again (authorized on reload) or ages out. So they are built once
// per change, and encoded once per change in each format and compression
// a scraper negotiates.
type recent struct {
	state RecentState

	mu         sync.Mutex
	built      bool // families holds the series of generation, until
	generation uint64
	until      time.Time
	families   []*dto.MetricFamily // shared: never modified
	encoded    map[variant][]byte
}

// variant is a negotiated format and Content-Encoding ("" for none).
type variant struct {
	format   expfmt.Format
	encoding string
}

func newRecent(st RecentState) *recent { return &recent{state: st, encoded: map[variant][]byte{}} }

// update rebuilds the families when the recent series changed; r.mu is held.
func (r *recent) update() {
	generation, until := r.state.RecentVersion()
	// An issuance leaving the window changes until: RecentVersion only
	// counts those still in it.
	if r.built && generation == r.generation && until.Equal(r.until) {
		return
	}
	r.families = recentFamilies(r.state.Snapshot().Recent)
	r.built, r.generation, r.until = true, generation, until
	clear(r.encoded)
}

// Gather returns the current families, the same until they change.
func (r *recent) Gather() ([]*dto.MetricFamily, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.update()
	return r.families, nil
}

// encode returns the current families named (all without names) encoded
// in format, compressed as a gzip member or a zstd frame of their own for
// those encodings: a gzip stream may consist of several members (RFC 1952
// §2.2), zstd data of several frames (RFC 8878 §3.1). Nothing when there
// are none. An OpenMetrics "# EOF" is left to what follows.
func (r *recent) encode(v variant, names []string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.update()
	if len(names) > 0 {
		// name[] filters: rare, not cached.
		var named []*dto.MetricFamily
		for _, mf := range r.families {
			if slices.Contains(names, mf.GetName()) {
				named = append(named, mf)
			}
		}
		return encodeFamilies(named, v)
	}
	if b, ok := r.encoded[v]; ok {
		return b, nil
	}
	b, err := encodeFamilies(r.families, v)
	if err != nil {
		return nil, err
	}
	r.encoded[v] = b
	return b, nil
}

func encodeFamilies(mfs []*dto.MetricFamily, v variant) ([]byte, error) {
	if len(mfs) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	var out io.Writer = &buf
	var zw io.WriteCloser // the compressor, if any
	switch v.encoding {
	case "", "identity":
	case "gzip":
		zw = gzip.NewWriter(&buf)
	case "zstd":
		// As promhttp compresses the rest.
		z, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			return nil, err
		}
		zw = z
	default:
		return nil, fmt.Errorf("content encoding %q is not supported", v.encoding)
	}
	if zw != nil {
		out = zw
	}
	enc := expfmt.NewEncoder(out, v.format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, err
		}
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// eachRecent calls fn with every recent-issuance series of a snapshot:
// its family, value and label values.
func eachRecent(recent []state.Recent, fn func(f constFamily, v float64, labels ...string)) {
	for _, r := range recent {
		tbs := hex.EncodeToString(r.TBSSHA256[:])
		fn(firstSeen, unixSeconds(r.FirstSeen),
			r.Watch, r.Verdict.String(), tbs, state.CertHex(r.CertSHA256),
			r.Issuer, r.Serial, r.SubjectCN, r.DNSNames)
		if r.EmbeddedSCTs >= 0 {
			fn(embeddedSCTs, float64(r.EmbeddedSCTs), r.Watch, tbs)
		}
		if r.ParseError != "" {
			fn(parseErrorInfo, 1, r.Watch, tbs, r.ParseError)
		}
	}
}

// recentFamilies builds the recent-issuance families directly, sorted by
// name as a registry gathers them; none when there are no series.
func recentFamilies(recent []state.Recent) []*dto.MetricFamily {
	byName := map[string]*dto.MetricFamily{}
	eachRecent(recent, func(f constFamily, v float64, labels ...string) {
		mf := byName[f.name]
		if mf == nil {
			mf = f.family()
			byName[f.name] = mf
		}
		mf.Metric = append(mf.Metric, f.series(v, labels...))
	})
	out := slices.Collect(maps.Values(byName))
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}
