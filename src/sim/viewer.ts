/**
 * The trace viewer (`talos check --replay S --html PATH`): one self-contained HTML page for a
 * simulated schedule — no script, no external file: the charts are SVG rendered here by vega-lite →
 * vega (`view.toSVG()`), as the benchmark charts are.
 *
 * The timeline chart has a lane per node and region ("n2 · r0"): the node's role there over
 * virtual time (primary, backup, joining; the epoch where each configuration starts), its faults
 * as red spans over all its lanes (with the kind), supervisor restarts as triangles, recovery steps
 * (promotion, rebase, re-sync, level install, serve) as labelled diamonds, fences as crosses; a
 * primary's one-sided log writes into a backup's buffers as lines from its lane to the backup's.
 * Below, a lane per client: each operation as a bar from invocation to completion, coloured by
 * outcome (ok, failed, unknown), outlined in red when it touches a key a checker flagged. The
 * violations are listed at the top; for the first key they name, a per-key chart shows just that
 * key's operations with their values — what the linearizability checker could not order.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { HistoryEntry, ScheduleResult } from './check.js';
import { type Recording, violatedKeys } from './recording.js';

const esc = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

const cut = (v: string | undefined, n = 18): string =>
  v === undefined ? '(absent)' : v.length > n ? `${v.slice(0, n)}…` : v;

/** An operation's outcome as the charts name and colour it. */
const outcomeOf = (e: HistoryEntry): string =>
  e.outcome === 'ok' ? 'ok' : e.outcome === 'fail' ? 'failed' : 'unknown';
const OUTCOME_SCALE = { domain: ['ok', 'failed', 'unknown'], range: ['#31a354', '#636363', '#fd8d3c'] };

async function svg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}

interface Lane {
  name: string;
  node: string;
  regionId: string;
}

function lanesOf(recording: Recording): Lane[] {
  const regions = [...new Set(recording.configs.map((c) => c.config.regionId))].sort();
  return recording.nodes.flatMap((node) =>
    regions.map((regionId) => ({ name: `${node} · ${regionId}`, node, regionId })),
  );
}

/** The marks of the timeline chart, each a row for one vega-lite layer (`layer` picks it). */
function timelineRows(
  result: ScheduleResult,
  recording: Recording,
  endMs: number,
  flagged: ReadonlySet<string>,
) {
  const lanes = lanesOf(recording);
  const laneOf = new Map(lanes.map((l, i) => [`${l.node}/${l.regionId}`, i]));
  const nodeLanes = (node: string) => lanes.flatMap((l, i) => (l.node === node ? [i] : []));
  const rows: Record<string, unknown>[] = [];
  // Roles: each configuration holds until the region's next one.
  const byRegion = new Map<string, Recording['configs']>();
  for (const c of recording.configs)
    byRegion.set(c.config.regionId, [...(byRegion.get(c.config.regionId) ?? []), c]);
  for (const [regionId, configs] of byRegion) {
    configs.forEach((c, i) => {
      const until = configs[i + 1]?.ms ?? endMs;
      const roles: [string, string][] = [
        [c.config.primary, 'primary'],
        ...c.config.backups.map((b): [string, string] => [b, 'backup']),
        ...(c.config.joining ?? []).map((j): [string, string] => [j, 'joining']),
      ];
      for (const [node, role] of roles) {
        const lane = laneOf.get(`${node}/${regionId}`);
        if (lane === undefined) continue;
        rows.push({
          layer: 'role',
          x: c.ms,
          x2: Math.max(until, c.ms + 0.5),
          y: lane - 0.35,
          y2: lane + 0.35,
          role,
          epoch: `e${c.config.epoch}`,
        });
      }
      const primaryLane = laneOf.get(`${c.config.primary}/${regionId}`);
      if (primaryLane !== undefined)
        rows.push({ layer: 'epoch', x: c.ms, y: primaryLane, label: `e${c.config.epoch}` });
    });
  }
  for (const f of recording.faults) {
    const ys = nodeLanes(f.node);
    if (ys.length === 0) continue;
    const label = `${f.fault.kind}${f.fault.during === undefined ? '' : ` (during ${f.fault.during})`}`;
    rows.push({
      layer: 'fault',
      x: f.startMs,
      x2: Math.max(f.endMs ?? endMs, f.startMs + 1),
      y: Math.min(...ys) - 0.5,
      y2: Math.max(...ys) + 0.5,
      label,
    });
  }
  for (const r of recording.restarts)
    for (const y of nodeLanes(r.nodeId))
      rows.push({ layer: 'restart', x: r.ms, y, label: `restart (${r.reason})` });
  for (const { ms, event } of recording.events) {
    if (event.kind === 'log-write') {
      const from = laneOf.get(`${event.primary}/${event.regionId}`);
      const to = laneOf.get(`${event.backup}/${event.regionId}`);
      if (from !== undefined && to !== undefined) rows.push({ layer: 'write', x: ms, y: from, y2: to });
    } else if (event.kind === 'phase') {
      const y = laneOf.get(`${event.node}/${event.regionId}`);
      if (y !== undefined) rows.push({ layer: 'phase', x: ms, y, label: event.phase });
    } else if (event.kind === 'fenced') {
      const y = laneOf.get(`${event.node}/${event.regionId}`);
      if (y !== undefined) rows.push({ layer: 'fenced', x: ms, y, label: `fenced e${event.epoch}` });
    }
  }
  // Client lanes below the nodes' lanes.
  const clients = [...new Set(result.history.map((e) => e.client))].sort((a, b) => a - b);
  const clientLane = (client: number) => lanes.length + clients.indexOf(client);
  for (const e of result.history) {
    const y = clientLane(e.client);
    const ret = Number.isFinite(e.retMs) ? e.retMs : endMs;
    rows.push({
      layer: 'op',
      x: e.callMs,
      x2: Math.max(ret, e.callMs + 0.6),
      y: y - 0.3,
      y2: y + 0.3,
      outcome: outcomeOf(e),
      flagged: flagged.has(e.key) && e.op !== 'scan',
      label: `${e.op} ${e.key} ${e.op === 'put' || e.op === 'get' ? cut(e.value) : ''}`,
    });
  }
  const laneNames = [
    ...lanes.map((l) => l.name),
    ...clients.map((c) => (c < 0 ? 'final reads' : `client c${c}`)),
  ];
  return { rows, laneNames };
}

function timelineSpec(rows: Record<string, unknown>[], laneNames: string[], endMs: number): TopLevelSpec {
  const y = {
    field: 'y',
    type: 'quantitative' as const,
    scale: { domain: [laneNames.length - 0.5, -0.5], nice: false, zero: false },
    axis: {
      title: null,
      values: laneNames.map((_, i) => i),
      labelExpr: `${JSON.stringify(laneNames)}[datum.value]`,
      grid: false,
    },
  };
  const x = {
    field: 'x',
    type: 'quantitative' as const,
    title: 'virtual ms',
    scale: { domain: [0, endMs], nice: false },
  };
  const only = (layer: string) => ({ filter: `datum.layer === '${layer}'` });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 1100,
    height: Math.max(240, laneNames.length * 22),
    data: { values: rows },
    resolve: { scale: { color: 'independent', stroke: 'independent' }, legend: { color: 'independent' } },
    layer: [
      {
        transform: [only('fault')],
        mark: { type: 'rect', color: '#d62728', opacity: 0.14 },
        encoding: { x, x2: { field: 'x2' }, y: { ...y }, y2: { field: 'y2' } },
      },
      {
        transform: [only('fault')],
        mark: { type: 'text', align: 'left', baseline: 'top', dx: 2, color: '#a01010', fontSize: 10 },
        encoding: { x, y: { ...y, field: 'y' }, text: { field: 'label' } },
      },
      {
        transform: [only('role')],
        mark: { type: 'rect' },
        encoding: {
          x,
          x2: { field: 'x2' },
          y,
          y2: { field: 'y2' },
          color: {
            field: 'role',
            type: 'nominal',
            scale: { domain: ['primary', 'backup', 'joining'], range: ['#1f77b4', '#9ecae1', '#fdd0a2'] },
            legend: { title: 'role' },
          },
        },
      },
      {
        transform: [only('epoch')],
        mark: { type: 'text', align: 'left', dx: 2, fontSize: 9, color: 'white' },
        encoding: { x, y, text: { field: 'label' } },
      },
      {
        transform: [only('write')],
        mark: { type: 'rule', color: '#555', opacity: 0.35, strokeWidth: 0.7 },
        encoding: { x, y, y2: { field: 'y2' } },
      },
      {
        transform: [only('phase')],
        mark: { type: 'point', shape: 'diamond', filled: true, color: '#2ca02c', size: 40 },
        encoding: { x, y, tooltip: { field: 'label' } },
      },
      {
        transform: [only('phase')],
        mark: { type: 'text', dy: -8, fontSize: 8, color: '#2ca02c' },
        encoding: { x, y, text: { field: 'label' } },
      },
      {
        transform: [only('fenced')],
        mark: { type: 'point', shape: 'cross', filled: true, color: '#000', size: 40 },
        encoding: { x, y },
      },
      {
        transform: [only('restart')],
        mark: { type: 'point', shape: 'triangle-up', filled: true, color: '#d62728', size: 60 },
        encoding: { x, y },
      },
      {
        transform: [only('op')],
        mark: { type: 'rect' },
        encoding: {
          x,
          x2: { field: 'x2' },
          y,
          y2: { field: 'y2' },
          color: {
            field: 'outcome',
            type: 'nominal',
            scale: OUTCOME_SCALE,
            legend: { title: 'operation' },
          },
          stroke: { condition: { test: 'datum.flagged', value: '#d62728' }, value: null },
          strokeWidth: { condition: { test: 'datum.flagged', value: 2 }, value: 0 },
          tooltip: { field: 'label' },
        },
      },
    ],
  } as TopLevelSpec;
}

/** The operations on one key, a lane per client, each bar labelled with what it wrote or read. */
function keySpec(history: readonly HistoryEntry[], key: string): TopLevelSpec {
  // The workload's operations (the final reads are in the table below: they come after healing,
  // far to the right of everything else).
  const ops = history.filter((e) => e.key === key && e.op !== 'scan' && e.client >= 0);
  const lastMs = Math.max(1, ...ops.map((e) => (Number.isFinite(e.retMs) ? e.retMs : e.callMs)));
  const firstMs = Math.min(lastMs, ...ops.map((e) => e.callMs));
  const clients = [...new Set(ops.map((e) => (e.client < 0 ? 'final reads' : `client c${e.client}`)))];
  const rows = ops.map((e) => ({
    lane: e.client < 0 ? 'final reads' : `client c${e.client}`,
    x: e.callMs,
    x2: Math.max(Number.isFinite(e.retMs) ? e.retMs : lastMs, e.callMs + 0.3),
    outcome: outcomeOf(e),
    label: `${e.op} ${e.op === 'delete' ? '' : cut(e.value, 10)}`,
  }));
  const x = {
    field: 'x',
    type: 'quantitative' as const,
    title: 'virtual ms',
    scale: { domain: [Math.max(0, firstMs - 2), lastMs + 2], nice: false },
  };
  const y = { field: 'lane', type: 'nominal' as const, title: null, sort: clients };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 1100,
    height: Math.max(80, clients.length * 40),
    data: { values: rows },
    layer: [
      {
        mark: { type: 'bar', height: 16 },
        encoding: {
          x,
          x2: { field: 'x2' },
          y,
          color: {
            field: 'outcome',
            type: 'nominal',
            scale: OUTCOME_SCALE,
          },
        },
      },
      {
        mark: { type: 'text', align: 'left', angle: -30, dy: -10, fontSize: 9 },
        encoding: { x, y, text: { field: 'label' } },
      },
    ],
  } as TopLevelSpec;
}

/** The whole page. `replay` is the command that runs this schedule again. */
export async function renderScheduleHtml(result: ScheduleResult, replay: string): Promise<string> {
  const recording = result.recording;
  if (recording === undefined)
    throw new TypeError('renderScheduleHtml needs a schedule run with record: true');
  const endMs = Math.max(
    1,
    ...result.history.map((e) => (Number.isFinite(e.retMs) ? e.retMs : e.callMs)),
    ...recording.events.map((e) => e.ms),
    ...recording.configs.map((c) => c.ms),
  );
  const keys = violatedKeys(result.violations);
  const { rows, laneNames } = timelineRows(result, recording, endMs, new Set(keys));
  const timeline = await svg(timelineSpec(rows, laneNames, endMs));
  const firstKey = keys[0];
  const perKey = firstKey === undefined ? '' : await svg(keySpec(result.history, firstKey));
  const faults = result.faults
    .map(
      (f) =>
        `<li>@${f.atMs} ms: ${esc(f.kind)} ${esc(f.node)} for ${f.forMs} ms${f.during === undefined ? '' : ` during ${esc(f.during)}`}</li>`,
    )
    .join('');
  const verdict =
    result.violations.length === 0
      ? '<p class="ok" id="verdict">No checker found a violation.</p>'
      : `<div class="violations" id="verdict"><h2>${result.violations.length} violation(s)</h2><ul>${result.violations.map((v) => `<li>${esc(v)}</li>`).join('')}</ul></div>`;
  const keyRows =
    firstKey === undefined
      ? ''
      : result.history
          .filter((e) => e.key === firstKey && e.op !== 'scan')
          .map(
            (e) =>
              `<tr><td>${e.client < 0 ? 'final' : `c${e.client}`}</td><td>${e.op}</td><td>${esc(cut(e.value, 40))}</td><td>${e.callMs}</td><td>${Number.isFinite(e.retMs) ? e.retMs : '—'}</td><td>${e.outcome}</td></tr>`,
          )
          .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>talos check seed ${result.seed}</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
.violations { border: 2px solid #d62728; background: #fff0f0; padding: 4px 16px; }
.violations h2 { color: #d62728; margin: 8px 0; }
.ok { color: #31a354; font-weight: bold; }
code { background: #f3f3f3; padding: 2px 4px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; font-size: 12px; }
</style></head><body>
<h1>Seed ${result.seed} (${esc(result.mode)}): ${result.operations} operations, ${result.virtualMs} virtual ms</h1>
<p>Replay: <code>${esc(replay)}</code></p>
${verdict}
<h2>Faults</h2><ul>${faults || '<li>none</li>'}</ul>
<h2>Timeline</h2>
<p>Lanes: each node's role per region (primary, backup, joining; epochs where a configuration starts), faults in red, restarts ▲, recovery steps ◆, fences ✚, one-sided log writes as grey lines; client operations below (red outline: a key a checker flagged).</p>
<div id="timeline">${timeline}</div>
${firstKey === undefined ? '' : `<h2 id="key">Key ${esc(firstKey)}</h2><div>${perKey}</div><table><tr><th>client</th><th>op</th><th>value</th><th>call ms</th><th>return ms</th><th>outcome</th></tr>${keyRows}</table>`}
</body></html>
`;
}
