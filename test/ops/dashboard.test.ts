/**
 * docs/ops/grafana-dashboard.json against the metrics a node really exports: every PromQL
 * expression of every panel (and the template variable's query) is parsed, and each metric name it
 * references must be one the node's registry holds — the registry `nodeMetrics` builds, which is
 * what `talos node --metrics-port` serves — with histogram series expanded to _bucket/_sum/_count.
 * Label matchers must name labels the metric has; `by (...)` labels one of the expression's
 * metrics has. The checker is itself tested on expressions that must fail, so it cannot pass vacuously.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import { nodeMetrics } from '../../src/server/node-process.js';

const DASHBOARD = join(__dirname, '..', '..', 'docs', 'ops', 'grafana-dashboard.json');

/** Exposed series name → its label names (the registry's default label `node` included). */
function exportedSeries(registry: Registry): Map<string, Set<string>> {
  const series = new Map<string, Set<string>>();
  for (const metric of registry.getMetricsAsArray()) {
    const { name, labelNames } = metric as unknown as { name: string; labelNames?: string[] };
    const type = (metric as unknown as { type: string }).type;
    const labels = new Set([...(labelNames ?? []), 'node']);
    if (type === 'histogram') {
      series.set(`${name}_bucket`, new Set([...labels, 'le']));
      series.set(`${name}_sum`, labels);
      series.set(`${name}_count`, labels);
    } else if (type === 'summary') {
      series.set(name, new Set([...labels, 'quantile']));
      series.set(`${name}_sum`, labels);
      series.set(`${name}_count`, labels);
    } else series.set(name, labels);
  }
  return series;
}

const FUNCTIONS = new Set([
  'abs',
  'avg',
  'avg_over_time',
  'clamp_min',
  'count',
  'delta',
  'deriv',
  'histogram_quantile',
  'increase',
  'irate',
  'label_replace',
  'max',
  'max_over_time',
  'min',
  'min_over_time',
  'quantile',
  'rate',
  'scalar',
  'sort',
  'sort_desc',
  'sum',
  'time',
  'topk',
  'vector',
]);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset']);

interface Parsed {
  metrics: string[];
  /** Label names used in matchers, per metric. */
  matchers: [string, string][];
  /** Label names in by/without/on/ignoring/group_left/group_right. */
  grouping: string[];
  functions: string[];
}

/**
 * A small PromQL reader, enough for dashboard expressions: strips Grafana variables, string
 * literals and range selectors, reads label matchers (attributed to the metric before them) and
 * grouping clauses, and classifies the identifiers left as functions, keywords or metric names.
 * Throws on unbalanced brackets, an unknown function, or a matcher that is not `label op "value"`.
 */
function parsePromQl(expr: string): Parsed {
  let s = expr.replace(/\$__\w+|\$\{\w+\}|\$\w+/g, 'VAR');
  s = s.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  let depth = 0;
  for (const ch of s) {
    depth += '({['.includes(ch) ? 1 : ')}]'.includes(ch) ? -1 : 0;
    if (depth < 0) throw new Error(`unbalanced brackets in ${expr}`);
  }
  if (depth !== 0) throw new Error(`unbalanced brackets in ${expr}`);
  const matchers: [string, string][] = [];
  s = s.replace(/([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}/g, (_m, metric: string | undefined, body: string) => {
    for (const part of body
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p !== '')) {
      const m = /^([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*""$/.exec(part);
      if (m === null) throw new Error(`bad label matcher "${part}" in ${expr}`);
      matchers.push([metric ?? '', m[1]!]);
    }
    return ` ${metric ?? ''} `;
  });
  s = s.replace(/\[[^\]]*\]/g, ' ');
  const grouping: string[] = [];
  s = s.replace(
    /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g,
    (_m, _k, body: string) => {
      grouping.push(
        ...body
          .split(',')
          .map((l) => l.trim())
          .filter((l) => l !== ''),
      );
      return ' ';
    },
  );
  const metrics: string[] = [];
  const functions: string[] = [];
  for (const m of s.matchAll(/(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?/g)) {
    const name = m[1]!;
    if (m[2] !== undefined) {
      if (!FUNCTIONS.has(name)) throw new Error(`unknown function ${name} in ${expr}`);
      functions.push(name);
    } else if (!KEYWORDS.has(name) && name !== 'VAR') metrics.push(name);
  }
  return { metrics, matchers, grouping, functions };
}

/** Every problem with `expr` against the exported series (empty: fine). */
function problems(expr: string, series: Map<string, Set<string>>): string[] {
  let parsed: Parsed;
  try {
    parsed = parsePromQl(expr);
  } catch (err) {
    return [(err as Error).message];
  }
  const out: string[] = [];
  if (parsed.metrics.length === 0) out.push(`no metric in ${expr}`);
  for (const metric of parsed.metrics)
    if (!series.has(metric)) out.push(`${metric} is not exported by the node (in ${expr})`);
  for (const [metric, label] of parsed.matchers)
    if (series.has(metric) && !series.get(metric)!.has(label)) out.push(`${metric} has no label ${label}`);
  const available = new Set(parsed.metrics.flatMap((m) => [...(series.get(m) ?? [])]));
  for (const label of parsed.grouping)
    if (!available.has(label)) out.push(`no metric of ${expr} has the label ${label}`);
  return out;
}

/** Every `expr` of every panel (rows nest panels too), and the template variables' metrics. */
function dashboardQueries(): { where: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    panels: { title: string; targets?: { expr: string }[]; panels?: unknown[] }[];
    templating: { list: { name: string; query?: string | { query: string } }[] };
  };
  const out: { where: string; expr: string }[] = [];
  const walk = (panels: typeof dashboard.panels): void => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) out.push({ where: panel.title, expr: target.expr });
      walk((panel.panels ?? []) as typeof dashboard.panels);
    }
  };
  walk(dashboard.panels);
  for (const variable of dashboard.templating.list) {
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    const m = /^label_values\(\s*([^,]+),\s*(\w+)\s*\)$/.exec(query ?? '');
    // label_values(metric, label): the metric selector as an expression, grouped by the label.
    if (m !== null) out.push({ where: `$${variable.name}`, expr: `count by (${m[2]}) (${m[1]})` });
  }
  return out;
}

const series = exportedSeries(nodeMetrics('n1').registry);

test('the checker catches what it must (so the dashboard test cannot pass vacuously)', () => {
  expect(problems('rate(talos_client_requests_total{node=~"$node"}[$__rate_interval])', series)).toEqual([]);
  expect(problems('rate(talos_no_such_metric_total[5m])', series)).toEqual([
    'talos_no_such_metric_total is not exported by the node (in rate(talos_no_such_metric_total[5m]))',
  ]);
  expect(problems('talos_client_requests_total{colour="red"}', series)).toEqual([
    'talos_client_requests_total has no label colour',
  ]);
  expect(problems('sum by (colour) (talos_serving_regions)', series)).toHaveLength(1);
  expect(problems('histogram_quantile(0.99, rate(talos_client_request_seconds[5m]))', series)).toHaveLength(
    1,
  );
  expect(problems('rte(talos_serving_regions[5m])', series)[0]).toMatch(/unknown function rte/);
  expect(problems('sum(rate(talos_serving_regions[5m])', series)[0]).toMatch(/unbalanced/);
  expect(problems('1e3 * talos_serving_regions offset 5m', series)).toEqual([]);
});

test('the node exports an event-loop delay metric (the dashboard charts it)', () => {
  expect(series.has('nodejs_eventloop_lag_p99_seconds')).toBe(true);
  expect(series.has('talos_client_auth_failures_total')).toBe(true);
});

test('every PromQL expression in docs/ops/grafana-dashboard.json references only metrics and labels the node exports', () => {
  const queries = dashboardQueries();
  expect(queries.length).toBeGreaterThan(20);
  const found = queries.flatMap(({ where, expr }) => problems(expr, series).map((p) => `${where}: ${p}`));
  expect(found).toEqual([]);
  // The list: each of these is charted.
  const used = new Set(queries.flatMap(({ expr }) => parsePromQl(expr).metrics));
  for (const metric of [
    'talos_serving_regions',
    'talos_region_epoch',
    'talos_store_levels',
    'talos_client_requests_total',
    'talos_client_request_seconds_bucket',
    'talos_segment_seals_total',
    'talos_compactions_total',
    'talos_fabric_bytes',
    'talos_resynced_bytes',
    'nodejs_eventloop_lag_p99_seconds',
  ])
    expect(used).toContain(metric);
});
