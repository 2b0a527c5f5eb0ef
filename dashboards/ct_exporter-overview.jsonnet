// ct_exporter overview: what was issued for your domains, and whether the
// monitor itself is keeping up. Render with
//   go test ./dashboards/ -run TestRendered -update
// (jsonnet, then 2-space JSON); the test fails when the JSON is stale.
local g = import 'grafana.libsonnet';
local sel = g.sel;
// A watch's series, of the watches of the teams selected ($team, from
// ct_watch_info: a watch's labels).
local wsel = g.wsel;

// One value per issuance and watch, whichever replicas expose it.
local firstSeen(matchers='') =
  'max by (watch, tbs_sha256) (%s)' % wsel('ct_certificate_first_seen_timestamp_seconds', matchers);
local inRange(expr) = '%s > time() - $__range_s' % expr;
local countOrZero(expr) = 'count(%s) or vector(0)' % expr;
// Replicas count the same issuances: take one replica's increase per series.
// Issuances first seen within each step of a range query, counted from the
// first-seen series (a counter series born at 1, for the first issuance of a
// new watch, issuer and verdict, is invisible to increase()). A series
// appears only at its first scrape, after its first-seen time, so the window
// lags by $__rate_interval - $__interval, which Grafana makes at least one
// scrape interval: at step t it counts first-seen times in (t-R, t-R+I],
// each issuance in exactly one step, once its series exists.
local firstSeenPerStep(by) =
  'count by (%s) ((max by (watch, tbs_sha256, issuer, verdict) (%s) > time() - $__rate_interval_s) <= time() - $__rate_interval_s + $__interval_s)' % [by, wsel('ct_certificate_first_seen_timestamp_seconds')];

local verdictMappings = g.valueMappings({
  authorized: { color: 'green', text: 'authorized' },
  issuer_allowed: { color: 'blue', text: 'issuer allowed' },
  issuer_unexpected: { color: 'red', text: 'issuer UNEXPECTED' },
  unreviewed: { color: 'orange', text: 'unreviewed' },
});
local upMappings = g.valueMappings({
  '0': { color: 'red', text: 'DOWN' },
  '1': { color: 'green', text: 'UP' },
});
local zeroGood(bad) = [g.step('green'), g.step(bad, 1)];

local certificates = [
  g.row('Certificates'),
  g.line(4, [
    g.stat(
      'Unexpected issuer · first seen in range',
      'Issuances first seen in the time range whose verdict is still issuer_unexpected (CTUnexpectedIssuerCertificate, critical). Counted from the recent series, so at most recent_window back.',
      'none',
      [g.instant(countOrZero(inRange(firstSeen('verdict="issuer_unexpected"'))))],
      zeroGood('red'),
    ),
    g.stat(
      'Unreviewed · first seen in range',
      'Issuances first seen in the time range whose verdict is still unreviewed (CTUnreviewedCertificate): the watch has no expected_issuers and the key is not authorized.',
      'none',
      [g.instant(countOrZero(inRange(firstSeen('verdict="unreviewed"'))))],
      zeroGood('orange'),
    ),
    g.stat(
      'New issuances · first seen in range',
      'Every issuance first seen in the time range for a watch, whatever its verdict (recent series only: at most recent_window back, and recent_series_limit per watch).',
      'none',
      [g.instant(countOrZero(inRange(firstSeen())))],
      [g.step('blue')],
    ),
    g.stat(
      'Awaiting review now',
      'Recent issuances currently exposed with verdict issuer_unexpected or unreviewed, whenever they were first seen: the certificate alerts firing now. Authorize them (authorized_keys, authorized_key_files, authorized_certificates) and reload.',
      'none',
      [g.instant(countOrZero(firstSeen('verdict=~"issuer_unexpected|unreviewed"')))],
      zeroGood('red'),
    ),
    g.stat(
      'Final certificates with < 2 SCTs',
      'Recent issuances whose final certificate embeds fewer than 2 SCTs (CTCertificateTooFewSCTs): browsers reject them.',
      'none',
      [g.instant(countOrZero('max by (watch, tbs_sha256) (%s) < 2' % wsel('ct_certificate_embedded_scts')))],
      zeroGood('orange'),
    ),
    g.stat(
      'Recent series dropped · in range',
      'Recent issuances not exposed as series because a watch reached recent_series_limit (least urgent dropped first). Anything above 0 means the table and the certificate alerts may miss issuances: narrow the watch or raise the limit.',
      'none',
      [g.instant('sum(max by (watch) (increase(%s[$__range]) and on (watch) %s)) or vector(0)' % [sel('ct_certificate_series_dropped_total'), g.teamWatches])],
      zeroGood('orange'),
    ),
  ]),
  g.line(8, [
    g.timeseries(
      'New issuances by verdict',
      'Issuances first seen in each interval, by their current verdict (from ct_certificate_first_seen_timestamp_seconds, so at most recent_window back and within recent_series_limit; ct_new_certificates_total keeps the long-term count).',
      'none',
      [g.range(firstSeenPerStep('verdict'), '{{verdict}}')],
      bars=true,
      stack=true,
      overrides=g.verdictOverrides,
    ) + g.width(8),
    g.timeseries(
      'New issuances by watch, issuer and verdict',
      'Issuances first seen in each interval, by watch, issuer and current verdict (from ct_certificate_first_seen_timestamp_seconds, so at most recent_window back). Intervals without any are not drawn.',
      'none',
      [g.range(firstSeenPerStep('watch, issuer, verdict'), '{{watch}} · {{issuer}} · {{verdict}}')],
      bars=true,
      stack=true,
      noValue='No new issuances',
      legend='table',
    ) + g.width(16),
  ]),
  g.line(12, [
    g.table(
      'Recent issuances',
      'Issuances first seen in the time range (ct_certificate_first_seen_timestamp_seconds, at most recent_window back), newest first, joined with the SCTs embedded in their final certificate (empty while only the precertificate is known). dns_names and cert_sha256 link to the certificate on crt.sh; to authorize an issuance add its tbs_sha256 to the watch\'s authorized_certificates. Label values come from certificates: they are escaped, and attacker-controlled.',
      [
        g.tableQuery(
          '(%s) * 1000' % inRange('max by (watch, verdict, issuer, dns_names, subject_cn, serial, tbs_sha256, cert_sha256) (%s)'
                                  % wsel('ct_certificate_first_seen_timestamp_seconds')),
          'A'
        ),
        g.tableQuery(
          'max by (watch, tbs_sha256) (%s) and on (watch, tbs_sha256) (%s)'
          % [wsel('ct_certificate_embedded_scts'), inRange(firstSeen())],
          'B'
        ),
      ],
      ['First seen', 'watch', 'verdict', 'dns_names', 'subject_cn', 'issuer', 'serial', 'SCTs', 'tbs_sha256', 'cert_sha256'],
      rename={ Value: 'First seen', 'Value #A': 'First seen', 'Value #B': 'SCTs' },
      overrides=[
        g.override('First seen', { 'custom.width': 180, unit: 'dateTimeAsIso' }),
        g.override('watch', { 'custom.width': 160 }),
        g.override('verdict', {
          'custom.cellOptions': { type: 'color-text' },
          'custom.width': 140,
          mappings: verdictMappings,
        }),
        g.override('dns_names', { links: [g.crtshLink] }),
        g.override('SCTs', {
          'custom.cellOptions': { type: 'color-text' },
          'custom.width': 60,
          decimals: 0,
          thresholds: g.thresholds([g.step('orange'), g.step('green', 2)]),
          unit: 'none',
        }),
        g.override('tbs_sha256', { 'custom.width': 140 }),
        g.override('cert_sha256', { 'custom.width': 140, links: [g.crtshLink] }),
      ],
      sortBy={ desc: true, displayName: 'First seen' },
    ),
  ]),
  g.line(7, [
    g.timeseries(
      'Recent issuances exposed, by current verdict',
      'Issuances exposed as recent series (first seen within recent_window), by their current verdict: unexpected and unreviewed ones are the certificate alerts that fire; authorizing one moves it to authorized.',
      'none',
      [g.range('count by (verdict) (max by (watch, tbs_sha256, verdict) (%s))' % wsel('ct_certificate_first_seen_timestamp_seconds'), '{{verdict}}')],
      stack=true,
      overrides=g.verdictOverrides,
    ),
    g.timeseries(
      'Recent series dropped, by watch',
      'Recent issuances not exposed because the watch reached recent_series_limit, per rate window (ct_certificate_series_dropped_total counts since the exporter started).',
      'none',
      [g.range('max by (watch) (increase(%s[$__rate_interval]) and on (watch) %s) > 0' % [sel('ct_certificate_series_dropped_total'), g.teamWatches], '{{watch}}')],
      bars=true,
      noValue='None dropped',
    ),
  ]),
];

local sourceKey = 'instance, source';
local sources = [
  g.row('Sources'),
  g.line(6, [
    g.table(
      'Source summary',
      'Each source of each exporter: the outcome of its last poll, how long since one succeeded, and polls, errors and the 90th percentile poll duration over the time range.',
      [
        g.tableQuery('max by (%s) (%s)' % [sourceKey, sel('ct_source_up')], 'A'),
        g.tableQuery('time() - max by (%s) (%s)' % [sourceKey, sel('ct_source_last_success_timestamp_seconds')], 'B'),
        g.tableQuery('sum by (%s) (increase(%s[$__range]))' % [sourceKey, sel('ct_source_poll_duration_seconds_count')], 'C'),
        g.tableQuery('sum by (%s) (increase(%s[$__range]))' % [sourceKey, sel('ct_source_errors_total')], 'D'),
        g.tableQuery('histogram_quantile(0.9, sum by (%s, le) (increase(%s[$__range])))' % [sourceKey, sel('ct_source_poll_duration_seconds_bucket')], 'E'),
      ],
      ['source', 'instance', 'Last poll', 'Since last success', 'Polls', 'Errors', 'Poll p90'],
      rename={
        'Value #A': 'Last poll',
        'Value #B': 'Since last success',
        'Value #C': 'Polls',
        'Value #D': 'Errors',
        'Value #E': 'Poll p90',
      },
      overrides=[
        g.override('Last poll', { 'custom.cellOptions': { type: 'color-background' }, mappings: upMappings }),
        g.override('Since last success', { unit: 'dtdurations' }),
        g.override('Polls', { decimals: 0, unit: 'none' }),
        g.override('Errors', {
          'custom.cellOptions': { type: 'color-text' },
          decimals: 0,
          thresholds: g.thresholds([g.step('green'), g.step('orange', 1)]),
          unit: 'none',
        }),
        g.override('Poll p90', { unit: 's' }),
      ],
      sortBy={ desc: false, displayName: 'source' },
    ),
  ]),
  g.line(7, [
    g.stateTimeline(
      'Source up',
      'Outcome of each poll (ct_source_up): a source that fails is retried with backoff and is never read as "no certificates". CTSourceDown fires after 30 minutes down.',
      [g.range(sel('ct_source_up'), '{{source}} · {{instance}}')],
      upMappings,
    ),
    g.timeseries(
      'Time since last successful poll',
      'Now minus ct_source_last_success_timestamp_seconds. It grows up to the source\'s interval between healthy polls; beyond that, polls fail.',
      's',
      [g.range('time() - %s' % sel('ct_source_last_success_timestamp_seconds'), '{{source}} · {{instance}}')],
    ),
  ]),
  g.line(8, [
    g.timeseries(
      'Source errors by reason',
      'Failed requests per minute (ct_source_errors_total): timeout, http_429, http_5xx, http_4xx, bad_response (HTML with 200, truncated or undecodable JSON), truncated_results (crt.sh cut a watch at 10,000 rows: narrow it), network, record (a certificate that could not be stored: skipped, see the log), list_too_large (a log list names more logs than max_logs: refused), bad_signature (a signed log list does not verify or has no signature: refused).',
      'cpm',
      [g.range('60 * sum by (instance, source, reason) (rate(%s[$__rate_interval])) > 0' % sel('ct_source_errors_total'), '{{source}} · {{reason}} · {{instance}}')],
      noValue='No errors',
    ),
    g.timeseries(
      'Poll duration',
      '50th and 90th percentile duration of the polls that ended in each rate window (ct_source_poll_duration_seconds). Sources polled less often than that window (crt.sh: hourly) draw a point per poll.',
      's',
      [
        g.range('histogram_quantile(0.5, sum by (instance, source, le) (rate(%s[$__rate_interval]))) >= 0' % sel('ct_source_poll_duration_seconds_bucket'), '{{source}} p50 · {{instance}}', 'A'),
        g.range('histogram_quantile(0.9, sum by (instance, source, le) (rate(%s[$__rate_interval]))) >= 0' % sel('ct_source_poll_duration_seconds_bucket'), '{{source}} p90 · {{instance}}', 'B'),
      ],
    ) + { fieldConfig+: { defaults+: { custom+: { showPoints: 'always', spanNulls: true } } } },
  ]),
];

local perLog(metric, matchers='') = 'max by (log) (%s)' % sel(metric, matchers);
local lagOverMMD = '%s / %s' % [perLog('ct_log_sth_lag_seconds'), 'max by (log) (%s > 0)' % sel('ct_log_mmd_seconds')];
local logs = [
  g.row('CT logs'),
  g.line(10, [
    g.table(
      'Log summary',
      'Every CT log followed (ctlog sources and the logs a loglist names), across replicas and shards: the newest verified tree head, its age against the maximum merge delay, the backlog, and the verification failures and malformed entries in the time range. A log without a tree size has no verified tree head yet.',
      [
        g.tableQuery(perLog('ct_log_tree_size'), 'A'),
        g.tableQuery(perLog('ct_log_sth_lag_seconds'), 'B'),
        g.tableQuery(lagOverMMD, 'C'),
        g.tableQuery(perLog('ct_log_entries_behind'), 'D'),
        g.tableQuery('max by (log) (rate(%s[$__rate_interval]))' % sel('ct_log_entries_processed_total'), 'E'),
        g.tableQuery('sum by (log) (max by (log, check) (increase(%s[$__range])))' % sel('ct_log_verification_failures_total'), 'F'),
        g.tableQuery('max by (log) (increase(%s[$__range]))' % sel('ct_log_malformed_entries_total'), 'G'),
      ],
      ['log', 'Tree size', 'STH age', 'STH age / MMD', 'Entries behind', 'Entries/s', 'Verification failures', 'Malformed entries'],
      rename={
        'Value #A': 'Tree size',
        'Value #B': 'STH age',
        'Value #C': 'STH age / MMD',
        'Value #D': 'Entries behind',
        'Value #E': 'Entries/s',
        'Value #F': 'Verification failures',
        'Value #G': 'Malformed entries',
      },
      overrides=[
        g.override('Tree size', { decimals: 0, unit: 'locale' }),
        g.override('STH age', { unit: 'dtdurations' }),
        g.override('STH age / MMD', {
          'custom.cellOptions': { type: 'color-text' },
          thresholds: g.thresholds([g.step('green'), g.step('orange', 0.5), g.step('red', 1)]),
          unit: 'percentunit',
        }),
        g.override('Entries behind', { decimals: 0, unit: 'locale' }),
        g.override('Entries/s', { unit: 'cps' }),
        g.override('Verification failures', {
          'custom.cellOptions': { type: 'color-background' },
          decimals: 0,
          thresholds: g.thresholds([g.step('transparent'), g.step('red', 1)]),
          unit: 'none',
        }),
        g.override('Malformed entries', {
          'custom.cellOptions': { type: 'color-text' },
          decimals: 0,
          thresholds: g.thresholds([g.step('text'), g.step('orange', 1)]),
          unit: 'none',
        }),
      ],
      sortBy={ desc: true, displayName: 'STH age / MMD' },
    ),
  ]),
  g.line(8, [
    g.timeseries(
      'STH lag / MMD',
      'Age of each log\'s newest verified tree head as a fraction of its maximum merge delay (ct_log_sth_lag_seconds / ct_log_mmd_seconds). Above 100% (the dashed line) for 10 minutes, CTLogSTHStale fires: the log is not publishing, or what it publishes does not verify.',
      'percentunit',
      [g.range(lagOverMMD, '{{log}}')],
      thresholdLine=1,
    ),
    g.timeseries(
      'STH lag vs MMD',
      'Age of each log\'s newest verified tree head (ct_log_sth_lag_seconds), on a log scale, against the smallest maximum merge delay of the logs shown (dashed).',
      's',
      [
        g.range(perLog('ct_log_sth_lag_seconds'), '{{log}}', 'A'),
        g.range('min(%s > 0)' % sel('ct_log_mmd_seconds'), 'MMD (smallest)', 'B'),
      ],
      min=null,
      log=true,
      overrides=[g.override('MMD (smallest)', {
        color: g.fixedColor('red'),
        'custom.lineStyle': { dash: [10, 10], fill: 'dash' },
      })],
    ),
  ]),
  g.line(8, [
    g.timeseries(
      'Replicas following each log',
      'How many replicas follow each log now (sum of ct_log_followed): 1 when settled; a line at 0 is a log followed by no replica (CTLogNotFollowed after 10 minutes), more than 1 only during a handover. With --state.url the replicas share the logs by leases.',
      'none',
      [g.range('sum by (log) (%s)' % sel('ct_log_followed'), '{{log}}')],
    ),
    g.timeseries(
      'State read errors',
      'Failed reads of the shared state per rate window (ct_state_read_errors_total): with --state.url, the database cannot be reached or answered with an error (CTExporterStateReadFailing).',
      'none',
      [g.range('increase(%s[$__rate_interval])' % sel('ct_state_read_errors_total'), '{{instance}}')],
      bars=true,
    ),
  ]),
  g.line(8, [
    g.timeseries(
      'Entries behind',
      'Entries in the newest verified tree not processed yet (ct_log_entries_behind). A backlog that does not shrink for an hour fires CTLogFallingBehind: raise workers, batch_size or requests_per_second, or shard the logs (--shard).',
      'none',
      [g.range(perLog('ct_log_entries_behind'), '{{log}}')],
    ),
    g.timeseries(
      'Entries processed per second',
      'Log entries processed and proven to be in a verified tree, per second (rate of ct_log_entries_processed_total).',
      'cps',
      [g.range('max by (log) (rate(%s[$__rate_interval]))' % sel('ct_log_entries_processed_total'), '{{log}}')],
    ),
  ]),
  g.line(8, [
    g.timeseries(
      'Tree size',
      'Size of each log\'s newest verified tree head (ct_log_tree_size).',
      'none',
      [g.range(perLog('ct_log_tree_size'), '{{log}}')],
      min=null,
    ),
    g.timeseries(
      'Verification failures',
      'Verification failures per rate window, by check (ct_log_verification_failures_total): sth_signature, consistency, rollback, leaf_hash, inclusion. Any is critical (CTLogVerificationFailed): a split view or a misbehaving log; ct_exporter does not read past what it cannot verify.',
      'none',
      [g.range('max by (log, check) (increase(%s[$__rate_interval])) > 0' % sel('ct_log_verification_failures_total'), '{{log}} · {{check}}')],
      bars=true,
      noValue='No failures',
    ),
    g.timeseries(
      'Malformed entries',
      'Log entries that could not be read, counted and skipped, per rate window (ct_log_malformed_entries_total).',
      'none',
      [g.range('max by (log) (increase(%s[$__rate_interval])) > 0' % sel('ct_log_malformed_entries_total'), '{{log}}')],
      bars=true,
      noValue='None',
    ),
  ]),
];

local exporter = [
  g.row('Exporter'),
  g.line(4, [
    g.stat(
      'Scrape',
      'Whether Prometheus could scrape each exporter (up). A down exporter sees no certificates and fires no certificate alerts.',
      'none',
      [g.instant(sel('up'), '{{instance}}')],
      [g.step('text')],
      mappings=upMappings,
    ),
    g.stat(
      'Uptime',
      'Time since each exporter process started.',
      'dtdurations',
      [g.instant('time() - %s' % sel('process_start_time_seconds'), '{{instance}}')],
      [g.step('text')],
      colorMode='none',
    ),
    g.stat(
      'Issuances in the state file',
      'Issuances held in the state file (ct_state_certificates); records are pruned once the certificate has expired and left recent_window.',
      'locale',
      [g.instant(sel('ct_state_certificates'), '{{instance}}')],
      [g.step('text')],
      colorMode='none',
      decimals=0,
    ),
    g.stat(
      'State write errors · in range',
      'State file transactions that failed in the time range (ct_state_write_errors_total). Nothing new is recorded, and so nothing alerts, until writes succeed (CTExporterStateWriteFailing): check disk space and permissions.',
      'none',
      [g.instant('sum(increase(%s[$__range]))' % sel('ct_state_write_errors_total'))],
      zeroGood('red'),
      decimals=0,
    ),
    g.stat(
      'Configuration',
      'Outcome of the last configuration reload (ct_config_last_reload_successful). A rejected configuration keeps the previous one running (CTExporterConfigReloadFailed): run ct_exporter --config.check.',
      'none',
      [g.instant(sel('ct_config_last_reload_successful'), '{{instance}}')],
      [g.step('text')],
      mappings=g.valueMappings({
        '0': { color: 'red', text: 'RELOAD FAILED' },
        '1': { color: 'green', text: 'OK' },
      }),
    ),
    g.stat(
      'Configuration loaded',
      'When the running configuration was loaded (ct_config_last_reload_success_timestamp_seconds).',
      'dateTimeFromNow',
      [g.instant('%s * 1000' % sel('ct_config_last_reload_success_timestamp_seconds'), '{{instance}}')],
      [g.step('text')],
      colorMode='none',
    ),
  ]),
  g.line(5, [
    g.table(
      'Build',
      'Version of each exporter (ct_exporter_build_info).',
      [g.tableQuery(sel('ct_exporter_build_info'), 'A')],
      ['instance', 'version', 'revision', 'branch', 'goversion', 'goos', 'goarch', 'tags', 'job'],
      exclude=['Time', 'Value', '__name__'],
      sortBy={ desc: false, displayName: 'instance' },
    ),
  ]),
  g.line(7, [
    g.timeseries(
      'State file size',
      'Issuances held in the state file over time (ct_state_certificates).',
      'locale',
      [g.range(sel('ct_state_certificates'), '{{instance}}')],
      min=null,
    ),
    g.timeseries(
      'State write errors',
      'Failed state file transactions per rate window (ct_state_write_errors_total).',
      'none',
      [g.range('increase(%s[$__rate_interval])' % sel('ct_state_write_errors_total'), '{{instance}}')],
      bars=true,
    ),
  ]),
  g.line(7, [
    g.timeseries(
      'Resident memory',
      'Resident set size of the exporter process (process_resident_memory_bytes) and the Go heap in use (go_memstats_heap_inuse_bytes).',
      'bytes',
      [
        g.range(sel('process_resident_memory_bytes'), 'RSS · {{instance}}', 'A'),
        g.range(sel('go_memstats_heap_inuse_bytes'), 'heap in use · {{instance}}', 'B'),
      ],
    ),
    g.timeseries(
      'CPU',
      'CPU time used per second (rate of process_cpu_seconds_total): 100% is one core.',
      'percentunit',
      [g.range('rate(%s[$__rate_interval])' % sel('process_cpu_seconds_total'), '{{instance}}')],
    ),
    g.timeseries(
      'Goroutines',
      'Goroutines of the exporter process (go_goroutines).',
      'none',
      [g.range(sel('go_goroutines'), '{{instance}}')],
    ),
  ]),
];

g.dashboard(
  uid='ct-exporter-overview',
  title='ct_exporter / Overview',
  description='Certificates issued for the watched domains, and the health of ct_exporter\'s sources, CT logs and state.',
  tags=['ct_exporter', 'certificate-transparency'],
  time='now-7d',
  annotations=[{
    datasource: g.ds,
    enable: true,
    expr: 'max by (watch, verdict, issuer, dns_names, serial, tbs_sha256) (%s) * 1000'
          % wsel('ct_certificate_first_seen_timestamp_seconds', 'verdict=~"issuer_unexpected|unreviewed"'),
    hide: false,
    iconColor: 'red',
    name: 'Issuances to review',
    step: '1m',
    tagKeys: 'watch,verdict',
    textFormat: '{{dns_names}} · issuer {{issuer}} · serial {{serial}} · tbs_sha256 {{tbs_sha256}}',
    titleFormat: '{{verdict}} certificate for {{watch}}',
    useValueForTime: true,
  }],
  panels=certificates + sources + logs + exporter,
)
