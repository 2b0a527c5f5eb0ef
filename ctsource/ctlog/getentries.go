package ctlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	ct "github.com/google/certificate-transparency-go"
	"golang.org/x/crypto/cryptobyte"
)

// decodeGetEntries decodes a get-entries answer whose first entry is start.
// A catch-up spends most of its time here, so the common shape of the
// answer is scanned in one pass: the leaf inputs are base64-decoded into
// one buffer, with a spare byte before each so that the leaf hash needs no
// copy, and extra_data is decoded only for the few precertificates that
// match a watch. Anything unusual (escapes, unknown layout) goes through
// encoding/json instead, with the same result.
//
// arena, when large enough, is reused for the decoded leaves (the entries
// refer to it); the arena used is returned for reuse.
func decodeGetEntries(body []byte, start int64, arena []byte) ([]rawEntry, []byte, error) {
	fields, ok := scanGetEntries(body)
	if !ok {
		entries, err := decodeGetEntriesJSON(body, start)
		return entries, arena, err
	}
	size := 0
	for _, f := range fields {
		size += 1 + base64.StdEncoding.DecodedLen(len(f.leaf))
	}
	if cap(arena) < size {
		arena = make([]byte, size)
	}
	buf := arena[:size]
	out := make([]rawEntry, len(fields))
	off := 0
	for i, f := range fields {
		buf[off] = 0 // the RFC 6962 leaf hash prefix
		n, err := base64.StdEncoding.Decode(buf[off+1:], f.leaf)
		if err != nil {
			return nil, arena, fmt.Errorf("entry %d: leaf_input: %w", start+int64(i), err)
		}
		prefixed := buf[off : off+1+n : off+1+n]
		off += 1 + n
		out[i] = parseLeaf(start+int64(i), prefixed, f.extra)
	}
	return out, arena, nil
}

func decodeGetEntriesJSON(body []byte, start int64) ([]rawEntry, error) {
	var resp ct.GetEntriesResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, err
	}
	out := make([]rawEntry, len(resp.Entries))
	for i, le := range resp.Entries {
		prefixed := append([]byte{0}, le.LeafInput...)
		out[i] = parseLeaf(start+int64(i), prefixed, []byte(base64.StdEncoding.EncodeToString(le.ExtraData)))
	}
	return out, nil
}

// parseLeaf reads a MerkleTreeLeaf given with the hash prefix byte before
// it; extra is extra_data, still base64.
func parseLeaf(index int64, prefixed, extra []byte) rawEntry {
	e := rawEntry{index: index, leafHash: sha256.Sum256(prefixed)}
	in := cryptobyte.String(prefixed[1:])
	var version, leafType uint8
	var timestamp uint64
	var entryType uint16
	if !in.ReadUint8(&version) || !in.ReadUint8(&leafType) || version != 0 || leafType != 0 ||
		!in.ReadUint64(&timestamp) || !in.ReadUint16(&entryType) {
		e.err = errors.New("malformed leaf")
		return e
	}
	var data, exts cryptobyte.String
	switch entryType {
	case uint16(ct.X509LogEntryType):
		if !in.ReadUint24LengthPrefixed(&data) {
			e.err = errors.New("malformed x509 entry")
			return e
		}
		e.der = data
	case uint16(ct.PrecertLogEntryType):
		if !in.Skip(32) || !in.ReadUint24LengthPrefixed(&data) {
			e.err = errors.New("malformed precert entry")
			return e
		}
		e.precert, e.der = true, data
		e.extra = extra
	default:
		e.err = fmt.Errorf("entry type %d", entryType)
		return e
	}
	if !in.ReadUint16LengthPrefixed(&exts) || !in.Empty() {
		e.err = errors.New("malformed leaf extensions")
	}
	return e
}

// precertificateOf reads pre_certificate from a PrecertChainEntry in base64.
func precertificateOf(extra []byte) ([]byte, error) {
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(extra)))
	n, err := base64.StdEncoding.Decode(raw, extra)
	if err != nil {
		return nil, fmt.Errorf("extra_data: %w", err)
	}
	in := cryptobyte.String(raw[:n])
	var pre cryptobyte.String
	if !in.ReadUint24LengthPrefixed(&pre) {
		return nil, errors.New("extra_data: malformed PrecertChainEntry")
	}
	return pre, nil
}

type entryFields struct{ leaf, extra []byte }

// scanGetEntries finds the leaf_input and extra_data strings of a
// get-entries answer: {"entries":[{"leaf_input":"…","extra_data":"…"},…]},
// keys in any order, other keys skipped, whitespace anywhere. It reports
// false for anything it does not handle (such as escaped characters), and
// the caller falls back to encoding/json.
func scanGetEntries(b []byte) ([]entryFields, bool) {
	s := scanner{b: b}
	if !s.byte('{') {
		return nil, false
	}
	var out []entryFields
	found := false
	for first := true; ; first = false {
		if s.byte('}') {
			break
		}
		if !first && !s.byte(',') {
			return nil, false
		}
		key, ok := s.str()
		if !ok || !s.byte(':') {
			return nil, false
		}
		if string(key) != "entries" {
			if foldsTo(key, "entries") {
				return nil, false
			}
			if !s.skip() {
				return nil, false
			}
			continue
		}
		if found || !s.byte('[') {
			return nil, false
		}
		found = true
		for firstEntry := true; ; firstEntry = false {
			if s.byte(']') {
				break
			}
			if !firstEntry && !s.byte(',') {
				return nil, false
			}
			f, ok := s.entry()
			if !ok {
				return nil, false
			}
			out = append(out, f)
		}
	}
	s.ws()
	return out, found && s.i == len(s.b)
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\n' || s.b[s.i] == '\r' || s.b[s.i] == '\t') {
		s.i++
	}
}

// byte consumes c (after whitespace) if it is next.
func (s *scanner) byte(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes. Base64 strings are long: the end is
// found with IndexByte, which is vectorized, not byte by byte. A raw
// control character cannot hide in what is kept: base64 decoding rejects it.
func (s *scanner) str() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	end := bytes.IndexByte(s.b[s.i:], '"')
	if end < 0 {
		return nil, false
	}
	v := s.b[s.i : s.i+end]
	if bytes.IndexByte(v, '\\') >= 0 {
		return nil, false
	}
	s.i += end + 1
	return v, true
}

func (s *scanner) entry() (entryFields, bool) {
	var f entryFields
	if !s.byte('{') {
		return f, false
	}
	var haveLeaf, haveExtra bool
	for first := true; ; first = false {
		if s.byte('}') {
			return f, haveLeaf && haveExtra
		}
		if !first && !s.byte(',') {
			return f, false
		}
		key, ok := s.str()
		if !ok || !s.byte(':') {
			return f, false
		}
		switch string(key) {
		case "leaf_input":
			f.leaf, haveLeaf = s.str()
			if !haveLeaf {
				return f, false
			}
		case "extra_data":
			f.extra, haveExtra = s.str()
			if !haveExtra {
				return f, false
			}
		default:
			if foldsTo(key, "leaf_input") || foldsTo(key, "extra_data") {
				return f, false
			}
			if !s.skip() {
				return f, false
			}
		}
	}
}

// foldsTo reports a key that encoding/json would take for name (it matches
// keys case-insensitively, last one wins): the scanner leaves such an
// answer to encoding/json rather than read it differently.
func foldsTo(key []byte, name string) bool {
	return bytes.EqualFold(key, []byte(name))
}

// skip passes over any simple JSON value: a string, number, literal, or a
// nested array or object of those.
func (s *scanner) skip() bool {
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case '[', '{':
		open, close := s.b[s.i], byte(']')
		if open == '{' {
			close = '}'
		}
		s.i++
		for first := true; ; first = false {
			if s.byte(close) {
				return true
			}
			if !first && !s.byte(',') {
				return false
			}
			if open == '{' {
				if _, ok := s.str(); !ok || !s.byte(':') {
					return false
				}
			}
			if !s.skip() {
				return false
			}
		}
	default:
		start := s.i
		for s.i < len(s.b) && (s.b[s.i] == '-' || s.b[s.i] == '+' || s.b[s.i] == '.' ||
			s.b[s.i] >= '0' && s.b[s.i] <= '9' || s.b[s.i] >= 'a' && s.b[s.i] <= 'z' || s.b[s.i] == 'E') {
			s.i++
		}
		return s.i > start
	}
}
