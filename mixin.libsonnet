// ct_exporter monitoring mixin: the alert rules of alerts/ and the dashboards
// of dashboards/, in the shape monitoring-mixin tooling expects (mixtool,
// kube-prometheus, jsonnet-bundler users):
//
//   local ct = (import 'ct_exporter/mixin.libsonnet') + {
//     _config+:: { selector: 'job="ct-exporter", namespace="monitoring"' },
//   };
//   { 'ct_exporter.rules.yml': std.manifestYamlDoc(ct.prometheusAlerts) }
//   + { [name]: ct.grafanaDashboards[name] for name in std.objectFields(ct.grafanaDashboards) }
//
// _config (alerts/config.libsonnet) sets how the rules select ct_exporter's
// series, which labels tell replicas apart, hold times, the runbook URL, and
// watchLabels: the watch labels (the labels key of ct_exporter's watches,
// exposed on ct_watch_info) joined into the alerts about a watch, for
// routing (default ['team']; set the names your configuration uses).
// The dashboards need none of it: their job and instance variables list
// whatever exposes ct_exporter_build_info.
(import 'alerts/alerts.libsonnet') + {
  grafanaDashboards+:: {
    'ct_exporter-overview.json': import 'dashboards/ct_exporter-overview.jsonnet',
  },
}
