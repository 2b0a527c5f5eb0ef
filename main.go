// Command ct_exporter watches Certificate Transparency for the domains you
// own and exposes every new certificate as Prometheus metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/coreos/go-systemd/v22/activation"
	"github.com/mdlayher/vsock"
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
	"github.com/ct-exporter/ct_exporter/state"
	"github.com/ct-exporter/ct_exporter/statuspage"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	app := kingpin.New("ct_exporter", "Watches Certificate Transparency for your domains and exposes new certificates as Prometheus metrics.")
	var (
		configFile  = app.Flag("config.file", "The YAML configuration file.").Default("ct_exporter.yml").String()
		configCheck = app.Flag("config.check", "Validate the configuration, print what it would watch, and exit (0 valid, 1 not).").Bool()
		stateFile   = app.Flag("state.file", "The state file: what was seen and how far each source has read. Created if missing.").Default("ct_exporter.state").String()
		metricsPath = app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
		shardFlag   = app.Flag("shard", "i/n: this replica follows only the ctlog sources whose log id hashes to i mod n (search sources are not sharded).").Default("0/1").String()
		webConfig   = kingpinflag.AddFlags(app, ":9812")
		maxConns    = app.Flag("web.max-connections", "Maximum number of simultaneous connections; when all are taken, the one idle for longest is closed to make room, and only requests under way make a new connection wait.").Default("512").Int()
		idleTimeout = app.Flag("web.idle-timeout", "How long a keep-alive connection may stay idle (for tests).").Hidden().Default("2m").Duration()
		logConfig   = &promslog.Config{}
	)
	promslogflag.AddFlags(app, logConfig)
	var logLevelSet bool
	app.GetFlag("log.level").IsSetByUser(&logLevelSet)
	app.Version(version.Print("ct_exporter"))
	app.HelpFlag.Short('h')
	app.Command("serve", "Run the exporter (the default command).").Default()
	checkCmd := app.Command("check", "Poll every source once, print the certificates new to the state file, record them, and exit: "+
		"0 when none is issuer_unexpected, 1 when one is, 2 when a source failed (1 wins over 2). For cron, and for trying a configuration.")
	checkOutput := checkCmd.Flag("output", "How to print the new certificates: table or json.").Default("table").Enum("table", "json")
	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ct_exporter: %v\n", err)
		return 2
	}
	if cmd == checkCmd.FullCommand() {
		// The table is the output; info lines on stderr would repeat it.
		if !logLevelSet {
			logConfig.Level.Set("warn")
		}
		return runCheck(*configFile, *stateFile, *checkOutput, promslog.New(logConfig), os.Stdout, os.Stderr)
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
		cfg.Describe(os.Stdout)
		return 0
	}
	shardIndex, shardCount, err := parseShard(*shardFlag)
	if err != nil {
		logger.Error("invalid --shard", "err", err)
		return 1
	}

	logger.Info("starting ct_exporter", "version", version.Info())
	logger.Info("build context", "build_context", version.BuildContext())

	cfg, err := config.Load(*configFile)
	if err != nil {
		logger.Error("invalid configuration", "file", *configFile, "err", err)
		return 1
	}
	store, err := state.Open(*stateFile, state.Options{})
	if err != nil {
		logger.Error("cannot open the state file", "err", err)
		return 1
	}
	defer store.Close()
	mon := monitor.New(store, logger, monitor.Shard{Index: shardIndex, Count: shardCount})
	if err := mon.Apply(cfg); err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	mon.Start()
	defer mon.Stop()
	logger.Info("watching", "watches", len(cfg.Watches), "sources", len(cfg.Sources), "state", *stateFile,
		"issuances_in_state", store.Snapshot().Certificates)

	reg := prometheus.NewRegistry()
	reloads := newReloader(*configFile, mon, logger)
	ct := collector.New(store, mon, logger)
	reg.MustRegister(
		versioncollector.NewCollector("ct_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		ct,
		reloads.success, reloads.timestamp,
	)
	reloads.success.Set(1)
	reloads.timestamp.SetToCurrentTime()

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle(*metricsPath, collector.NewHandler(reg, ct, store, logger))
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
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "Use POST to reload the configuration.", http.StatusMethodNotAllowed)
			return
		}
		if crossOrigin(r) {
			// A web page the operator visits must not reload the
			// exporter (a form posts cross-origin without any CORS check).
			http.Error(w, "Cross-origin reload refused.", http.StatusForbidden)
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

	limiter := connlimit.New(*maxConns)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Longer than any scrape: Prometheus's scrape timeout is at most
		// its interval, and a /metrics of 10,000 series takes milliseconds.
		WriteTimeout: 2 * time.Minute,
		IdleTimeout:  *idleTimeout,
		ConnState:    limiter.ConnState,
	}
	listeners, err := listen(webConfig, logger)
	if err != nil {
		logger.Error("cannot listen", "err", err)
		return 1
	}
	for i, l := range listeners {
		listeners[i] = limiter.Listener(l)
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
	mu        sync.Mutex
	file      string
	mon       *monitor.Monitor
	logger    *slog.Logger
	success   prometheus.Gauge
	timestamp prometheus.Gauge
}

func newReloader(file string, mon *monitor.Monitor, logger *slog.Logger) *reloader {
	return &reloader{
		file:   file,
		mon:    mon,
		logger: logger,
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ct_config_last_reload_successful",
			Help: "1 if the last configuration reload succeeded (a failed one keeps the previous configuration).",
		}),
		timestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ct_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded successfully.",
		}),
	}
}

func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := config.Load(r.file)
	if err == nil {
		err = r.mon.Apply(cfg)
	}
	if err != nil {
		r.success.Set(0)
		r.logger.Error("configuration reload failed; keeping the previous configuration", "file", r.file, "err", err)
		return err
	}
	r.success.Set(1)
	r.timestamp.SetToCurrentTime()
	r.logger.Info("configuration reloaded", "file", r.file, "watches", len(cfg.Watches), "sources", len(cfg.Sources))
	return nil
}

// listen opens the listeners exporter-toolkit's ListenAndServe would
// (systemd socket activation, vsock://:port, TCP addresses), so that
// --web.max-connections can bound them.
func listen(flags *web.FlagConfig, logger *slog.Logger) ([]net.Listener, error) {
	if flags.WebSystemdSocket != nil && *flags.WebSystemdSocket {
		logger.Info("Listening on systemd activated listeners instead of port listeners.")
		listeners, err := activation.Listeners()
		if err != nil {
			return nil, err
		}
		if len(listeners) < 1 {
			return nil, errors.New("no socket activation file descriptors found")
		}
		return listeners, nil
	}
	var listeners []net.Listener
	for _, address := range *flags.WebListenAddresses {
		var l net.Listener
		var err error
		if strings.HasPrefix(address, "vsock://") {
			var u *url.URL
			var port uint64
			if u, err = url.Parse(address); err == nil {
				_, p, perr := net.SplitHostPort(u.Host)
				if port, err = strconv.ParseUint(p, 10, 32); perr != nil {
					err = perr
				}
			}
			if err == nil {
				l, err = vsock.Listen(uint32(port), nil)
			}
		} else {
			l, err = net.Listen("tcp", address)
		}
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, fmt.Errorf("listen on %s: %w", address, err)
		}
		listeners = append(listeners, l)
	}
	return listeners, nil
}

// crossOrigin reports a request a web page made on another site's behalf:
// an Origin header naming another host than the request's own ("null"
// included), or a browser saying so. curl and Prometheus send neither.
func crossOrigin(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host)
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
