package collector

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	// zstd for clients that accept it, besides gzip.
	_ "github.com/prometheus/client_golang/prometheus/promhttp/zstd"
	"github.com/prometheus/common/expfmt"
)

// MaxRequestsInFlight is how many /metrics requests are served at once;
// more are answered 503. Far above the scrapers of one exporter (100
// concurrent ones are tested), so that it only bounds the work a flood of
// scrapes can queue.
const MaxRequestsInFlight = 128

// NewHandler serves /metrics with promhttp: what reg gathers (with
// promhttp_metric_handler_* registered in it), and the recent-issuance
// families of st. promhttp negotiates the format and the compression
// (gzip, zstd) and limits the requests in flight; an error gathering is
// logged and what was gathered is served.
//
// The recent-issuance families, up to tens of thousands of series, are the
// one thing promhttp does not encode on every scrape: that would cost
// more than everything else together (at 10,000 series, tens of ms and
// several MB compressed per scrape instead of 1 ms). They change only when
// the state's recent series do, so they are encoded once per change in
// each format and compression promhttp negotiates, and written ahead of
// what promhttp encodes (in OpenMetrics, before its # EOF).
func NewHandler(reg *prometheus.Registry, st RecentState, logger *slog.Logger) http.Handler {
	rest := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg,
		MaxRequestsInFlight: MaxRequestsInFlight,
		EnableOpenMetrics:   true,
		OfferedCompressions: []promhttp.Compression{promhttp.Identity, promhttp.Gzip, promhttp.Zstd},
	})
	r := newRecent(st)
	return promhttp.InstrumentMetricHandler(reg, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rw := &withRecent{ResponseWriter: w, recent: r, logger: logger}
		if req.URL != nil {
			rw.names = req.URL.Query()["name[]"] // as promhttp filters
		}
		rest.ServeHTTP(rw, req)
		if !rw.started {
			// promhttp wrote nothing: nothing else was gathered.
			rw.WriteHeader(http.StatusOK)
		}
	}))
}

// withRecent writes the recent-issuance families at the start of a
// successful response, encoded as promhttp's headers say the rest is.
type withRecent struct {
	http.ResponseWriter
	recent  *recent
	names   []string
	logger  *slog.Logger
	started bool
}

func (w *withRecent) WriteHeader(code int) {
	if w.started {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.started = true
	w.ResponseWriter.WriteHeader(code)
	if code != http.StatusOK {
		return
	}
	h := w.Header()
	b, err := w.recent.encode(variant{expfmt.Format(h.Get("Content-Type")), h.Get("Content-Encoding")}, w.names)
	if err != nil {
		// As promhttp's ContinueOnError: serve the rest.
		w.logger.Error("error encoding the recent issuance series", "err", err)
		return
	}
	// A failed write (the scraper gone) fails promhttp's after it too.
	_, _ = w.ResponseWriter.Write(b)
}

func (w *withRecent) Write(b []byte) (int, error) {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap is for http.ResponseController.
func (w *withRecent) Unwrap() http.ResponseWriter { return w.ResponseWriter }
