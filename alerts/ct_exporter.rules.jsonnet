// Renders alerts/ct_exporter.rules.yml: jsonnet -S alerts/ct_exporter.rules.jsonnet > alerts/ct_exporter.rules.yml
std.manifestYamlDoc((import 'alerts.libsonnet').prometheusAlerts, indent_array_in_object=true, quote_keys=false)
