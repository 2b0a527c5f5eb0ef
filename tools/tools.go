//go:build tools

// Package tools pins the versions of the programs that tests run: the
// Sunlight static-ct-api log (write path), Skylight (read path) and
// sunlight-keygen. Build them with, for example,
//
//	go build -C tools -o DIR filippo.io/sunlight/cmd/sunlight
//
// This is a separate module so that their dependencies never enter the main
// module's build.
package tools

import (
	_ "filippo.io/sunlight/cmd/skylight"
	_ "filippo.io/sunlight/cmd/sunlight"
	_ "filippo.io/sunlight/cmd/sunlight-keygen"
	_ "honnef.co/go/tools/cmd/staticcheck"
)
