// Package config reads and validates the YAML configuration. Validation is
// strict — unknown keys, bad durations, invalid domains and duplicate names
// are errors that give the file, the line and what to do — because a typo in
// a monitoring config silently watching nothing is the worst outcome.
package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/ct-exporter/ct_exporter/watch"
)

// Config is the whole configuration file.
type Config struct {
	RecentWindow      Duration `yaml:"recent_window"`
	RecentSeriesLimit int      `yaml:"recent_series_limit"`
	// MaxIssuersPerWatch bounds the issuer label values of
	// ct_new_certificates_total per watch: issuers beyond it are counted
	// as issuer="other".
	MaxIssuersPerWatch int     `yaml:"max_issuers_per_watch"`
	Watches            []Watch `yaml:"watches"`
	// WatchFiles are globs of YAML files, each a list of watches entries,
	// read at every (re)load; relative ones from the configuration's
	// directory.
	WatchFiles []string `yaml:"watch_files"`
	Sources    []Source `yaml:"sources"`

	// Policy is the compiled watches, authorized keys from files included.
	Policy *watch.Set `yaml:"-"`
}

// Watch is one watches entry: one domain, or a group of domains sharing
// one policy. Once loaded, Config.Watches holds one entry per domain (the
// groups and the watch files expanded), its Domain normalized.
type Watch struct {
	Domain                 string   `yaml:"domain"`
	Domains                []string `yaml:"domains"`
	IncludeSubdomains      *bool    `yaml:"include_subdomains"`
	ExpectedIssuers        []string `yaml:"expected_issuers"`
	AuthorizedKeys         []string `yaml:"authorized_keys"`
	AuthorizedKeyFiles     []string `yaml:"authorized_key_files"`
	AuthorizedCertificates []string `yaml:"authorized_certificates"`
	// Labels are added, through ct_watch_info, to the alerts about this
	// watch's issuances (label name → value).
	Labels map[string]string `yaml:"labels"`

	// File is where the entry is, "file:line", for messages.
	File string `yaml:"-"`
}

// Source is one sources entry.
type Source struct {
	Name     string   `yaml:"name"`
	Type     string   `yaml:"type"`
	URL      string   `yaml:"url"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	// RequestInterval spaces consecutive requests to the source (crt.sh
	// allows about one a second per client address).
	RequestInterval Duration `yaml:"request_interval"`

	// CT logs (type ctlog).
	Protocol string `yaml:"protocol"` // rfc6962 | static
	// PublicKey is a ctlog's key, base64 DER SubjectPublicKeyInfo; or the
	// key that signs a loglist's list, PEM (base64 DER accepted too).
	PublicKey         string   `yaml:"public_key"`
	Start             string   `yaml:"start"` // end | beginning | an entry index
	MMD               Duration `yaml:"mmd"`
	Workers           int      `yaml:"workers"`
	BatchSize         int      `yaml:"batch_size"`
	RequestsPerSecond float64  `yaml:"requests_per_second"`

	// The Cert Spotter API (type certspotter).
	TokenFile string `yaml:"token_file"` // a file holding the API key
	// Token is the API key read from TokenFile, which is read at every
	// (re)load. It prints as <secret>: it must never reach a log.
	Token Secret `yaml:"-"`

	// Log lists (type loglist); start, workers, batch_size and
	// requests_per_second apply to the logs it names.
	States      []string `yaml:"states"`       // default qualified, usable, readonly
	LogInterval Duration `yaml:"log_interval"` // interval of the logs it names
	// MaxLogs bounds how many logs the list may name to follow: a larger
	// list is refused, as one that does not parse is.
	MaxLogs int `yaml:"max_logs"`
	// PublicKeyFile is a PEM file holding the key that signs the list, as
	// public_key does inline.
	PublicKeyFile string `yaml:"public_key_file"`
	// SignatureURL is where the list's detached signature is (a URL, or a
	// file path as url may be); with a key only. Default: url with its
	// log_list.json ending made log_list.sig.
	SignatureURL string `yaml:"signature_url"`

	// PublicKeyDER is PublicKey (or, for a loglist, PublicKeyFile's key)
	// decoded; nil for a loglist without a key.
	PublicKeyDER []byte `yaml:"-"`
}

// keysOf lists the keys each source type takes, beyond name and type.
var keysOf = map[string][]string{
	TypeCrtsh:       {"url", "interval", "timeout", "request_interval"},
	TypeCertspotter: {"url", "interval", "timeout", "request_interval", "token_file"},
	TypeCTLog:       {"url", "interval", "timeout", "protocol", "public_key", "start", "mmd", "workers", "batch_size", "requests_per_second"},
	TypeLogList:     {"url", "interval", "timeout", "states", "log_interval", "max_logs", "public_key", "public_key_file", "signature_url", "start", "workers", "batch_size", "requests_per_second"},
}

// DefaultLogListStates are the log states a log list source follows.
var DefaultLogListStates = []string{"qualified", "usable", "readonly"}

// CT log protocols.
const (
	ProtocolRFC6962 = "rfc6962"
	ProtocolStatic  = "static"
)

// Source types.
const (
	TypeCrtsh       = "crtsh"
	TypeCertspotter = "certspotter"
	TypeCTLog       = "ctlog"
	TypeLogList     = "loglist"
)

// Defaults.
const (
	DefaultRecentWindow        = 168 * time.Hour
	DefaultRecentSeriesLimit   = 1000
	DefaultMaxIssuersPerWatch  = 100
	DefaultCrtshURL            = "https://crt.sh/"
	DefaultCrtshInterval       = time.Hour
	DefaultCrtshTimeout        = 60 * time.Second
	DefaultCrtshRequestGap     = 2 * time.Second
	DefaultCertspotterURL      = "https://api.certspotter.com/"
	DefaultCertspotterInterval = time.Hour
	DefaultCertspotterTimeout  = 60 * time.Second
	// DefaultCertspotterRequestGap keeps within the free tier's limit of
	// about 10 include_subdomains queries an hour; paid plans allow less.
	DefaultCertspotterRequestGap = 6 * time.Minute
	DefaultLogInterval           = 10 * time.Second
	DefaultLogTimeout            = 30 * time.Second
	DefaultLogMMD                = 24 * time.Hour
	DefaultLogWorkers            = 2
	DefaultRFC6962Batch          = 256
	DefaultStaticBatch           = 256 * 4 // 4 data tiles, fetched concurrently: memory stays bounded (measured: 60 MiB peak at 300k entries/s)
	DefaultLogListURL            = "https://www.gstatic.com/ct/log_list/v3/log_list.json"
	DefaultLogListInterval       = 6 * time.Hour
	DefaultLogListTimeout        = 60 * time.Second
	// DefaultLogListMaxLogs is several times what Google's or Apple's list
	// names in the default states (a few dozen logs).
	DefaultLogListMaxLogs = 200
)

// Duration is a duration in Prometheus syntax (30s, 5m, 1h, 1d).
type Duration time.Duration

// UnmarshalYAML reports a bad duration with its line, as a type error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := model.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf(
			"line %d: %q is not a duration: write it as Prometheus does, such as 30s, 5m or 1h", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in Prometheus syntax.
func (d Duration) MarshalYAML() (any, error) { return model.Duration(d).String(), nil }

func (d Duration) String() string { return model.Duration(d).String() }

// Load reads, validates and compiles a configuration file, reading the
// authorized key files it names. All problems are reported, each with the
// file and line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load for configuration already read; path names it in errors and
// relative key file globs are taken from its directory.
func Parse(data []byte, path string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	p := &problems{file: path}
	if len(root.Content) == 0 {
		p.add(1, "the configuration is empty: it needs at least watches and sources")
		return nil, p.err()
	}
	checkKeys(p, root.Content[0], typeOfConfig, "the configuration")
	if err := p.err(); err != nil {
		return nil, err
	}
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, e := range te.Errors {
				p.addRaw(e)
			}
			return nil, p.err()
		}
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cfg.validate(p, root.Content[0], filepath.Dir(path))
	if err := p.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)

func (c *Config) validate(p *problems, root *yaml.Node, dir string) {
	if c.RecentWindow == 0 {
		c.RecentWindow = Duration(DefaultRecentWindow)
	} else if c.RecentWindow < 0 {
		p.add(line(root, "recent_window"), "recent_window must be positive")
	}
	if c.RecentSeriesLimit == 0 {
		c.RecentSeriesLimit = DefaultRecentSeriesLimit
	} else if c.RecentSeriesLimit < 0 {
		p.add(line(root, "recent_series_limit"), "recent_series_limit must be positive")
	}
	if c.MaxIssuersPerWatch == 0 {
		c.MaxIssuersPerWatch = DefaultMaxIssuersPerWatch
	} else if c.MaxIssuersPerWatch < 0 {
		p.add(line(root, "max_issuers_per_watch"), "max_issuers_per_watch must be positive")
	}
	if len(c.Sources) == 0 {
		p.add(line(root, "sources"), "no sources: add at least one, such as `sources: [{name: crtsh, type: crtsh}]`")
	}

	c.compileWatches(p, root, dir)

	seenName := map[string]int{}
	for i := range c.Sources {
		s := &c.Sources[i]
		at := func(key string) int { return line(root, "sources", i, key) }
		switch {
		case s.Name == "":
			p.add(at(""), "source %d has no name: every source needs a unique name (the source label)", i+1)
		case !sourceName.MatchString(s.Name):
			p.add(at("name"), "source name %q: use letters, digits, '_', '.', ':' and '-'", s.Name)
		default:
			if prev, dup := seenName[s.Name]; dup {
				p.add(at("name"), "source name %q is used twice (also at line %d): names must be unique", s.Name, prev)
			}
			seenName[s.Name] = at("name")
		}
		set := func(key string) bool { return has(root, "sources", i, key) }
		switch s.Type {
		case TypeCrtsh:
			s.defaults(set, DefaultCrtshURL, DefaultCrtshInterval, DefaultCrtshTimeout, DefaultCrtshRequestGap)
		case TypeCTLog:
			s.defaults(set, "", DefaultLogInterval, DefaultLogTimeout, 0)
			validateLog(p, s, at, set)
		case TypeLogList:
			s.defaults(set, DefaultLogListURL, DefaultLogListInterval, DefaultLogListTimeout, 0)
			validateLogList(p, s, at, set, dir)
		case TypeCertspotter:
			s.defaults(set, DefaultCertspotterURL, DefaultCertspotterInterval, DefaultCertspotterTimeout, DefaultCertspotterRequestGap)
			validateCertspotter(p, s, at, dir)
		case "":
			p.add(at(""), "source %s has no type: use type: crtsh, certspotter, ctlog or loglist", s.Name)
			continue
		default:
			p.add(at("type"), "source %s: unknown type %q: the types are crtsh, certspotter, ctlog and loglist", s.Name, s.Type)
			continue
		}
		for _, key := range yamlKeys(root, "sources", i) {
			if key != "name" && key != "type" && !slices.Contains(keysOf[s.Type], key) {
				p.add(at(key), "source %s: %s does not apply to type %s (it takes %s)", s.Name, key, s.Type, strings.Join(keysOf[s.Type], ", "))
			}
		}
		if s.URL == "" {
			p.add(at(""), "source %s needs a url (for a static-ct-api log, its monitoring prefix)", s.Name)
		} else if s.Type == TypeLogList && !strings.Contains(s.URL, "://") {
			// a file path, checked by validateLogList
		} else if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add(at("url"), "source %s: url %q is not an http or https URL", s.Name, s.URL)
		}
		if s.Interval <= 0 {
			p.add(at("interval"), "source %s: interval must be positive", s.Name)
		}
		if s.Timeout <= 0 {
			p.add(at("timeout"), "source %s: timeout must be positive", s.Name)
		}
		if s.RequestInterval < 0 {
			p.add(at("request_interval"), "source %s: request_interval cannot be negative", s.Name)
		}
	}
}

// validateCertspotter reads the API key: a key in the configuration file
// itself would end up in version control and in --config.check output.
func validateCertspotter(p *problems, s *Source, at func(string) int, dir string) {
	if s.TokenFile == "" {
		return
	}
	// The key goes in every request's Authorization header: over plain
	// http anyone on the path reads it. A loopback address (a local proxy,
	// a test double) never leaves the host. An unparsable url is reported
	// by the common check.
	if u, err := url.Parse(s.URL); err == nil && u.Scheme == "http" && u.Host != "" && !IsLoopbackHost(u.Hostname()) {
		p.add(at("url"), "source %s: url %q is plain http and token_file is set: the API key would be sent in clear text; use https:// (plain http:// only for a loopback address: 127.0.0.0/8, ::1, localhost)", s.Name, s.URL)
		return
	}
	path := s.TokenFile
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	b, err := readSmallFile(path, 4096, "an API key")
	if err != nil {
		p.add(at("token_file"), "source %s: token_file: %v", s.Name, err)
		return
	}
	token := strings.TrimSpace(string(b))
	switch {
	case token == "":
		p.add(at("token_file"), "source %s: token_file %s is empty: put the Cert Spotter API key in it, or remove token_file to query anonymously", s.Name, path)
	case strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r > '~' }):
		// A header value cannot carry it; and saying which byte would print the key.
		p.add(at("token_file"), "source %s: token_file %s holds more than one printable word: it should hold the API key alone", s.Name, path)
	default:
		s.Token = Secret(token)
	}
}

// IsLoopbackHost reports whether host (a URL's host name, without port or
// brackets) names this machine only: localhost, 127.0.0.0/8 or ::1.
// Other names that may resolve to a loopback address are not trusted: the
// resolver, not the configuration, would decide where the request goes.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}

// readSmallFile reads a file that must be small (a key, not a key store);
// what names what it should hold.
func readSmallFile(path string, limit int64, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: it is not %s", path, limit, what)
	}
	return b, nil
}

// Secret is a credential: every way of printing it prints <secret>.
type Secret string

const redacted = "<secret>"

func (Secret) String() string                { return redacted }
func (Secret) GoString() string              { return redacted }
func (Secret) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (Secret) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (Secret) Format(f fmt.State, verb rune) { io.WriteString(f, redacted) }

// Reveal returns the secret itself, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

func validateLogList(p *problems, s *Source, at func(string) int, set func(string) bool, dir string) {
	if !strings.Contains(s.URL, "://") {
		if !filepath.IsAbs(s.URL) {
			s.URL = filepath.Join(dir, s.URL)
		}
		if _, err := os.Stat(s.URL); err != nil {
			p.add(at("url"), "source %s: log list file: %v", s.Name, err)
		}
	}
	if !set("states") {
		s.States = DefaultLogListStates
	}
	for _, st := range s.States {
		if !slices.Contains([]string{"pending", "qualified", "usable", "readonly", "retired", "rejected"}, st) {
			p.add(at("states"), "source %s: state %q: the states are pending, qualified, usable, readonly, retired and rejected", s.Name, st)
		}
	}
	if !set("log_interval") {
		s.LogInterval = Duration(DefaultLogInterval)
	} else if s.LogInterval <= 0 {
		p.add(at("log_interval"), "source %s: log_interval must be positive", s.Name)
	}
	if !set("max_logs") {
		s.MaxLogs = DefaultLogListMaxLogs
	} else if s.MaxLogs < 1 {
		p.add(at("max_logs"), "source %s: max_logs must be positive: it is how many logs the list may name to follow (default %d)", s.Name, DefaultLogListMaxLogs)
	}
	validateLogListSignature(p, s, at, set, dir)
	validateLogOptions(p, s, at, set)
}

// validateLogListSignature reads the key that signs a log list, from
// public_key or public_key_file, and decides where its signature is.
func validateLogListSignature(p *problems, s *Source, at func(string) int, set func(string) bool, dir string) {
	var (
		keyPEM []byte
		keyAt  int
		what   string
	)
	switch {
	case set("public_key") && set("public_key_file"):
		p.add(at("public_key_file"), "source %s: public_key and public_key_file are both set: give the key once", s.Name)
		return
	case set("public_key"):
		keyPEM, keyAt, what = []byte(s.PublicKey), at("public_key"), "public_key"
	case set("public_key_file"):
		path := s.PublicKeyFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		b, err := readSmallFile(path, 64<<10, "a public key")
		if err != nil {
			p.add(at("public_key_file"), "source %s: public_key_file: %v", s.Name, err)
			return
		}
		keyPEM, keyAt, what = b, at("public_key_file"), "public_key_file "+path
	default:
		if set("signature_url") {
			p.add(at("signature_url"), "source %s: signature_url is set but no public_key or public_key_file: nothing would verify the signature; add the key that signs the list", s.Name)
		}
		return
	}
	der, err := parseListKey(keyPEM)
	if err != nil {
		p.add(keyAt, "source %s: %s: %v", s.Name, what, err)
		return
	}
	s.PublicKeyDER = der
	sigAt := at("signature_url")
	if !set("signature_url") {
		base, ok := strings.CutSuffix(s.URL, "log_list.json")
		if !ok {
			p.add(keyAt, "source %s: a list whose url does not end in log_list.json has no default signature_url: set signature_url to where the list's detached signature is", s.Name)
			return
		}
		// The url made absolute above, for a file.
		s.SignatureURL, sigAt = base+"log_list.sig", keyAt
	}
	if strings.Contains(s.SignatureURL, "://") {
		if u, err := url.Parse(s.SignatureURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add(sigAt, "source %s: signature_url %q is not an http or https URL", s.Name, s.SignatureURL)
		}
		return
	}
	// A file path, as url may be; it must exist, as the list's file must.
	if !filepath.IsAbs(s.SignatureURL) {
		s.SignatureURL = filepath.Join(dir, s.SignatureURL)
	}
	if _, err := os.Stat(s.SignatureURL); err != nil {
		p.add(sigAt, "source %s: the list's signature file: %v", s.Name, err)
	}
}

// parseListKey reads the key that signs a log list: a PEM PUBLIC KEY block
// (as Google publishes log_list_pubkey.pem), or base64 DER as a ctlog's
// public_key. It must be RSA (2048 bits or more) or ECDSA.
func parseListKey(b []byte) ([]byte, error) {
	var der []byte
	if block, rest := pem.Decode(b); block != nil {
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("the PEM block is a %q: it must be a PUBLIC KEY (-----BEGIN PUBLIC KEY-----)", block.Type)
		}
		if next, _ := pem.Decode(rest); next != nil {
			return nil, errors.New("more than one PEM block: give the one public key that signs the list")
		}
		der = block.Bytes
	} else {
		d, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, errors.New("not a PEM public key (-----BEGIN PUBLIC KEY-----) nor base64 DER")
		}
		der = d
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a public key: %v", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 {
			return nil, fmt.Errorf("an RSA key of %d bits: a list's key must have 2048 bits or more", n)
		}
	case *ecdsa.PublicKey:
	default:
		return nil, fmt.Errorf("a %T key: a log list is signed with RSA (PKCS#1 v1.5, SHA-256) or ECDSA (SHA-256)", key)
	}
	return der, nil
}

func validateLog(p *problems, s *Source, at func(string) int, set func(string) bool) {
	switch s.Protocol {
	case "":
		s.Protocol = ProtocolRFC6962
	case ProtocolRFC6962, ProtocolStatic:
	default:
		p.add(at("protocol"), "source %s: protocol %q: use rfc6962 or static (static-ct-api)", s.Name, s.Protocol)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s.PublicKey))
	if err == nil {
		_, err = x509.ParsePKIXPublicKey(key)
	}
	switch {
	case s.PublicKey == "":
		p.add(at(""), "source %s: a ctlog source needs public_key (base64 DER, the log list's \"key\"): without it nothing the log says can be verified", s.Name)
	case err != nil:
		p.add(at("public_key"), "source %s: public_key is not a base64 DER SubjectPublicKeyInfo: %v", s.Name, err)
	default:
		s.PublicKeyDER = key
	}
	validateLogOptions(p, s, at, set)
	if !set("mmd") {
		s.MMD = Duration(DefaultLogMMD)
	} else if s.MMD <= 0 {
		p.add(at("mmd"), "source %s: mmd must be positive", s.Name)
	}
	if s.BatchSize == 0 {
		s.BatchSize = BatchSizeFor(s.Protocol)
	}
}

// validateLogOptions checks how logs are read, for ctlog and loglist.
func validateLogOptions(p *problems, s *Source, at func(string) int, set func(string) bool) {
	switch s.Start {
	case "":
		s.Start = "end"
	case "end", "beginning":
	default:
		if n, err := strconv.ParseInt(s.Start, 10, 64); err != nil || n < 0 {
			p.add(at("start"), "source %s: start %q: use end, beginning or an entry index", s.Name, s.Start)
		}
	}
	if !set("workers") {
		s.Workers = DefaultLogWorkers
	} else if s.Workers < 1 || s.Workers > 64 {
		p.add(at("workers"), "source %s: workers must be between 1 and 64", s.Name)
	}
	if set("batch_size") && s.BatchSize < 1 {
		p.add(at("batch_size"), "source %s: batch_size must be positive", s.Name)
	}
	if s.RequestsPerSecond < 0 {
		p.add(at("requests_per_second"), "source %s: requests_per_second cannot be negative (0 is no limit)", s.Name)
	}
}

// BatchSizeFor is the default batch size of a protocol: one request's worth.
func BatchSizeFor(protocol string) int {
	if protocol == ProtocolStatic {
		return DefaultStaticBatch
	}
	return DefaultRFC6962Batch
}

// defaults fills in the keys the file does not set; a key set to zero stays
// zero (and is then validated).
func (s *Source) defaults(set func(string) bool, u string, interval, timeout, gap time.Duration) {
	if !set("url") {
		s.URL = u
	}
	if !set("interval") {
		s.Interval = Duration(interval)
	}
	if !set("timeout") {
		s.Timeout = Duration(timeout)
	}
	if !set("request_interval") {
		s.RequestInterval = Duration(gap)
	}
}

// hashes parses a watch's list of SHA-256 hex strings, reporting each bad one.
func hashes(p *problems, entry *yaml.Node, key string, list []string, complaint, domain string) map[[32]byte]struct{} {
	set := make(map[[32]byte]struct{}, len(list))
	for j, k := range list {
		h, ok := parseHash(k)
		if !ok {
			p.add(line(entry, key, j), complaint, domain, k)
			continue
		}
		set[h] = struct{}{}
	}
	return set
}

func parseHash(s string) ([32]byte, bool) {
	var h [32]byte
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		return h, false
	}
	copy(h[:], b)
	return h, true
}
