package certspotter

// Fuzz target for what the Cert Spotter API answers, seeded with
// real-shaped issuances (fuzzpki). Run it with .ci/fuzz.

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/fuzzpki"
)

// FuzzDecodeIssuances: a Cert Spotter API answer never panics the decoder,
// and one it accepts is a JSON array encoding/json reads the same way.
func FuzzDecodeIssuances(f *testing.F) {
	p := fuzzpki.New(f)
	body, err := json.Marshal([]map[string]any{
		{"id": "1000000001", "tbs_sha256": strings.Repeat("ab", 32), "cert_der": p.Issuances[0].Final, "dns_names": []string{"www.example.com"}},
		{"id": "1000000003", "tbs_sha256": strings.Repeat("cd", 32), "cert_der": p.Issuances[1].Pre, "issuer": map[string]string{"name": "C=US, O=Let's Encrypt, CN=R11"}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("application/json", body)
	f.Add("application/json", []byte(`[]`))
	f.Add("text/html", []byte(`<html></html>`))
	f.Add("application/json", []byte(`{"code":"rate_limited","message":"x"}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		page, err := decodeIssuances(contentType, body)
		if err != nil {
			return
		}
		var again []csIssuance
		if err := json.Unmarshal(body, &again); err != nil || len(again) != len(page) {
			t.Fatalf("accepted %d issuances, encoding/json reads %d (%v)", len(page), len(again), err)
		}
		for i := range page {
			if page[i].ID != again[i].ID || !bytes.Equal(page[i].CertDER, again[i].CertDER) {
				t.Fatalf("issuance %d read differently", i)
			}
			cert.Read(page[i].CertDER)
		}
	})
}
