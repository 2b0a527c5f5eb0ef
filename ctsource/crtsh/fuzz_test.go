package crtsh

// Fuzz target for crt.sh search answers, seeded with the crt.sh fake's
// answers for real-shaped certificates (fuzzpki). Run it with .ci/fuzz.

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/ct-exporter/ct_exporter/ctsource"
	"github.com/ct-exporter/ct_exporter/ctsource/internal/fuzzpki"
	"github.com/ct-exporter/ct_exporter/internal/crtshfake"
	"github.com/ct-exporter/ct_exporter/watch"
)

// FuzzDecodeCrtshRows: decoding a crt.sh search answer never panics, a
// decoded row always has an id, and filtering and time parsing of the rows
// never panic.
func FuzzDecodeCrtshRows(f *testing.F) {
	p := fuzzpki.New(f)
	fake := crtshfake.New()
	f.Cleanup(fake.Close)
	for i, is := range p.Issuances {
		switch i % 3 {
		case 0:
			fake.Add(is.Pre)
		case 1:
			fake.AddWith(is.Pre, crtshfake.AddOptions{NullEntryTimestamp: true})
		default:
			fake.AddWith(is.Pre, crtshfake.AddOptions{IssuerCAID: -1})
		}
		fake.Add(is.Final)
	}
	fake.Add(p.CA.DER)
	search := func(identity string) []byte {
		resp, err := http.Get(fake.URL + "/?Identity=" + identity + "&output=json")
		if err != nil {
			f.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			f.Fatal(err)
		}
		return body
	}
	full := search("example.com")
	f.Add(full)
	f.Add(search("192.0.2.1"))
	f.Add(search("only-cn.example.net"))
	f.Add(search("nothing-matches.invalid"))
	for _, fault := range []crtshfake.Fault{crtshfake.FaultTruncatedJSON, crtshfake.FaultGarbage, crtshfake.FaultHTML200} {
		fake.Fault(crtshfake.KindSearch, 1, fault)
		f.Add(search("example.com"))
	}
	// One row, and a row without id.
	var rows []json.RawMessage
	if err := json.Unmarshal(full, &rows); err != nil || len(rows) == 0 {
		f.Fatalf("crt.sh fake: %v", err)
	}
	f.Add([]byte("[" + string(rows[0]) + "]"))
	f.Add([]byte(`[{"issuer_ca_id":-1,"issuer_name":"C=US, O=\"Let's Encrypt\", CN=R11","name_value":"example.com\nwww.example.com","entry_timestamp":null,"not_before":"2025-01-01T00:00:00.5","not_after":"2025-04-01T00:00:00","serial_number":"00ab"}]`))
	f.Add([]byte("[]"))
	f.Add([]byte("null"))

	watches := []watch.Watch{
		watch.NewWatch("example.com", true),
		watch.NewWatch("www.example.com", false),
		watch.NewWatch("192.0.2.0/24", true),
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rows, err := decodeCrtshRows(&ctsource.Response{Status: 200, ContentType: "application/json", Body: body})
		if err != nil {
			if rows != nil {
				t.Fatal("rows returned with an error")
			}
			return
		}
		for i := range rows {
			r := &rows[i]
			if r.ID == 0 {
				t.Fatalf("row %d decoded without an id", i)
			}
			for j := range watches {
				rowConcerns(r, &watches[j])
			}
			for _, s := range []string{r.NotBefore, r.NotAfter} {
				_ = parseCrtshTime(s)
			}
			if r.EntryTimestamp != nil {
				_ = parseCrtshTime(*r.EntryTimestamp)
			}
		}
	})
}
