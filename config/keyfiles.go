package config

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// readKeyFiles returns the SPKI SHA-256 of every key in the PEM files a glob
// names: the subject keys of end-entity certificates (a certbot cert.pem or
// fullchain.pem; CA certificates in a chain are skipped) and PUBLIC KEY
// blocks. Private keys are skipped: point the glob at certificates.
func readKeyFiles(glob, dir string) ([][32]byte, error) {
	if !filepath.IsAbs(glob) {
		glob = filepath.Join(dir, glob)
	}
	files, err := filepath.Glob(glob)
	if err != nil {
		return nil, fmt.Errorf("authorized_key_files %q: %w", glob, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("authorized_key_files %q matches no file", glob)
	}
	var keys [][32]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("authorized_key_files: %w", err)
		}
		found := 0
		for {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				break
			}
			switch block.Type {
			case "CERTIFICATE":
				cert, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					return nil, fmt.Errorf("authorized_key_files: %s: %w", f, err)
				}
				if cert.IsCA {
					continue
				}
				keys = append(keys, sha256.Sum256(cert.RawSubjectPublicKeyInfo))
				found++
			case "PUBLIC KEY":
				if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
					return nil, fmt.Errorf("authorized_key_files: %s: %w", f, err)
				}
				keys = append(keys, sha256.Sum256(block.Bytes))
				found++
			}
		}
		if found == 0 {
			return nil, fmt.Errorf("authorized_key_files: %s holds no end-entity certificate or PUBLIC KEY in PEM", f)
		}
	}
	return keys, nil
}
