package ctlog

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"

	ct "github.com/google/certificate-transparency-go"
)

func sameEntries(t *testing.T, a, b []rawEntry) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d entries, %d entries", len(a), len(b))
	}
	for i := range a {
		if a[i].index != b[i].index || a[i].leafHash != b[i].leafHash || a[i].precert != b[i].precert ||
			string(a[i].der) != string(b[i].der) || (a[i].err == nil) != (b[i].err == nil) {
			t.Fatalf("entry %d differs", i)
		}
		if a[i].precert {
			pa, errA := a[i].precertificate()
			pb, errB := b[i].precertificate()
			if string(pa) != string(pb) || errA != nil || errB != nil {
				t.Fatalf("entry %d: precertificates differ: %v %v", i, errA, errB)
			}
		}
	}
}

func TestDecodeGetEntries(t *testing.T) {
	var les []ct.LeafEntry
	h := newLogHarness(t)
	for i := 0; i < 6; i++ {
		if i%2 == 0 {
			h.issue("www.example.com")
		} else {
			h.noise(1)
		}
	}
	h.fake.AddRaw(ct.X509LogEntryType, []byte("garbage"))
	for i := int64(0); i < h.fake.Size(); i++ {
		les = append(les, h.fake.Entry(i))
	}
	body, err := json.Marshal(ct.GetEntriesResponse{Entries: les})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := scanGetEntries(body); !ok {
		t.Fatal("the fast path does not take encoding/json's output")
	}
	fast, _, err := decodeGetEntries(body, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := decodeGetEntriesJSON(body, 100)
	if err != nil {
		t.Fatal(err)
	}
	sameEntries(t, fast, slow)
	if fast[0].index != 100 || !fast[0].precert || fast[len(fast)-1].err != nil {
		t.Fatalf("first %+v", fast[0])
	}
	for i, le := range les {
		if want := leafHashOf(le.LeafInput); fast[i].leafHash != want {
			t.Fatalf("entry %d: leaf hash %x, want %x", i, fast[i].leafHash, want)
		}
	}

	// Other layouts the fast path must read the same, or leave to encoding/json.
	b64 := string(body)
	for name, variant := range map[string]string{
		"whitespace": strings.ReplaceAll(strings.ReplaceAll(b64, ":", " : "), ",", " ,\n "),
		"extra keys": strings.Replace(strings.ReplaceAll(b64, `{"leaf_input"`, `{"x":[1,{"y":"z"},true,null,-1.5e3],"leaf_input"`), `{"entries"`, `{"more":{"a":"b"},"entries"`, 1),
		"escaped /":  strings.ReplaceAll(b64, "/", `\/`),
		"reordered":  reorder(t, body),
	} {
		got, _, err := decodeGetEntries([]byte(variant), 100, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameEntries(t, got, slow)
	}
	for _, bad := range []string{``, `{}`, `{"entries":[{"leaf_input":"!!","extra_data":""}]}`, string(body[:len(body)/2]), `[]`, `{"entries":[`} {
		if got, _, err := decodeGetEntries([]byte(bad), 0, nil); err == nil && len(got) > 0 && got[0].err == nil {
			t.Errorf("%.40q decoded", bad)
		}
	}
}

func reorder(t *testing.T, body []byte) string {
	var resp struct {
		Entries []map[string]string `json:"entries"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(`{"entries":[`)
	for i, e := range resp.Entries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"extra_data":"` + e["extra_data"] + `","leaf_input":"` + e["leaf_input"] + `"}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

func leafHashOf(input []byte) [32]byte { return sha256.Sum256(append([]byte{0}, input...)) }
