package collector

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/ct-exporter/ct_exporter/state"
)

// Help texts of the recent-issuance families, shared by Collect and the
// cached exposition.
const (
	helpFirstSeen      = "When an issuance was first seen for a watch; one series per issuance within recent_window."
	helpEmbeddedSCTs   = "SCTs embedded in the final certificate of a recent issuance (absent while only the precertificate is known)."
	helpParseErrorInfo = "1 for a recent issuance with a certificate that a strict X.509 parser refuses; error says why. Such a certificate is more suspicious, not less."
)

// RecentState is what the cached exposition of the recent series needs.
type RecentState interface {
	RecentVersion() (generation uint64, until time.Time)
	Snapshot() state.Snapshot
}

// NewHandler serves /metrics as promhttp does, except for the recent
// issuance series: there can be tens of thousands, they change only when
// an issuance is recorded, authorized or ages out, and encoding them on
// every scrape (and compressing them for Prometheus) would cost far more
// than everything else. They are encoded once per change, per format, also
// as a gzip member of their own, and appended to the freshly gathered rest:
// a gzip stream may consist of several members (RFC 1952 §2.2).
func NewHandler(g prometheus.Gatherer, c *Collector, st RecentState, logger *slog.Logger) http.Handler {
	c.cacheRecent = true
	return &handler{gatherer: g, collector: c, state: st, logger: logger, encoded: map[expfmt.Format]*encoded{}}
}

type handler struct {
	gatherer  prometheus.Gatherer
	collector *Collector
	state     RecentState
	logger    *slog.Logger

	mu         sync.Mutex
	generation uint64
	until      time.Time
	built      bool                // families holds the series of generation, until
	families   []*dto.MetricFamily // nil when there are none
	encoded    map[expfmt.Format]*encoded
}

type encoded struct {
	plain, gz []byte
}

var gzipWriters = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return w }}

var openMetricsEOF = func() []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte("# EOF\n"))
	w.Close()
	return b.Bytes()
}()

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mfs, err := h.gatherer.Gather()
	if err != nil {
		// As promhttp's ContinueOnError: serve what could be gathered.
		h.logger.Error("error gathering metrics", "err", err)
	}
	format := expfmt.NegotiateIncludingOpenMetrics(r.Header)
	recent, err := h.recent(format)
	if err != nil {
		http.Error(w, "encoding the recent issuance series: "+err.Error(), http.StatusInternalServerError)
		return
	}
	header := w.Header()
	header.Set("Content-Type", string(format))
	header.Add("Vary", "Accept-Encoding")
	gz := acceptsGzip(r)
	var out io.Writer = w
	var zw *gzip.Writer
	if gz {
		header.Set("Content-Encoding", "gzip")
		zw = gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(zw)
		zw.Reset(w)
		out = zw
	}
	enc := expfmt.NewEncoder(out, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			h.logger.Error("error encoding metrics", "err", err)
			return
		}
	}
	openMetrics := format.FormatType() == expfmt.TypeOpenMetrics
	if gz {
		zw.Close()
		w.Write(recent.gz)
		if openMetrics {
			w.Write(openMetricsEOF)
		}
		return
	}
	w.Write(recent.plain)
	if openMetrics {
		io.WriteString(w, "# EOF\n")
	}
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// recent returns the recent series encoded in format, rebuilt when they
// changed.
func (h *handler) recent(format expfmt.Format) (*encoded, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	generation, until := h.state.RecentVersion()
	// An issuance leaving the window changes until: RecentVersion only
	// counts those still in it.
	if !h.built || generation != h.generation || !until.Equal(h.until) {
		h.families = recentFamilies(h.state.Snapshot().Recent)
		h.built, h.generation, h.until = true, generation, until
		clear(h.encoded)
	}
	if e, ok := h.encoded[format]; ok {
		return e, nil
	}
	var plain bytes.Buffer
	enc := expfmt.NewEncoder(&plain, format)
	for _, mf := range h.families {
		if err := enc.Encode(mf); err != nil {
			return nil, err
		}
	}
	if plain.Len() == 0 {
		// Nothing recent: no gzip member (and no 1 MB gzip writer) at all.
		e := &encoded{}
		h.encoded[format] = e
		return e, nil
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	e := &encoded{plain: plain.Bytes(), gz: gz.Bytes()}
	h.encoded[format] = e
	return e, nil
}

// recentFamilies builds the recent-issuance families directly, label pairs
// sorted by name as client_golang writes them.
func recentFamilies(recent []state.Recent) []*dto.MetricFamily {
	if len(recent) == 0 {
		return nil
	}
	firstSeen := &dto.MetricFamily{Name: proto.String("ct_certificate_first_seen_timestamp_seconds"), Help: proto.String(helpFirstSeen), Type: dto.MetricType_GAUGE.Enum()}
	scts := &dto.MetricFamily{Name: proto.String("ct_certificate_embedded_scts"), Help: proto.String(helpEmbeddedSCTs), Type: dto.MetricType_GAUGE.Enum()}
	parseErrors := &dto.MetricFamily{Name: proto.String("ct_certificate_parse_error_info"), Help: proto.String(helpParseErrorInfo), Type: dto.MetricType_GAUGE.Enum()}
	pair := func(name, value string) *dto.LabelPair {
		return &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)}
	}
	for _, r := range recent {
		tbs := pair("tbs_sha256", hex.EncodeToString(r.TBSSHA256[:]))
		watch := pair("watch", r.Watch)
		firstSeen.Metric = append(firstSeen.Metric, &dto.Metric{
			Label: []*dto.LabelPair{
				pair("cert_sha256", state.CertHex(r.CertSHA256)), pair("dns_names", r.DNSNames), pair("issuer", r.Issuer),
				pair("serial", r.Serial), pair("subject_cn", r.SubjectCN), tbs, pair("verdict", r.Verdict.String()), watch,
			},
			Gauge: &dto.Gauge{Value: proto.Float64(float64(r.FirstSeen.UnixNano()) / 1e9)},
		})
		if r.EmbeddedSCTs >= 0 {
			scts.Metric = append(scts.Metric, &dto.Metric{Label: []*dto.LabelPair{tbs, watch}, Gauge: &dto.Gauge{Value: proto.Float64(float64(r.EmbeddedSCTs))}})
		}
		if r.ParseError != "" {
			parseErrors.Metric = append(parseErrors.Metric, &dto.Metric{Label: []*dto.LabelPair{pair("error", r.ParseError), tbs, watch}, Gauge: &dto.Gauge{Value: proto.Float64(1)}})
		}
	}
	// Sorted by name, as the registry gathers families.
	out := []*dto.MetricFamily{firstSeen}
	if len(scts.Metric) > 0 {
		out = append(out, scts)
	}
	if len(parseErrors.Metric) > 0 {
		out = append(out, parseErrors)
	}
	return out
}
