// The one place to adapt the rules (and, later, the dashboards) to your
// Prometheus: how ct_exporter's series are selected, which labels tell
// replicas apart, and where the runbook lives.
{
  _config+:: {
    // Selects ct_exporter's series, e.g. 'job="ct_exporter"' or 'job=~"ct-exporter.*"'.
    selector: 'job="ct_exporter"',
    // Labels that differ between replicas of the same configuration: certificate
    // alerts drop them, so that Alertmanager sees one alert per issuance.
    replicaLabels: ['instance', 'pod'],
    // How long a certificate alert survives its series going missing (an
    // exporter restart, a failed scrape) before it resolves.
    certificateAlertHold: '10m',
    // How long a source must fail before CTSourceDown (a crt.sh poll can
    // take minutes, and crt.sh has bad quarters of an hour).
    sourceDownFor: '30m',
    // How many of its source's intervals a watch may go without a
    // successful search before CTSourceWatchStale (a poll takes part of an
    // interval, and a failing watch is retried up to an interval apart).
    sourceWatchStaleIntervals: 3,
    // How far back a refused log list (reason bad_signature) keeps
    // CTLogListSignatureInvalid firing while its source has not polled
    // successfully since (a list at its default 6h interval: 4 polls).
    logListSignatureWindow: '1d',
    // How old the log list in effect may be (its own log_list_timestamp)
    // before CTLogListStale: Google publishes its list daily.
    logListStaleDays: 30,
    // The watch labels (the labels key of a watch in ct_exporter's
    // configuration) that alerts about a watch carry, for Alertmanager to
    // route on (matchers: [team="payments"]). Set it to the label names
    // your configuration uses: the rules join them from ct_watch_info, so
    // the names must be known when the rules are rendered. [] joins nothing.
    watchLabels: ['team'],
    runbookURL: 'https://github.com/ct-exporter/ct_exporter/blob/main/docs/runbook.md',
  },
}
