package staticlogfake

import (
	"net/http"
	"strconv"

	"filippo.io/sunlight"
	"golang.org/x/mod/sumdb/tlog"
)

// Kinds of answers, as Handler.Observe is told them.
const (
	KindCheckpoint = "checkpoint"
	KindIssuer     = "issuer"
	KindDataTile   = "data-tile"
	KindHashTile   = "hash-tile"
)

// Backend is what a Handler serves: one log's published state.
type Backend interface {
	// Checkpoint is the signed note /checkpoint serves.
	Checkpoint() []byte
	// Tile is tile t as stored (a data tile, t.L == -1, gzipped), or
	// false when the log has not published it (see Published).
	Tile(t tlog.Tile) ([]byte, bool)
	// Issuer is the DER certificate whose SHA-256 is fingerprint (lower
	// hex), or false.
	Issuer(fingerprint string) ([]byte, bool)
}

// Handler serves the c2sp.org/static-ct-api monitoring paths the way
// Sunlight's Skylight does: the checkpoint uncached, tiles and issuers
// immutable, and data tiles as stored, gzipped, with Content-Encoding: gzip
// whatever the request's Accept-Encoding (a client must undo it itself
// when its HTTP stack does not).
type Handler struct {
	Backend Backend
	// Observe, when set, is told every answer served.
	Observe func(kind string, bytes int)
}

// Register adds the paths under prefix (e.g. "/log": the monitoring
// prefix's path) to mux.
func (h *Handler) Register(mux *http.ServeMux, prefix string) {
	mux.HandleFunc("GET "+prefix+"/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h.reply(w, KindCheckpoint, "text/plain; charset=utf-8", h.Backend.Checkpoint())
	})
	mux.HandleFunc("GET "+prefix+"/issuer/{fp}", func(w http.ResponseWriter, r *http.Request) {
		der, ok := h.Backend.Issuer(r.PathValue("fp"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=604800, immutable")
		h.reply(w, KindIssuer, "application/pkix-cert", der)
	})
	mux.HandleFunc("GET "+prefix+"/tile/{tile...}", h.tile)
}

func (h *Handler) tile(w http.ResponseWriter, r *http.Request) {
	t, err := sunlight.ParseTilePath("tile/" + r.PathValue("tile"))
	if err != nil {
		http.Error(w, "invalid tile path", http.StatusBadRequest)
		return
	}
	if t.L < -1 { // Sunlight's names tiles: not part of static-ct-api
		http.NotFound(w, r)
		return
	}
	body, ok := h.Backend.Tile(t)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=604800, immutable")
	kind := KindHashTile
	if t.L == -1 {
		w.Header().Set("Content-Encoding", "gzip")
		kind = KindDataTile
	}
	h.reply(w, kind, "application/octet-stream", body)
}

func (h *Handler) reply(w http.ResponseWriter, kind, contentType string, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
	if h.Observe != nil {
		h.Observe(kind, len(body))
	}
}

// Published reports whether a log that has published trees of the given
// sizes serves tile t (a data tile when t.L == -1, else a hash tile): the
// full tiles its largest tree covers, and the partial tiles of every size
// it published, which Sunlight keeps (a client holding an older checkpoint
// reads those). A partial tile of a width no published tree had is not
// served, as by Sunlight.
func Published(t tlog.Tile, sizes ...int64) bool {
	if t.H != sunlight.TileHeight || t.L < -1 || t.N < 0 || t.N > 1<<48 || t.W <= 0 || t.W > sunlight.TileWidth {
		return false
	}
	level := uint(max(t.L, 0) * t.H)
	end := t.N<<t.H + int64(t.W) // hashes of the level the tile needs
	for _, s := range sizes {
		have := s >> level
		if t.W == sunlight.TileWidth && end <= have || have == end && t.W < sunlight.TileWidth {
			return true
		}
	}
	return false
}
