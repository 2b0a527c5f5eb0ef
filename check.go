package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/watch"
)

// Exit codes of ct_exporter check. An unexpected issuance outranks a failed
// source: it is recorded now and will not be reported again, so a wrapper
// that treats 2 as "try later" must not swallow it.
const (
	checkClean      = 0
	checkUnexpected = 1
	checkFailed     = 2
)

// checkRow is one new issuance for one watch, as check prints it.
type checkRow struct {
	Watch        string    `json:"watch"`
	Verdict      string    `json:"verdict"`
	DNSNames     []string  `json:"dns_names"`
	IPAddresses  []string  `json:"ip_addresses,omitempty"`
	SubjectCN    string    `json:"subject_cn,omitempty"`
	Issuer       string    `json:"issuer"`
	Serial       string    `json:"serial"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	EmbeddedSCTs *int      `json:"embedded_scts"` // null for a precertificate only
	TBSSHA256    string    `json:"tbs_sha256"`
	CertSHA256   string    `json:"cert_sha256"`
	SPKISHA256   string    `json:"pubkey_sha256"`
	FirstSeen    time.Time `json:"first_seen"`
	Link         string    `json:"crtsh_url"`
	// ParseError is why a strict X.509 parser refuses a certificate of
	// the issuance (it is recorded from what its DER says).
	ParseError string `json:"parse_error,omitempty"`

	verdict watch.Verdict
}

func newCheckRow(is *state.Issuance, m state.Match) checkRow {
	r := checkRow{
		Watch:      m.Watch,
		Verdict:    m.Verdict.String(),
		DNSNames:   is.DNSNames,
		SubjectCN:  is.SubjectCN,
		Issuer:     is.Issuer.DN,
		Serial:     is.Serial,
		NotBefore:  is.NotBefore.UTC(),
		NotAfter:   is.NotAfter.UTC(),
		TBSSHA256:  hex.EncodeToString(is.TBSSHA256[:]),
		CertSHA256: state.CertHex(is.CertSHA256),
		SPKISHA256: hex.EncodeToString(is.SPKISHA256[:]),
		FirstSeen:  is.FirstSeen.UTC(),
		Link:       "https://crt.sh/?sha256=" + state.CertHex(is.CertSHA256),
		ParseError: is.ParseError,
		verdict:    m.Verdict,
	}
	if r.CertSHA256 == "" {
		r.Link = "https://crt.sh/?serial=" + url.QueryEscape(is.Serial)
	}
	if r.DNSNames == nil {
		r.DNSNames = []string{}
	}
	for _, a := range is.IPs {
		r.IPAddresses = append(r.IPAddresses, a.String())
	}
	if is.EmbeddedSCTs >= 0 {
		n := is.EmbeddedSCTs
		r.EmbeddedSCTs = &n
	}
	return r
}

// runCheck polls every source once, prints what is new and records it.
func runCheck(cfgFile string, stateLoc stateLocation, output string, logger *slog.Logger, stdout, stderr io.Writer) int {
	if stateLoc.url != "" {
		// check commits without a lease: beside running replicas it would
		// record log positions and cursors that their fenced commits do
		// not expect. Refused rather than half-supported.
		fmt.Fprintf(stderr, "ct_exporter check: --state.url is not supported: check commits without the replicas' leases. "+
			"Run it against a state file (--state.file), or copy the state to a file first (ct_exporter state copy)\n")
		return checkFailed
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		fmt.Fprintf(stderr, "%s is not valid:\n%v\n", cfgFile, err)
		return checkFailed
	}
	store, err := openStore(stateLoc, logger)
	if err != nil {
		fmt.Fprintf(stderr, "ct_exporter check: %v\n", err)
		return checkFailed
	}
	defer store.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	type found struct {
		tbs   [32]byte
		match state.Match
	}
	var news []found
	mon := monitor.New(store, logger, monitor.Shard{})
	res, err := monitor.PollOnce(ctx, cfg, mon, func(is *state.Issuance, fresh []state.Match) {
		for _, m := range fresh {
			news = append(news, found{is.TBSSHA256, m})
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "ct_exporter check: %v\n", err)
	}
	// Each issuance as it stands once every source is done: a final
	// certificate seen after its precertificate brings its SCTs.
	var rows []checkRow
	if verr := func() error {
		for _, n := range news {
			is, err := store.Issuance(n.tbs)
			if err != nil {
				return err
			}
			if is != nil {
				rows = append(rows, newCheckRow(is, n.match))
			}
		}
		return nil
	}(); verr != nil {
		fmt.Fprintf(stderr, "ct_exporter check: %v\n", verr)
		err = verr
	}
	slices.SortStableFunc(rows, func(a, b checkRow) int {
		return cmp.Or(cmp.Compare(b.verdict, a.verdict), a.FirstSeen.Compare(b.FirstSeen), cmp.Compare(a.Watch, b.Watch))
	})
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			fmt.Fprintf(stderr, "ct_exporter check: %v\n", err)
			return checkFailed
		}
	} else {
		printCheckTable(stdout, rows)
	}

	code := checkClean
	if res != nil && len(res.Failed) > 0 {
		fmt.Fprintf(stderr, "ct_exporter check: %d of %d sources failed; what they hold is not checked:\n%v\n",
			len(res.Failed), len(res.Polled), res.Errors())
		code = checkFailed
	}
	if err != nil {
		code = checkFailed
	}
	for _, r := range rows {
		if r.verdict == watch.IssuerUnexpected {
			code = checkUnexpected
		}
	}
	return code
}

// printCheckTable prints one line per issuance and watch. Every certificate
// field is escaped: a name with terminal control sequences must not rewrite
// the operator's screen.
func printCheckTable(w io.Writer, rows []checkRow) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "No new certificates.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "VERDICT\tWATCH\tNAMES\tISSUER\tSERIAL\tNOT BEFORE\tSCTS\tCRT.SH")
	for _, r := range rows {
		names := r.DNSNames
		if len(names) == 0 && r.SubjectCN != "" {
			names = []string{r.SubjectCN}
		}
		names = append(slices.Clone(names), r.IPAddresses...)
		shown := names
		if len(shown) > 3 {
			shown = append(slices.Clone(shown[:3]), "+"+strconv.Itoa(len(names)-3)+" more")
		}
		scts := "precert"
		if r.EmbeddedSCTs != nil {
			scts = strconv.Itoa(*r.EmbeddedSCTs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Verdict, r.Watch, cell(strings.Join(shown, ",")), cell(r.Issuer), cell(r.Serial),
			r.NotBefore.Format("2006-01-02 15:04"), scts, r.Link)
	}
	tw.Flush()
	for _, r := range rows {
		if r.ParseError != "" {
			fmt.Fprintf(w, "\n! %s %s: the certificate does not parse (strict X.509): %s\n",
				r.Watch, r.TBSSHA256, cell(r.ParseError))
		}
	}
	fmt.Fprintf(w, "\n%d new certificate(s).\n", len(rows))
}

// cell escapes a field; Escape also turns a tab, which would break the
// columns, into \x09.
func cell(s string) string { return watch.Escape(s) }
