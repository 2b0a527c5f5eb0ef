// Command ct_exporter watches Certificate Transparency for the domains you
// own and exposes every new certificate as Prometheus metrics.
package main

import (
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/ct-exporter/ct_exporter/collector"
	"github.com/ct-exporter/ct_exporter/config"
	"github.com/ct-exporter/ct_exporter/internal/connlimit"
	"github.com/ct-exporter/ct_exporter/monitor"
	"github.com/ct-exporter/ct_exporter/state/pgstate"
	"github.com/ct-exporter/ct_exporter/statuspage"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	app := kingpin.New("ct_exporter", "Watches Certificate Transparency for your domains and exposes new certificates as Prometheus metrics.")
	var (
		configFile  = app.Flag("config.file", "The YAML configuration file.").Default("ct_exporter.yml").String()
		configCheck = app.Flag("config.check", "Validate the configuration, print what it would watch, and exit (0 valid, 1 not).").Bool()
		checkFull   = app.Flag("config.check.full", "With --config.check: list every watch, however many (by default more than "+strconv.Itoa(config.DescribeFullLimit)+" are summarised).").Bool()
		stateFile   = app.Flag("state.file", "The state file: what was seen and how far each source has read. Created if missing.").Default("ct_exporter.state").String()
		stateURL    = app.Flag("state.url", "Keep the state in PostgreSQL instead of --state.file: postgres://USER@HOST:PORT/DB?sslmode=…, postgresql://…, or libpq's key=value form (PGPASSWORD, PGPASSFILE and ~/.pgpass hold). The schema is created or migrated at start.").String()
		metricsPath = app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
		shardFlag   = app.Flag("shard", "i/n: this replica follows only the ctlog sources whose log id hashes to i mod n (search sources are not sharded). "+
			"With --state.url the replicas share the logs and search sources by leases in the database: leave it at 0/1 (any other value is a static pre-filter applied before the leases, the same on every replica sharing them).").Default("0/1").String()
		leaseDuration = app.Flag("state.lease-duration", "For tests: with --state.url, how long a lease on a source lasts unrenewed.").Hidden().Default("15s").Duration()
		leaseRenew    = app.Flag("state.lease-renew", "For tests: with --state.url, how often the leases are renewed and shared again.").Hidden().Default("5s").Duration()
		webConfig     = kingpinflag.AddFlags(app, ":9812")
		maxConns      = app.Flag("web.max-connections", "At most this many simultaneous HTTP connections; at the limit, the longest idle one is closed to make room.").Default("512").Int()
		idleTimeout   = app.Flag("web.idle-timeout", "For tests: how long an idle keep-alive connection stays open.").Hidden().Default("2m").Duration()
		logConfig     = &promslog.Config{}
	)
	promslogflag.AddFlags(app, logConfig)
	var logLevelSet, stateFileSet bool
	app.GetFlag("log.level").IsSetByUser(&logLevelSet)
	app.GetFlag("state.file").IsSetByUser(&stateFileSet)
	stampVersion(debug.ReadBuildInfo())
	app.Version(version.Print("ct_exporter"))
	app.HelpFlag.Short('h')
	app.Command("serve", "Run the exporter (the default command).").Default()
	checkCmd := app.Command("check", "Poll every source once, print the certificates new to the state file, record them, and exit: "+
		"0 when none is issuer_unexpected, 1 when one is, 2 when a source failed (1 wins over 2). For cron, and for trying a configuration. With a state file only: --state.url is refused (it would commit without a lease).")
	checkOutput := checkCmd.Flag("output", "How to print the new certificates: table or json.").Default("table").Enum("table", "json")
	stateCopyCmd := app.Command("state", "Manage the state.").Command("copy", "Copy the whole state from a state file or PostgreSQL database to another (file to PostgreSQL, or back as a backup), "+
		"so that an exporter started on the copy neither loses nor reports again anything. Stop the exporters using either first.")
	copyFrom := stateCopyCmd.Flag("from", "The state to copy: a state file, or a PostgreSQL URL (postgres://, postgresql:// or key=value).").Required().String()
	copyTo := stateCopyCmd.Flag("to", "Where to copy it: a state file (created) or a PostgreSQL URL. It must be empty unless --replace.").Required().String()
	copyReplace := stateCopyCmd.Flag("replace", "Replace what the destination holds instead of refusing a destination that is not empty.").Bool()
	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ct_exporter: %v\n", err)
		return 2
	}
	if cmd == stateCopyCmd.FullCommand() {
		return runStateCopy(*copyFrom, *copyTo, *copyReplace, os.Stdout, os.Stderr)
	}
	stateLoc := stateLocation{file: *stateFile, fileSet: stateFileSet, url: *stateURL}
	if err := stateLoc.check(); err != nil {
		fmt.Fprintf(os.Stderr, "ct_exporter: %v\n", err)
		return 2
	}
	if cmd == checkCmd.FullCommand() {
		// The table is the output; info lines on stderr would repeat it.
		if !logLevelSet {
			logConfig.Level.Set("warn")
		}
		return runCheck(*configFile, stateLoc, *checkOutput, promslog.New(logConfig), os.Stdout, os.Stderr)
	}
	logger := promslog.New(logConfig)
	// Before anything starts: a SIGHUP's default action kills the process,
	// and a reload sent while the exporter starts (systemd's ExecReload, a
	// config management run) must not. It is handled once serving.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)

	if *configCheck {
		cfg, err := config.Load(*configFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s is not valid:\n%v\n", *configFile, err)
			return 1
		}
		fmt.Printf("%s is valid.\n\n", *configFile)
		if *checkFull {
			cfg.DescribeFull(os.Stdout)
		} else {
			cfg.Describe(os.Stdout)
		}
		return 0
	}
	shardIndex, shardCount, err := parseShard(*shardFlag)
	if err != nil {
		logger.Error("invalid --shard", "err", err)
		return 1
	}
	if *maxConns < 1 {
		logger.Error("invalid --web.max-connections: it must be at least 1", "value", *maxConns)
		return 1
	}

	logger.Info("starting ct_exporter", "version", version.Info())
	logger.Info("build context", "build_context", version.BuildContext())

	cfg, err := config.Load(*configFile)
	if err != nil {
		logger.Error("invalid configuration", "file", *configFile, "err", err)
		return 1
	}
	store, err := openStore(stateLoc, logger)
	if err != nil {
		logger.Error("cannot open the state", "state", stateLoc.String(), "err", err)
		return 1
	}
	defer store.Close()
	mon := monitor.New(store, logger, monitor.Shard{Index: shardIndex, Count: shardCount})
	if pg, ok := store.(*pgstate.Store); ok {
		if *leaseRenew <= 0 || *leaseDuration <= *leaseRenew {
			logger.Error("invalid lease timings: --state.lease-renew must be positive and shorter than --state.lease-duration")
			return 1
		}
		leaser := pg.Leaser(replicaID(), *leaseDuration)
		logger.Info("sharing the sources with the other replicas by leases", "replica", leaser.ID(),
			"lease_duration", *leaseDuration, "renew_interval", *leaseRenew)
		mon.ShareWith(leaser, *leaseRenew)
	}
	ct := collector.New(store, mon, logger)
	mon.ReportTo(ct.Sources())
	if err := mon.Apply(cfg); err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	mon.Start()
	defer mon.Stop()
	logger.Info("watching", "watches", len(cfg.Watches), "sources", len(cfg.Sources), "state", stateLoc.String(),
		"issuances_in_state", store.Snapshot().Certificates)

	reg := prometheus.NewRegistry()
	reloads := newReloader(*configFile, mon, logger)
	reg.MustRegister(
		versioncollector.NewCollector("ct_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		ct,
		reloads.metrics,
	)
	// ct_watch_info's label names are the configuration's: unchecked.
	reg.MustRegister(collector.NewWatchInfo(mon.WatchSet))
	reloads.metrics.Succeeded(time.Now())
	reloads.metrics.Configured(searchRounds(cfg, logger))

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle(*metricsPath, collector.NewHandler(reg, store, logger))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Healthy.")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "Not ready.", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ready.")
	})
	// A web page the operator visits must not be able to make their browser
	// reload the exporter (a POST needs no CORS preflight): a request that
	// says it comes from another origin (Sec-Fetch-Site, else Origin against
	// Host; "Origin: null" included) is refused. curl sends neither header.
	crossOrigin := http.NewCrossOriginProtection()
	crossOrigin.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger.Warn("refused a cross-origin request", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "remote", r.RemoteAddr)
		http.Error(w, "Cross-origin request refused: send it without an Origin header of another host (e.g. curl -X POST).", http.StatusForbidden)
	}))
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "Use POST to reload the configuration.", http.StatusMethodNotAllowed)
			return
		}
		if err := reloads.reload(); err != nil {
			http.Error(w, fmt.Sprintf("The configuration was not reloaded; the previous one is still in use:\n%v", err), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "Reloaded.")
	})
	if *metricsPath != "/" {
		mux.Handle("/", statuspage.New(store, mon, statuspage.Options{Version: version.Info(), MetricsPath: *metricsPath, Logger: logger}))
	}

	limit := connlimit.Fit(*maxConns)
	if limit < *maxConns {
		logger.Warn("--web.max-connections lowered to half the files this process may open (raise its limit, e.g. LimitNOFILE=, to allow more)",
			"max_connections", limit, "flag", *maxConns)
	}
	limiter := connlimit.New(limit, logger)
	srv := &http.Server{
		Handler: crossOrigin.Handler(mux),
		// A connection that has not sent its request header in time, or
		// its body, is closed; at the connection limit an idle one is
		// closed at once (see connlimit).
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Far above what /metrics and the status page take with 10,000
		// recent series (well under a second), so that only a client
		// that stops reading is cut off.
		WriteTimeout: 2 * time.Minute,
		// Above any scrape interval, so that keep-alive still serves
		// Prometheus.
		IdleTimeout: *idleTimeout,
		ConnState:   limiter.ConnState,
	}
	listeners, err := listen(webConfig, logger)
	if err != nil {
		logger.Error("cannot listen", "err", err)
		return 1
	}
	for i, l := range listeners {
		listeners[i] = limiter.Listen(l)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ServeMultiple(listeners, srv, webConfig, logger) }()
	ready.Store(true)

	for {
		select {
		case err := <-serveErr:
			if !errors.Is(err, http.ErrServerClosed) {
				logger.Error("HTTP server failed", "err", err)
				return 1
			}
			return 0
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				reloads.reload()
				continue
			}
			logger.Info("shutting down", "signal", sig.String())
			ready.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			srv.Shutdown(ctx)
			cancel()
			return 0
		}
	}
}

// reloader applies a changed configuration file; a bad one is rejected and
// the running configuration kept.
type reloader struct {
	mu      sync.Mutex
	file    string
	mon     *monitor.Monitor
	logger  *slog.Logger
	metrics *collector.Reloads
}

func newReloader(file string, mon *monitor.Monitor, logger *slog.Logger) *reloader {
	return &reloader{file: file, mon: mon, logger: logger, metrics: collector.NewReloads()}
}

func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := config.Load(r.file)
	if err == nil {
		err = r.mon.Apply(cfg)
	}
	if err != nil {
		r.metrics.Failed()
		r.logger.Error("configuration reload failed; keeping the previous configuration", "file", r.file, "err", err)
		return err
	}
	r.metrics.Succeeded(time.Now())
	r.metrics.Configured(searchRounds(cfg, r.logger))
	r.logger.Info("configuration reloaded", "file", r.file, "watches", len(cfg.Watches), "sources", len(cfg.Sources))
	return nil
}

// searchRounds is, for each search source, the least time a round of
// searches of all its watches takes; a source that cannot search them all
// within its interval is warned about, rather than silently falling behind.
func searchRounds(cfg *config.Config, logger *slog.Logger) map[string]time.Duration {
	rounds := map[string]time.Duration{}
	for i := range cfg.Sources {
		s := &cfg.Sources[i]
		n, round := cfg.SearchRound(s)
		if s.Type != config.TypeCrtsh && s.Type != config.TypeCertspotter {
			continue
		}
		rounds[s.Name] = round
		if why := cfg.Overdue(s); why != "" {
			logger.Warn("a search source cannot keep up with its watches", "source", s.Name, "watches", n,
				"round", round, "interval", time.Duration(s.Interval), "why", why)
		}
	}
	return rounds
}

// replicaID names this replica among those sharing the state: host, pid
// and a random part, so that a restarted replica is a new holder.
func replicaID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = cryptorand.Read(b[:])
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}

// parseShard parses --shard i/n.
func parseShard(s string) (i, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	if ok {
		i, err = strconv.Atoi(a)
		if err == nil {
			n, err = strconv.Atoi(b)
		}
	}
	if !ok || err != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("%q is not i/n with 0 <= i < n", s)
	}
	return i, n, nil
}

// stampVersion fills in the version and revision that -ldflags did not set
// from what Go records in every binary, so that a plain go build in a
// checkout says what it runs: the module version (a pseudo-version naming
// the commit, "+dirty" for a modified tree) and the VCS revision, with
// "-modified" as prometheus/common/version marks it.
func stampVersion(info *debug.BuildInfo, ok bool) {
	v, rev := buildVersion(info, ok)
	if version.Version == "" {
		version.Version = v
	}
	if version.Revision == "" {
		version.Revision = rev
	}
}

// buildVersion is the version and revision a binary's build information
// gives: "devel" and "unknown" where it has none (go run, a build outside
// a VCS checkout such as the Dockerfile's, which passes them in instead).
func buildVersion(info *debug.BuildInfo, ok bool) (v, revision string) {
	v, revision = "devel", "unknown"
	if !ok || info == nil {
		return v, revision
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		v = mv
	}
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && revision != "unknown" {
		revision += "-modified"
	}
	return v, revision
}
