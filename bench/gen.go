package main

// Deterministic generation of a realistic CT log. Entry i is a pure function
// of (seed, epoch, entries, i): the server builds any part of the log in any
// order and in parallel, and the measuring process rebuilds only the needles
// to know what it must find.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ct-exporter/ct_exporter/ctsource/cert"
)

// Config is what the generated log depends on.
type Config struct {
	Entries int64
	Seed    uint64
	// Epoch is the day the log is made for: certificates were issued in the
	// 60 days before it and are valid after it (the state file ignores
	// issuances that have expired).
	Epoch time.Time
}

// Watched are the domains the measurement watches, with subdomains.
var Watched = []string{"example.com", "example.org"}

// PRNG streams, so that each use draws from its own sequence.
const (
	streamPKI uint64 = iota + 1
	streamPlan
	streamEntry
	streamNeedle
	streamNeedleSig
	streamDecoy
	streamMalformed
	streamKeys
)

// rng returns the generator of item i of a stream.
func rng(seed, stream, i uint64) *rand.Rand {
	return rand.New(rand.NewPCG(splitmix(seed^splitmix(stream)), splitmix(i^stream<<56)))
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Entry is one log entry.
type Entry struct {
	Precert bool
	// Cert is an x509_entry's certificate, or a precert_entry's
	// TBSCertificate (the precertificate's without the poison).
	Cert []byte
	// PreCert is a precert_entry's precertificate.
	PreCert   []byte
	CA        *ca
	Timestamp int64 // ms
}

// Needle is an issuance for watched domains: a precertificate entry and,
// later in the log, its final certificate.
type Needle struct {
	ID             int
	Names          []string
	Watches        []string // the watches it concerns, sorted
	Precert, Final int64    // entry indices
	SCTs           int      // embedded in the final certificate
	TBSSHA256      [32]byte // filled by Expected
}

type slotKind uint8

const (
	slotNeedlePrecert slotKind = iota + 1
	slotNeedleFinal
	slotDecoy
	slotMalformed
)

type slot struct {
	kind slotKind
	n    int // needle, decoy or malformed number
}

// Plan places the special entries.
type Plan struct {
	Needles   []Needle
	Decoys    []int64 // entry indices
	Malformed []int64 // entry indices
	slots     map[int64]slot
}

// Generator makes the entries of one log.
type Generator struct {
	cfg      Config
	roots    []*ca
	cas      []*ca
	cum      []int // cumulative CA weights
	ecKeys   [][]byte
	logIDs   [][32]byte
	baseTS   int64
	plan     *Plan
	validity time.Time // notBefore is drawn from [validity, Epoch)
}

// MinEntries is the smallest log the plan fits in.
const MinEntries = 2000

// NewGenerator sets up the CAs and the plan.
func NewGenerator(cfg Config) (*Generator, error) {
	if cfg.Entries < MinEntries {
		return nil, fmt.Errorf("at least %d entries", MinEntries)
	}
	g := &Generator{cfg: cfg}
	g.roots, g.cas = buildCAs(cfg.Seed, cfg.Epoch)
	total := 0
	for _, c := range g.cas {
		total += c.weight
		g.cum = append(g.cum, total)
	}
	kr := rng(cfg.Seed, streamKeys, 0)
	for range 512 {
		g.ecKeys = append(g.ecKeys, ecSPKI(kr, keyP256))
	}
	for range 12 {
		var id [32]byte
		fill(kr, id[:])
		g.logIDs = append(g.logIDs, id)
	}
	// Entries are 7 ms apart, the last an hour before the epoch.
	g.baseTS = cfg.Epoch.Add(-time.Hour).UnixMilli() - 7*cfg.Entries
	g.validity = cfg.Epoch.Add(-60 * day)
	g.plan = g.makePlan()
	return g, nil
}

// Plan returns where the special entries are.
func (g *Generator) Plan() *Plan { return g.plan }

func (g *Generator) makePlan() *Plan {
	n := g.cfg.Entries
	r := rng(g.cfg.Seed, streamPlan, 0)
	p := &Plan{slots: map[int64]slot{}}
	free := func(i int64) bool { _, taken := p.slots[i]; return !taken && i >= 0 && i < n }

	// Malformed entries, every ~100,000th (at least 3), spread out.
	m := max(3, n/100000)
	for j := range m {
		i := (2*j+1)*n/(2*m) + int64(r.IntN(100))
		p.slots[i] = slot{slotMalformed, int(j)}
		p.Malformed = append(p.Malformed, i)
	}

	// Needles: the first at entry 0, the last one's final certificate at
	// the last entry (a partial batch and data tile), the others anywhere,
	// each final up to 5,000 entries after its precertificate.
	k := int(max(8, n/10000))
	for id := range k {
		var pre, fin int64
		for {
			switch id {
			case 0:
				pre = 0
				fin = 1 + r.Int64N(min(5000, n-3))
			case k - 1:
				fin = n - 1
				pre = n - 2 - int64(r.IntN(300))
			default:
				pre = 1 + r.Int64N(n-3)
				fin = pre + 1 + r.Int64N(min(5000, n-2-pre))
			}
			if pre != fin && free(pre) && free(fin) {
				break
			}
		}
		p.slots[pre] = slot{slotNeedlePrecert, id}
		p.slots[fin] = slot{slotNeedleFinal, id}
		is := g.needleIssuance(id)
		p.Needles = append(p.Needles, Needle{
			ID: id, Names: is.names, Watches: needleWatches(is.names), Precert: pre, Final: fin, SCTs: is.scts,
		})
	}

	// Decoys: names that look like the watched domains but are not theirs.
	for d := range int(max(int64(len(decoyNames)), n/20000)) {
		var i int64
		for i = r.Int64N(n); !free(i); i = r.Int64N(n) {
		}
		p.slots[i] = slot{slotDecoy, d}
		p.Decoys = append(p.Decoys, i)
	}
	return p
}

// needleWatches is which of Watched the names concern (by suffix, or as a
// wildcard covering the watched domain itself).
func needleWatches(names []string) []string {
	var out []string
	for _, w := range Watched {
		for _, n := range names {
			n = strings.ToLower(n)
			if n == w || strings.HasSuffix(n, "."+w) || n == "*."+w[strings.Index(w, ".")+1:] {
				out = append(out, w)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

var decoyNames = [][]string{
	{"notexample.com", "www.notexample.com"},
	{"example.com.evil.net"},
	{"example.co", "www.example.co"},
	{"example.org.uk", "www.example.org.uk"},
	{"myexample.org"},
	{"example-com.net", "examplecom.org"},
	{"*.notexample.com"},
	{"*.example.co"},
	{"www.example.com.evil.net", "example.orgy.net"},
	{"example.com-login.info", "secure-example.org.ru"},
}

// needleNames are the names of needle id: one of eight shapes.
func needleNames(id int, r *rand.Rand) []string {
	s := strconv.Itoa(id)
	switch id % 8 {
	case 0:
		return []string{"n" + s + ".example.com"}
	case 1:
		return []string{"example.org", "www.example.org"}
	case 2:
		return []string{"*.api.example.com"}
	case 3: // one needle among many SANs
		names := randNames(r, 15)
		return slices.Insert(names, 7, "shop"+s+".example.com")
	case 4: // as some CAs keep what the subscriber wrote
		return []string{"Mail" + s + ".Example.ORG"}
	case 5:
		return []string{"a" + s + ".example.com", "b" + s + ".example.org"}
	case 6:
		return []string{"*.example.com", "example.com"}
	default: // a big multi-domain certificate, the needle last
		return append(randNames(r, 60), "deep.sub"+s+".example.org")
	}
}

// issuance is what a precertificate and its final certificate share.
type issuance struct {
	ca                  *ca
	serial              []byte
	notBefore, notAfter time.Time
	names               []string
	cn                  string // "" for an empty subject
	key                 keyKind
	spki                []byte
	ski                 []byte
	crl                 string
	clientAuth          bool
	scts                int
}

// newIssuance draws an issuance; names are drawn too when nil.
func (g *Generator) newIssuance(r *rand.Rand, names []string) *issuance {
	c := g.cas[0]
	w := r.IntN(g.cum[len(g.cum)-1])
	for i, cw := range g.cum {
		if w < cw {
			c = g.cas[i]
			break
		}
	}
	is := &issuance{ca: c, scts: 2 + r.IntN(2)}
	is.serial = make([]byte, c.serialLen)
	fill(r, is.serial)
	is.serial[0] = c.serialTop + byte(r.IntN(4))
	// Whole seconds in the 60 days before the epoch.
	is.notBefore = g.validity.Add(time.Duration(r.Int64N(int64(60*day/time.Second))) * time.Second)
	is.notAfter = is.notBefore.Add(c.validity - time.Second)
	if names == nil {
		names = randNames(r, sanCount(r))
	}
	is.names = names
	if r.IntN(10) > 0 {
		is.cn = names[0]
	}
	if r.IntN(100) < 55 {
		is.key = keyP256
		is.spki = g.ecKeys[r.IntN(len(g.ecKeys))]
	} else {
		is.key = keyRSA2048
		is.spki = rsaSPKI(r, 2048)
	}
	is.ski = make([]byte, 20)
	fill(r, is.ski)
	if c.crl != "" {
		is.crl = c.crlURL(r.IntN(c.crlShards))
	}
	is.clientAuth = c.cn != "R10" && c.cn != "R11" && c.cn != "E5" && c.cn != "E6"
	return is
}

// sanCount: 85% 1–3, 14% 4–20, 1% 21–100.
func sanCount(r *rand.Rand) int {
	switch u := r.IntN(100); {
	case u < 85:
		return 1 + r.IntN(3)
	case u < 99:
		return 4 + r.IntN(17)
	default:
		return 21 + r.IntN(80)
	}
}

// tbs encodes the TBSCertificate: with the poison for a precertificate,
// with the SCT list for a final certificate (r draws it), or with neither
// (the precert_entry's). That extension is last, as CAs place it.
func (is *issuance) tbs(poison, scts bool, r *rand.Rand, logIDs [][32]byte) []byte {
	d := derBuf{b: make([]byte, 0, 1024+40*len(is.names)), stack: make([]int, 0, 8)}
	d.open(0x30)
	d.raw(derVersion3)
	d.prim(0x02, is.serial)
	d.raw(is.ca.key.sigAlg())
	d.raw(is.ca.subject)
	d.open(0x30)
	d.prim(0x17, utcTime(is.notBefore))
	d.prim(0x17, utcTime(is.notAfter))
	d.close()
	d.open(0x30)
	if is.cn != "" {
		d.open(0x31)
		d.open(0x30)
		d.raw(oidCN)
		d.str(0x0c, is.cn)
		d.close()
		d.close()
	}
	d.close()
	d.raw(is.spki)
	d.open(0xa3)
	d.open(0x30)
	if is.key == keyP256 {
		d.raw(extKUEC)
	} else {
		d.raw(extKURSA)
	}
	if is.clientAuth {
		d.raw(extEKUServerClient)
	} else {
		d.raw(extEKUServer)
	}
	d.raw(extBasicLeaf)
	d.openExt(oidExtSKI, false)
	d.prim(0x04, is.ski)
	d.closeExt()
	d.raw(is.ca.aki)
	d.raw(is.ca.aia)
	d.san(is.names, is.cn == "")
	d.raw(is.ca.policies)
	if is.crl != "" {
		d.crlDP(is.crl)
	}
	if poison {
		d.raw(extPoison)
	}
	if scts {
		d.sctListExt(r, logIDs, is.scts, is.notBefore.UnixMilli()+int64(r.IntN(5000)))
	}
	d.close()
	d.close()
	d.close()
	return d.b
}

// precert returns the precert_entry's TBSCertificate and the precertificate.
func (is *issuance) precert(r *rand.Rand) (tbs, pre []byte) {
	return is.tbs(false, false, nil, nil), certificate(is.tbs(true, false, nil, nil), is.ca.key, r)
}

// final returns the final certificate, with its SCTs.
func (g *Generator) final(is *issuance, r *rand.Rand) []byte {
	return certificate(is.tbs(false, true, r, g.logIDs), is.ca.key, r)
}

func (g *Generator) needleIssuance(id int) *issuance {
	r := rng(g.cfg.Seed, streamNeedle, uint64(id))
	return g.newIssuance(r, needleNames(id, r))
}

// Entry returns entry i.
func (g *Generator) Entry(i int64) Entry {
	e := Entry{Timestamp: g.baseTS + 7*i}
	s, special := g.plan.slots[i]
	switch {
	case !special:
		r := rng(g.cfg.Seed, streamEntry, uint64(i))
		is := g.newIssuance(r, nil)
		g.fillEntry(&e, is, r.IntN(2) == 0, r)
	case s.kind == slotNeedlePrecert || s.kind == slotNeedleFinal:
		is := g.needleIssuance(s.n)
		r := rng(g.cfg.Seed, streamNeedleSig, uint64(s.n)<<1|uint64(s.kind-slotNeedlePrecert))
		g.fillEntry(&e, is, s.kind == slotNeedlePrecert, r)
	case s.kind == slotDecoy:
		r := rng(g.cfg.Seed, streamDecoy, uint64(s.n))
		is := g.newIssuance(r, decoyNames[s.n%len(decoyNames)])
		g.fillEntry(&e, is, s.n%2 == 0, r)
	case s.kind == slotMalformed:
		r := rng(g.cfg.Seed, streamMalformed, uint64(s.n))
		is := g.newIssuance(r, nil)
		switch s.n % 3 {
		case 0: // a truncated certificate
			g.fillEntry(&e, is, false, r)
			e.Cert = e.Cert[:len(e.Cert)*3/5]
		case 1: // garbage
			e.CA = is.ca
			e.Cert = randBytes(r, 200+r.IntN(1000))
			e.Cert[0] = 0x01
		default: // a precertificate entry with a truncated TBSCertificate
			g.fillEntry(&e, is, true, r)
			e.Cert = e.Cert[:len(e.Cert)/2]
		}
	}
	return e
}

func (g *Generator) fillEntry(e *Entry, is *issuance, precert bool, r *rand.Rand) {
	e.CA, e.Precert = is.ca, precert
	if precert {
		e.Cert, e.PreCert = is.precert(r)
	} else {
		e.Cert = g.final(is, r)
	}
}

// Expected fills in the tbs_sha256 of every needle, computed as ctsource
// does from the final certificate, and checks that the precertificate
// entry gives the same.
func (g *Generator) Expected() ([]Needle, error) {
	out := slices.Clone(g.plan.Needles)
	for k := range out {
		n := &out[k]
		fin, pre := g.Entry(n.Final), g.Entry(n.Precert)
		tbs, ok := tbsOf(fin.Cert)
		if !ok {
			return nil, fmt.Errorf("needle %d: final certificate does not parse", n.ID)
		}
		stripped, _, err := cert.StripTBS(tbs)
		if err != nil {
			return nil, fmt.Errorf("needle %d: %v", n.ID, err)
		}
		strippedPre, _, err := cert.StripTBS(pre.Cert)
		if err != nil {
			return nil, fmt.Errorf("needle %d precertificate: %v", n.ID, err)
		}
		n.TBSSHA256 = sha(stripped)
		if sha(strippedPre) != n.TBSSHA256 {
			return nil, fmt.Errorf("needle %d: precertificate and final certificate are different issuances", n.ID)
		}
	}
	return out, nil
}

var (
	syllables = []string{"al", "ba", "co", "da", "el", "fi", "go", "ha", "in", "jo", "ka", "lu", "mi", "no", "or",
		"pa", "qu", "ri", "sa", "tu", "ur", "vi", "wo", "za", "ber", "con", "dor", "fen", "gar", "hol", "lin", "mar",
		"nor", "pol", "ran", "sol", "ter", "ven", "win", "zen", "cloud", "shop", "tech", "data", "net", "web", "app",
		"home", "blog", "news", "media", "labs", "store", "host", "green", "blue", "north", "city", "smart", "fast"}
	tlds = []string{"com", "com", "com", "com", "com", "com", "net", "org", "org", "de", "io", "co.uk", "fr", "nl",
		"app", "dev", "info", "com.br", "jp", "ru", "pl", "it", "es", "ca", "com.au", "xyz", "online", "site"}
	subs = []string{"www", "mail", "api", "cdn", "shop", "m", "app", "blog", "static", "dev", "staging", "portal",
		"auth", "login", "img", "admin", "vpn", "git", "status", "docs", "autodiscover", "webmail", "cpanel", "ftp"}
)

func randLabel(r *rand.Rand) string {
	var b []byte
	for range 1 + r.IntN(3) {
		b = append(b, syllables[r.IntN(len(syllables))]...)
	}
	if r.IntN(4) == 0 {
		b = strconv.AppendInt(b, int64(r.IntN(1000)), 10)
	}
	return string(b)
}

// randDomain is a registrable domain that is never one of Watched.
func randDomain(r *rand.Rand) string {
	for {
		l := randLabel(r)
		if !strings.Contains(l, "example") {
			return l + "." + tlds[r.IntN(len(tlds))]
		}
	}
}

// randNames draws n distinct DNS names, as a subscriber asks for them.
func randNames(r *rand.Rand, n int) []string {
	base := randDomain(r)
	names := make([]string, 0, n+1)
	switch u := r.IntN(12); {
	case u == 0:
		names = append(names, "*."+base, base)
	case u < 7:
		names = append(names, base, "www."+base)
	default:
		names = append(names, subs[r.IntN(len(subs))]+"."+base)
	}
	for len(names) < n {
		var name string
		switch {
		case n > 20 && r.IntN(3) > 0: // hosting: many customers' domains
			base = randDomain(r)
			name = base
		case r.IntN(3) > 0:
			name = subs[r.IntN(len(subs))] + "." + base
		default:
			name = randLabel(r) + "." + base
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names[:n]
}
