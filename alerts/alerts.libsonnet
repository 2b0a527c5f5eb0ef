// ct_exporter alerts. Render with: jsonnet -S alerts/ct_exporter.rules.jsonnet
(import 'config.libsonnet') + {
  local c = self._config,
  local without = std.join(', ', c.replicaLabels),
  local runbook(name) = c.runbookURL + '#' + std.asciiLower(name),
  // One line: rule files are read by people, and jsonnet 0.18 writes newlines as \n.
  local oneLine(s) = std.strReplace(std.stripChars(s, '\n'), '\n', ' '),

  // A recent issuance's series with a verdict, held through a missing scrape
  // (restart) and dropped at once when the issuance gets another verdict
  // (the user authorized it).
  //
  // Replicas that saw the issuance first through different certificates
  // (its precertificate in one log, its final certificate in another)
  // expose different cert_sha256 labels: bottomk keeps the one first seen,
  // whose value (first seen) never changes, so the alert's labels stay put.
  // An alert about a watch takes the watch's labels (_config.watchLabels)
  // from ct_watch_info, one series per watch (topk: replicas amid a
  // reload may disagree, and group_left needs one). A watch with no
  // ct_watch_info (an exporter older than it) alerts all the same, without
  // them: a missing info series must never lose a certificate alert.
  local watchInfo = 'topk by (watch) (1, max without (%(without)s) (ct_watch_info{%(sel)s}))' % { without: without, sel: c.selector },
  local withWatchLabels(expr) =
    if std.length(c.watchLabels) == 0 then expr
    else '(%(e)s) * on (watch) group_left (%(l)s) %(i)s or (%(e)s unless on (watch) %(i)s)' % {
      e: expr, l: std.join(', ', c.watchLabels), i: watchInfo,
    },

  local certificates(verdict) = withWatchLabels(certificatesOnly(verdict)),
  local certificatesOnly(verdict) =
    'bottomk by (watch, tbs_sha256) (1, ' +
    'max without (%(without)s) (last_over_time(ct_certificate_first_seen_timestamp_seconds{%(sel)s, verdict="%(v)s"}[%(hold)s])) ' % {
      without: without, sel: c.selector, v: verdict, hold: c.certificateAlertHold,
    } +
    'unless on (watch, tbs_sha256) ' +
    'ct_certificate_first_seen_timestamp_seconds{%(sel)s, verdict!="%(v)s"})' % { sel: c.selector, v: verdict },

  // crt.sh by the certificate's hash; by serial when no certificate is
  // tied to the issuance (a log gave only its TBSCertificate).
  local crtshLink = '{{ if $labels.cert_sha256 }}https://crt.sh/?sha256={{ $labels.cert_sha256 }}' +
                    '{{ else }}https://crt.sh/?serial={{ $labels.serial }}{{ end }}',
  // A certificate a strict X.509 parser refuses is recorded from what its
  // DER says: on-call must know, as it is more suspicious, not less.
  local parseNote = ('{{ with printf `ct_certificate_parse_error_info{%s, tbs_sha256="%%s"}` $labels.tbs_sha256 | query }}' % c.selector) +
                    ' (it DOES NOT PARSE as X.509: {{ . | first | label "error" }}; recorded from what its DER says, and the more suspicious for it){{ end }}',

  local certificateDescription(what) =
    what + ' {{ $labels.dns_names }} (watch {{ $labels.watch }}): issuer {{ $labels.issuer }}, ' +
    'serial {{ $labels.serial }}, verdict {{ $labels.verdict }}, first seen {{ $value | humanizeTimestamp }}, ' +
    'tbs_sha256 {{ $labels.tbs_sha256 }}. Certificate: ' + crtshLink + parseNote,

  local certificateAlert(name, verdict, severity, summary, what, advice) = {
    alert: name,
    expr: certificates(verdict),
    labels: { severity: severity },
    annotations: {
      summary: summary,
      description: certificateDescription(what) + '. ' + advice,
      runbook_url: runbook(name),
    },
  },

  local authorize = 'If it is yours, authorize its key (authorized_keys, authorized_key_files) or this issuance ' +
                    '(authorized_certificates: [{{ $labels.tbs_sha256 }}]) and reload; otherwise revoke it and find out who got it.',

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'ct_exporter.certificates',
        rules: [
          certificateAlert('CTUnexpectedIssuerCertificate', 'issuer_unexpected', 'critical',
                           'A certificate for your domain from an issuer you do not expect',
                           'A certificate from an unexpected issuer names', authorize),
          certificateAlert('CTUnreviewedCertificate', 'unreviewed', 'warning',
                           'A new certificate for your domain needs a review',
                           'A new certificate names', authorize),
          certificateAlert('CTNewCertificate', 'issuer_allowed', 'info',
                           'A new certificate for your domain from an expected issuer',
                           'A new certificate from an expected issuer names',
                           'An expected issuer is no proof it is yours: authorize your keys to silence these.'),
          {
            alert: 'CTCertificateTooFewSCTs',
            expr: withWatchLabels(oneLine(|||
              (max without (%(without)s) (ct_certificate_embedded_scts{%(sel)s}) < 2)
              * on (watch, tbs_sha256) group_left (dns_names, issuer, serial, cert_sha256)
              (0 * bottomk by (watch, tbs_sha256) (1, max without (%(without)s, verdict) (ct_certificate_first_seen_timestamp_seconds{%(sel)s})) + 1)
            ||| % { without: without, sel: c.selector })),
            labels: { severity: 'warning' },
            annotations: {
              summary: 'A certificate for your domain embeds fewer than 2 SCTs',
              description: 'The final certificate of {{ $labels.dns_names }} (watch {{ $labels.watch }}, issuer {{ $labels.issuer }}, ' +
                           'serial {{ $labels.serial }}, tbs_sha256 {{ $labels.tbs_sha256 }}) embeds {{ $value }} SCT(s): browsers will reject it. ' +
                           'Certificate: ' + crtshLink,
              runbook_url: runbook('CTCertificateTooFewSCTs'),
            },
          },
        ],
      },
      {
        name: 'ct_exporter.sources',
        rules: [
          {
            alert: 'CTSourceDown',
            // One alert however many replicas see the source fail.
            expr: 'max without (%(without)s) (ct_source_up{%(sel)s} == 0)' % { without: without, sel: c.selector },
            'for': c.sourceDownFor,
            labels: { severity: 'warning' },
            annotations: {
              summary: 'A certificate source keeps failing',
              description: ('Source {{ $labels.source }} has failed every poll for %s: certificates it would report are not seen. ' % c.sourceDownFor) +
                           'ct_source_up{source="{{ $labels.source }}"} == 0 shows on which instances; ct_source_errors_total{source="{{ $labels.source }}"} says why.',
              runbook_url: runbook('CTSourceDown'),
            },
          },
          {
            alert: 'CTSourceWatchStale',
            // Each replica searches on its own: one alert however many
            // replicas cannot search the watch, with the longest staleness.
            expr: withWatchLabels(oneLine(|||
              max without (%(without)s) (
              (time() - ct_source_watch_last_success_timestamp_seconds{%(sel)s})
              > ignoring (watch) group_left
              %(n)d * ct_source_interval_seconds{%(sel)s})
            ||| % { without: without, sel: c.selector, n: c.sourceWatchStaleIntervals })),
            labels: { severity: 'warning' },
            annotations: {
              summary: 'A search source has not searched one watch for several intervals',
              description: ('Source {{ $labels.source }} has not searched watch {{ $labels.watch }} successfully for {{ $value | humanizeDuration }}, more than %d of its intervals: ' % c.sourceWatchStaleIntervals) +
                           'certificates for it that only this source would report are not seen. The other watches are still searched. ' +
                           'ct_source_errors_total{source="{{ $labels.source }}"} and the exporter log ("searching a watch failed", watch={{ $labels.watch }}) say why.',
              runbook_url: runbook('CTSourceWatchStale'),
            },
          },
          {
            alert: 'CTLogListSignatureInvalid',
            // Refused at a recent poll and not polled successfully since
            // (the list served then verified, or was the one in effect).
            // Held 10m: a poll between the upload of a new list and of its
            // signature is refused once, and retried 5s later.
            expr: oneLine(|||
              max without (%(without)s) (
              increase(ct_source_errors_total{%(sel)s, reason="bad_signature"}[%(window)s]) > 0
              unless ignoring (reason) ct_source_up{%(sel)s} == 1)
            ||| % { without: without, sel: c.selector, window: c.logListSignatureWindow }),
            'for': '10m',
            labels: { severity: 'warning' },
            annotations: {
              summary: 'A log list was refused: its signature does not verify',
              description: 'The log list of source {{ $labels.source }} does not verify with its public_key, or has no signature: it is refused at every poll. ' +
                           'The previous list is still followed, so nobody adds or removes a log on its word, but no change of the list is taken until one verifies. ' +
                           'The exporter log ("poll failed", source_name={{ $labels.source }}, err="bad_signature: …") says whether the signature is missing or does not verify.',
              runbook_url: runbook('CTLogListSignatureInvalid'),
            },
          },
          {
            alert: 'CTLogListStale',
            expr: 'max without (%(without)s) (time() - ct_loglist_timestamp_seconds{%(sel)s} > %(days)d * 86400)' % { without: without, sel: c.selector, days: c.logListStaleDays },
            'for': '15m',
            labels: { severity: 'warning' },
            annotations: {
              summary: 'The log list in effect is old',
              description: ('The log list of source {{ $labels.source }} in effect was published {{ $value | humanizeDuration }} ago (its log_list_timestamp), more than %d days: ' % c.logListStaleDays) +
                           'logs added since are not followed, and logs it names may be retired. The list is not being updated, or newer lists are refused ' +
                           '(ct_source_errors_total{source="{{ $labels.source }}"} says why).',
              runbook_url: runbook('CTLogListStale'),
            },
          },
          {
            alert: 'CTLogSTHStale',
            // Readonly logs publish no new tree heads: their lag only grows.
            expr: 'max without (%(without)s) (ct_log_sth_lag_seconds{%(sel)s} > on (%(on)s) ct_log_mmd_seconds{%(sel)s} unless on (%(on)s) ct_log_readonly{%(sel)s} == 1)' % { without: without, sel: c.selector, on: 'job, instance, log' },
            'for': '10m',
            labels: { severity: 'warning' },
            annotations: {
              summary: "A CT log's newest verified tree head is older than its maximum merge delay",
              description: 'The newest verified tree head of log {{ $labels.log }} is {{ $value | humanizeDuration }} old, more than its MMD of ' +
                           ('{{ with printf `max(ct_log_mmd_seconds{%s, log="%%s"})` $labels.log | query }}{{ . | first | value | humanizeDuration }}{{ end }}: ' % c.selector) +
                           'the log is not publishing, or ct_exporter cannot verify what it publishes.',
              runbook_url: runbook('CTLogSTHStale'),
            },
          },
          {
            alert: 'CTLogNotFollowed',
            // Every replica reports every log it knows: 1 on the one that
            // follows it, 0 on the others (state in PostgreSQL, shared by
            // lease). A takeover leaves a log unfollowed for seconds.
            expr: 'max without (%(without)s) (ct_log_followed{%(sel)s}) == 0' % { without: without, sel: c.selector },
            'for': '10m',
            labels: { severity: 'warning' },
            annotations: {
              summary: 'No replica of ct_exporter follows a CT log',
              description: 'Every replica reports ct_log_followed 0 for log {{ $labels.log }}: no replica holds its lease in PostgreSQL, so new certificates in it are not seen. ' +
                           'The replicas cannot renew or take leases (the database), or none is running with the log in its configuration.',
              runbook_url: runbook('CTLogNotFollowed'),
            },
          },
          {
            alert: 'CTLogFallingBehind',
            // Not shrunk for an hour: at least as large as an hour ago (so
            // nothing fires before an hour of data), and never down to zero
            // in between (a log caught up between polls is fine).
            expr: oneLine(|||
              max without (%(without)s) (
              ct_log_entries_behind{%(sel)s} >= ct_log_entries_behind{%(sel)s} offset 1h
              and min_over_time(ct_log_entries_behind{%(sel)s}[1h]) > 0)
            ||| % { without: without, sel: c.selector }),
            labels: { severity: 'warning' },
            annotations: {
              summary: 'ct_exporter is not keeping up with a CT log',
              description: 'Log {{ $labels.log }} has had entries waiting for an hour, and the backlog is not shrinking ({{ $value }} now): ' +
                           'new certificates are seen late.',
              runbook_url: runbook('CTLogFallingBehind'),
            },
          },
          {
            alert: 'CTLogVerificationFailed',
            expr: 'max without (%(without)s) (increase(ct_log_verification_failures_total{%(sel)s}[10m]) > 0)' % { without: without, sel: c.selector },
            labels: { severity: 'critical' },
            annotations: {
              summary: 'A CT log failed verification: possible split view or misbehaving log',
              description: 'Log {{ $labels.log }} failed the {{ $labels.check }} check. ' +
                           'ct_exporter does not read past what it cannot verify, so this log is not monitored until it behaves.',
              runbook_url: runbook('CTLogVerificationFailed'),
            },
          },
        ],
      },
      {
        name: 'ct_exporter.exporter',
        rules: [
          {
            alert: 'CTExporterDown',
            expr: 'up{%(sel)s} == 0 or absent(up{%(sel)s})' % { sel: c.selector },
            'for': '10m',
            labels: { severity: 'critical' },
            annotations: {
              summary: 'ct_exporter is down: certificates are not being watched',
              description: 'Prometheus has not scraped ct_exporter {{ $labels.instance }} for 10 minutes: while it is down no certificate alert can fire. ' +
                           'Certificates issued meanwhile are found when it comes back (crt.sh and log positions resume where they stopped).',
              runbook_url: runbook('CTExporterDown'),
            },
          },
          {
            alert: 'CTExporterStateWriteFailing',
            expr: 'increase(ct_state_write_errors_total{%(sel)s}[5m]) > 0' % { sel: c.selector },
            labels: { severity: 'critical' },
            annotations: {
              summary: 'ct_exporter cannot write its state file',
              description: '{{ $labels.instance }} failed to write its state file: nothing new is recorded (and so nothing alerts) until it can. Check disk space and permissions.',
              runbook_url: runbook('CTExporterStateWriteFailing'),
            },
          },
          {
            alert: 'CTExporterStateReadFailing',
            expr: 'increase(ct_state_read_errors_total{%(sel)s}[5m]) > 0' % { sel: c.selector },
            'for': '5m',
            labels: { severity: 'warning' },
            annotations: {
              summary: 'ct_exporter cannot read its state in PostgreSQL',
              description: '{{ $labels.instance }} has failed to read the state in PostgreSQL for 5 minutes: its certificate metrics no longer follow what the other replicas record. Check that the database is up and reachable from it.',
              runbook_url: runbook('CTExporterStateReadFailing'),
            },
          },
          {
            alert: 'CTExporterConfigReloadFailed',
            expr: 'ct_config_last_reload_successful{%(sel)s} == 0' % { sel: c.selector },
            'for': '5m',
            labels: { severity: 'warning' },
            annotations: {
              summary: "ct_exporter's configuration failed to reload",
              description: '{{ $labels.instance }} rejected its new configuration and is running the previous one. Run ct_exporter --config.check to see why.',
              runbook_url: runbook('CTExporterConfigReloadFailed'),
            },
          },
        ],
      },
    ],
  },
}
