// Small builders for Grafana 10/11 dashboards that are provisioned from files:
// every panel and query variable reads the `datasource` variable, every
// selector carries the job and instance filters, and panels are laid out on
// the 24-column grid by `layout` (ids and gridPos are computed, never typed).
{
  ds:: { type: 'prometheus', uid: '${datasource}' },

  // sel('ct_source_up') is ct_source_up{job=~"$job", instance=~"$instance"};
  // sel('ct_source_up', 'source="crtsh"') adds a matcher.
  sel(metric, matchers='')::
    metric + '{job=~"$job", instance=~"$instance"' + (if matchers == '' then '' else ', ' + matchers) + '}',

  // wsel is sel for a family with a watch label, keeping the watches of
  // the teams selected in the team variable (ct_watch_info's team label,
  // from the watches' labels; All also keeps watches without a team).
  wsel(metric, matchers='')::
    '(%s and on (watch) %s)' % [$.sel(metric, matchers), $.teamWatches],
  teamWatches:: $.sel('ct_watch_info', 'team=~"$team"'),

  // A range query drawn over time.
  range(expr, legend='__auto', refId='A'):: {
    datasource: $.ds,
    editorMode: 'code',
    expr: expr,
    format: 'time_series',
    instant: false,
    legendFormat: legend,
    range: true,
    refId: refId,
  },

  // An instant query at the end of the dashboard's time range.
  instant(expr, legend='__auto', refId='A', format='time_series'):: {
    datasource: $.ds,
    editorMode: 'code',
    expr: expr,
    format: format,
    instant: true,
    legendFormat: legend,
    range: false,
    refId: refId,
  },

  // An instant query returning a table (one row per series, one column per label).
  tableQuery(expr, refId):: $.instant(expr, '__auto', refId, 'table'),

  thresholds(steps):: { mode: 'absolute', steps: steps },
  step(color, value=null):: { color: color, value: value },

  // Value mappings from exact values to a text and a colour.
  valueMappings(byValue)::
    local values = std.objectFields(byValue);
    [{
      options: {
        [values[i]]: { color: byValue[values[i]].color, index: i, text: byValue[values[i]].text }
        for i in std.range(0, std.length(values) - 1)
      },
      type: 'value',
    }],

  // An override on the field (column, series) with this name.
  override(name, properties):: {
    matcher: { id: 'byName', options: name },
    properties: [{ id: k, value: properties[k] } for k in std.objectFields(properties)],
  },

  fixedColor(color):: { fixedColor: color, mode: 'fixed' },

  // The colours of the verdicts, everywhere.
  verdictColors:: {
    authorized: 'green',
    issuer_allowed: 'blue',
    unreviewed: 'orange',
    issuer_unexpected: 'red',
  },
  verdictOverrides:: [$.override(v, { color: $.fixedColor($.verdictColors[v]) }) for v in std.objectFields($.verdictColors)],

  crtshLink:: {
    targetBlank: true,
    title: 'Open this certificate on crt.sh',
    url: 'https://crt.sh/?sha256=${__data.fields.cert_sha256}',
  },

  local base(type, title, description, unit, targets) = {
    datasource: $.ds,
    description: description,
    targets: targets,
    title: title,
    type: type,
  },

  timeseries(title, description, unit, targets, bars=false, stack=false, min=0, log=false, noValue=null, overrides=[], legend='list', thresholdLine=null):: base('timeseries', title, description, unit, targets) {
    fieldConfig: {
      defaults: {
        color: { mode: 'palette-classic' },
        custom: {
          axisBorderShow: false,
          axisCenteredZero: false,
          axisColorMode: 'text',
          axisLabel: '',
          axisPlacement: 'auto',
          drawStyle: if bars then 'bars' else 'line',
          fillOpacity: if bars || stack then 80 else 10,
          gradientMode: 'none',
          hideFrom: { legend: false, tooltip: false, viz: false },
          lineInterpolation: 'linear',
          lineWidth: 1,
          pointSize: 4,
          scaleDistribution: if log then { log: 10, type: 'log' } else { type: 'linear' },
          showPoints: 'never',
          spanNulls: false,
          stacking: { group: 'A', mode: if stack then 'normal' else 'none' },
          thresholdsStyle: { mode: if thresholdLine == null then 'off' else 'dashed' },
        },
        thresholds: if thresholdLine == null
        then $.thresholds([$.step('green')])
        else $.thresholds([$.step('transparent'), $.step('red', thresholdLine)]),
        unit: unit,
      } + (if min == null then {} else { min: min })
        + (if noValue == null then {} else { noValue: noValue }),
      overrides: overrides,
    },
    options: {
      legend: {
        calcs: if legend == 'table' then ['lastNotNull', 'max'] else [],
        displayMode: legend,
        placement: 'bottom',
        showLegend: true,
      },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  },

  stat(title, description, unit, targets, steps, mappings=[], colorMode='background', textMode='auto', decimals=null):: base('stat', title, description, unit, targets) {
    fieldConfig: {
      defaults: {
        color: { mode: 'thresholds' },
        mappings: mappings,
        thresholds: $.thresholds(steps),
        unit: unit,
      } + (if decimals == null then {} else { decimals: decimals }),
      overrides: [],
    },
    options: {
      colorMode: colorMode,
      graphMode: 'none',
      justifyMode: 'auto',
      orientation: 'auto',
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      showPercentChange: false,
      textMode: textMode,
      wideLayout: true,
    },
  },

  stateTimeline(title, description, targets, mappings):: base('state-timeline', title, description, 'none', targets) {
    fieldConfig: {
      defaults: {
        color: { mode: 'thresholds' },
        custom: { fillOpacity: 80, hideFrom: { legend: false, tooltip: false, viz: false }, lineWidth: 0 },
        mappings: mappings,
        thresholds: $.thresholds([$.step('text')]),
        unit: 'none',
      },
      overrides: [],
    },
    options: {
      alignValue: 'left',
      legend: { displayMode: 'list', placement: 'bottom', showLegend: false },
      mergeValues: true,
      rowHeight: 0.9,
      showValue: 'auto',
      tooltip: { mode: 'single', sort: 'none' },
    },
  },

  // A table over instant queries: merge joins the queries' rows on the
  // labels they share, organize hides, orders and renames the columns.
  table(title, description, targets, columns, rename={}, exclude=['Time'], overrides=[], sortBy=null, unit='none'):: base('table', title, description, unit, targets) {
    fieldConfig: {
      defaults: {
        color: { mode: 'thresholds' },
        custom: {
          align: 'auto',
          cellOptions: { type: 'auto' },
          filterable: true,
          inspect: false,
        },
        mappings: [],
        thresholds: $.thresholds([$.step('text')]),
        unit: unit,
      },
      overrides: overrides,
    },
    options: {
      cellHeight: 'sm',
      footer: { countRows: false, fields: '', reducer: ['sum'], show: false },
      showHeader: true,
      sortBy: if sortBy == null then [] else [sortBy],
    },
    transformations: (if std.length(targets) > 1 then [{ id: 'merge', options: {} }] else []) + [{
      id: 'organize',
      options: {
        excludeByName: { [c]: true for c in exclude },
        includeByName: {},
        indexByName: { [columns[i]]: i for i in std.range(0, std.length(columns) - 1) },
        renameByName: rename,
      },
    }],
  },

  row(title):: { collapsed: false, panels: [], title: title, type: 'row' },

  // A horizontal line of panels of height h; a panel's width is its w (hidden
  // field), or an equal share of the 24 columns.
  line(h, panels):: { h: h, panels: panels },
  width(w):: { w:: w },

  // Lays out rows and lines top to bottom and numbers the panels.
  layout(items)::
    local place(acc, item) =
      if std.objectHas(item, 'type') && item.type == 'row' then
        { y: acc.y + 1, panels: acc.panels + [item { gridPos: { h: 1, w: 24, x: 0, y: acc.y } }] }
      else
        local share = std.floor(24 / std.length(item.panels));
        local widths = [if std.objectHasAll(p, 'w') then p.w else share for p in item.panels];
        local xs = [std.foldl(function(s, w) s + w, widths[0:i], 0) for i in std.range(0, std.length(widths) - 1)];
        assert std.foldl(function(s, w) s + w, widths, 0) <= 24 : 'line wider than 24 columns';
        {
          y: acc.y + item.h,
          panels: acc.panels + [
            item.panels[i] { gridPos: { h: item.h, w: widths[i], x: xs[i], y: acc.y } }
            for i in std.range(0, std.length(item.panels) - 1)
          ],
        };
    local placed = std.foldl(place, items, { y: 0, panels: [] }).panels;
    [placed[i] { id: i + 1 } for i in std.range(0, std.length(placed) - 1)],

  // Template variables: the Prometheus data source, then job and instance
  // from ct_exporter_build_info, which every ct_exporter exposes.
  variables:: [
    {
      current: {},
      hide: 0,
      includeAll: false,
      label: 'Data source',
      multi: false,
      name: 'datasource',
      options: [],
      query: 'prometheus',
      refresh: 1,
      regex: '',
      skipUrlSync: false,
      type: 'datasource',
    },
    {
      current: {},
      datasource: $.ds,
      definition: 'label_values(ct_exporter_build_info, job)',
      hide: 0,
      includeAll: false,
      label: 'Job',
      multi: false,
      name: 'job',
      options: [],
      query: 'label_values(ct_exporter_build_info, job)',
      refresh: 2,
      regex: '',
      skipUrlSync: false,
      sort: 1,
      type: 'query',
    },
    {
      allValue: '.+',
      current: { selected: true, text: ['All'], value: ['$__all'] },
      datasource: $.ds,
      definition: 'label_values(ct_exporter_build_info{job=~"$job"}, instance)',
      hide: 0,
      includeAll: true,
      label: 'Instance',
      multi: true,
      name: 'instance',
      options: [],
      query: 'label_values(ct_exporter_build_info{job=~"$job"}, instance)',
      refresh: 2,
      regex: '',
      skipUrlSync: false,
      sort: 1,
      type: 'query',
    },
    // The teams owning the watches (the team label of the watches' labels
    // key, on ct_watch_info): the certificate panels show their watches.
    {
      allValue: '.*',
      current: { selected: true, text: ['All'], value: ['$__all'] },
      datasource: $.ds,
      definition: 'label_values(ct_watch_info{job=~"$job"}, team)',
      hide: 0,
      includeAll: true,
      label: 'Team',
      multi: true,
      name: 'team',
      options: [],
      query: 'label_values(ct_watch_info{job=~"$job"}, team)',
      refresh: 2,
      regex: '',
      skipUrlSync: false,
      sort: 1,
      type: 'query',
    },
  ],

  builtinAnnotation:: {
    builtIn: 1,
    datasource: { type: 'grafana', uid: '-- Grafana --' },
    enable: true,
    hide: true,
    iconColor: 'rgba(0, 211, 255, 1)',
    name: 'Annotations & Alerts',
    type: 'dashboard',
  },

  dashboard(uid, title, description, tags, time, annotations, panels):: {
    annotations: { list: [$.builtinAnnotation] + annotations },
    description: description,
    editable: true,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,
    id: null,
    links: [{
      asDropdown: false,
      icon: 'doc',
      includeVars: false,
      keepTime: false,
      tags: [],
      targetBlank: true,
      title: 'ct_exporter',
      tooltip: 'Metrics, configuration and runbook',
      type: 'link',
      url: 'https://github.com/ct-exporter/ct_exporter#metrics',
    }],
    panels: $.layout(panels),
    refresh: '1m',
    schemaVersion: 39,
    tags: tags,
    templating: { list: $.variables },
    time: { from: time, to: 'now' },
    timepicker: {},
    timezone: '',
    title: title,
    uid: uid,
    version: 1,
    weekStart: '',
  },
}
