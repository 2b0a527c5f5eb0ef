package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's meta page (bbolt 1.x, format version 2): after a 16-byte page
// header come magic, version, page size, flags, the root bucket (16 bytes),
// the freelist page, the high-water mark (pages in use), the transaction id
// and an FNV-64a checksum of the fields before it.
const (
	boltMagic     = 0xED0CDAED
	boltVersion   = 2
	metaOffset    = 16
	metaChecksum  = metaOffset + 56
	metaFieldsLen = 56
)

type boltMeta struct {
	pageSize uint32
	pages    uint64 // high-water mark
	txid     uint64
}

func readMeta(b []byte) (boltMeta, bool) {
	if len(b) < metaChecksum+8 {
		return boltMeta{}, false
	}
	m := b[metaOffset:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:metaFieldsLen])
	if h.Sum64() != le.Uint64(b[metaChecksum:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), pages: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// checkFile refuses a file bbolt would crash on rather than report: one
// without a valid meta page, or shorter than the pages its meta page says
// are in use (a truncated copy, a full disk during a copy). bbolt maps the
// file and would fault on the missing pages.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	best, ok := readMeta(head[:n])
	if ok {
		second := make([]byte, metaChecksum+8)
		if _, err := f.ReadAt(second, int64(best.pageSize)); err == nil {
			if m, ok := readMeta(second); ok && m.txid > best.txid {
				best = m
			}
		}
	} else {
		// The first meta page may be the torn one: bbolt tries the second.
		for _, size := range []int64{4096, 8192, 16384, 65536} {
			second := make([]byte, metaChecksum+8)
			if _, err := f.ReadAt(second, size); err == nil {
				if m, mok := readMeta(second); mok && int64(m.pageSize) == size {
					best, ok = m, true
					break
				}
			}
		}
	}
	if !ok {
		return errors.New("no valid bbolt meta page: not a ct_exporter state file, or damaged")
	}
	if need := int64(best.pages) * int64(best.pageSize); fi.Size() < need {
		return fmt.Errorf("the file is truncated: %d bytes, its pages need %d", fi.Size(), need)
	}
	return nil
}
