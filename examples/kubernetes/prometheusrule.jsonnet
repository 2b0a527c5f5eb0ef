// Renders prometheusrule.yaml, the shipped alert rules as a PrometheusRule:
//   jsonnet -S examples/kubernetes/prometheusrule.jsonnet > examples/kubernetes/prometheusrule.yaml
// Adapt the rules through the mixin's _config here, not in the YAML.
local mixin = (import '../../mixin.libsonnet') + {
  _config+:: {},
};

'# Generated from alerts/ by examples/kubernetes/prometheusrule.jsonnet; do not edit.\n' +
'# Your Prometheus may select PrometheusRules by a label, e.g. release: <helm release>.\n' +
std.manifestYamlDoc({
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'PrometheusRule',
  metadata: {
    name: 'ct-exporter',
    labels: {
      'app.kubernetes.io/name': 'ct-exporter',
      'app.kubernetes.io/component': 'alert-rules',
    },
  },
  spec: mixin.prometheusAlerts,
}, indent_array_in_object=true, quote_keys=false)
