//go:build tools

// Package corpus pins the modules whose test data ctsource's tests read as a
// corpus of real-world, often deliberately non-conforming, certificates:
// zlint's testdata. Tests find the extracted module with
//
//	go mod download -json github.com/zmap/zlint/v3@v3.7.3
//
// run in this directory. It is a module of its own, apart from tools (whose
// dependency versions zlint would raise under Sunlight) and from the main
// module (which must not build against it).
package corpus

import _ "github.com/zmap/zlint/v3"
