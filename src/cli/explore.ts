/**
 * `talos explore`: bounded exhaustive exploration of small simulated worlds (src/sim/explore.ts),
 * and `talos check --replay SEED --choices LIST …`: one explored path again, with its history.
 */
import type { Mutant } from '../probe.js';
import type { ReplicationMode } from '../replication/messages.js';
import { formatEntry } from '../sim/check.js';
import {
  DEFAULT_CONFIG,
  type ExploreConfig,
  type ExploreFaultKind,
  type ExploreSummary,
  explore,
  MUTANT_CONFIGS,
  replayCommand,
  runPath,
} from '../sim/explore.js';

export interface ExploreCliOptions {
  nodes?: number;
  replicas?: number;
  ops?: number;
  faults?: number;
  /** The fault menu's kinds (EXPLORE_FAULT_KINDS). */
  faultKinds?: readonly string[];
  depth?: number;
  mode?: ReplicationMode;
  logBuffers?: number;
  /** Clocks at the drift bound's edge (default true; `--no-drift`). */
  drift?: boolean;
  seed?: number;
  mutant?: Mutant;
  maxStates?: number;
  /** Wall-time budget in seconds. */
  timeBudget?: number;
  /** Keep exploring after the first violation. */
  all?: boolean;
  json?: boolean;
}

/**
 * The configuration: the default, or with `--mutant M` the smallest that catches M
 * (MUTANT_CONFIGS), then whatever the options name.
 */
export function exploreConfig(o: ExploreCliOptions): ExploreConfig {
  const base = { ...DEFAULT_CONFIG, ...(o.mutant === undefined ? {} : MUTANT_CONFIGS[o.mutant]) };
  return {
    nodes: o.nodes ?? base.nodes,
    replicas: o.replicas ?? base.replicas,
    ops: o.ops ?? base.ops,
    faults: o.faults ?? base.faults,
    faultKinds: (o.faultKinds as ExploreFaultKind[] | undefined) ?? base.faultKinds,
    depth: o.depth ?? base.depth,
    mode: o.mode ?? base.mode,
    logBufferCount: o.logBuffers ?? base.logBufferCount,
    clockDrift: o.drift ?? base.clockDrift,
    seed: o.seed ?? base.seed,
    mutant: o.mutant,
  };
}

export function describeConfig(c: ExploreConfig): string {
  return `${c.nodes} nodes, one region, RF ${c.replicas}, ${c.ops} ops, up to ${c.faults} fault(s) of ${c.faultKinds.join('/')}, depth ${c.depth}, ${c.mode}, K ${c.logBufferCount}${c.clockDrift ? ', drifting clocks' : ''}${c.mutant === undefined ? '' : `, mutant ${c.mutant}`}`;
}

export async function runExploreCli(o: ExploreCliOptions): Promise<ExploreSummary> {
  const config = exploreConfig(o);
  const out = (line: string): void => {
    if (!o.json) process.stdout.write(`${line}\n`);
  };
  out(`explore: ${describeConfig(config)}`);
  const summary = await explore(config, {
    ...(o.maxStates === undefined ? {} : { maxStates: o.maxStates }),
    ...(o.timeBudget === undefined ? {} : { timeMs: o.timeBudget * 1000 }),
    ...(o.all ? { all: true } : {}),
  });
  const stopped =
    summary.violations.length > 0 && !o.all
      ? 'stopped at the first violation'
      : summary.complete
        ? 'complete'
        : 'stopped by the budget';
  out(
    `states explored ${summary.statesExplored}, unique states ${summary.uniqueStates}, paths ${summary.paths}, maximum depth ${summary.maxDepth}, time ${(summary.timeMs / 1000).toFixed(1)} s (${stopped})`,
  );
  out('properties:');
  out(
    `  always linearizability, durability, replicas, epochs, trace, liveness: ${summary.violations.length === 0 ? 'hold' : `VIOLATED in ${summary.violations.length} path(s)`}`,
  );
  for (const p of summary.properties)
    out(
      `  sometimes ${p.name}: ${p.status}${p.choices === undefined ? '' : ` (choices ${p.choices.join(',') || '(none)'})`}`,
    );
  for (const v of summary.violations) {
    out('counterexample:');
    for (const line of v.violations) out(`  VIOLATION ${line}`);
    out(`  choices: ${v.choices.join(',')}`);
    out(`  replay: ${v.replay}`);
  }
  if (o.json)
    process.stdout.write(
      `${JSON.stringify({
        config: summary.config,
        statesExplored: summary.statesExplored,
        uniqueStates: summary.uniqueStates,
        paths: summary.paths,
        maxDepth: summary.maxDepth,
        timeMs: summary.timeMs,
        complete: summary.complete,
        violations: summary.violations,
        properties: summary.properties,
      })}\n`,
    );
  return summary;
}

export interface ChoicesReplayOptions extends ExploreCliOptions {
  replay: number;
  choices: number[];
}

/** `talos check --replay SEED --choices LIST`: one path of the explorer again, with its history. */
export async function replayChoices(o: ChoicesReplayOptions): Promise<{ violations: string[] }> {
  // The depth only bounds what a path records: a replay records its choices.
  const config = { ...exploreConfig(o), seed: o.replay, depth: Math.min(200, o.choices.length) };
  const out = (line: string): void => {
    if (!o.json) process.stdout.write(`${line}\n`);
  };
  const result = await runPath(config, o.choices);
  out(`explored path (${describeConfig(config)}): ${result.steps} steps, ${result.virtualMs} virtual ms`);
  out(`choices: ${result.points.map((p) => `${p.choice}/${p.n}`).join(' ')}`);
  out(`faults: ${result.faults.join(', ') || 'none'}`);
  out(`reached: ${result.reached.join(', ') || 'nothing'}`);
  out(`${result.violations.length} violation(s)`);
  for (const v of result.violations) out(`VIOLATION ${v}`);
  out('history:');
  for (const e of result.history) out(`  ${formatEntry(e)}`);
  if (o.json)
    process.stdout.write(
      `${JSON.stringify({ violations: result.violations, choices: o.choices, replay: replayCommand(config, o.choices) })}\n`,
    );
  return { violations: result.violations };
}

/** `--choices 0,3,1` (empty: every choice 0). */
export function parseChoices(text: string): number[] {
  const list = text.trim() === '' ? [] : text.split(',').map((x) => Number(x.trim()));
  if (list.some((x) => !Number.isInteger(x) || x < 0))
    throw new Error(`--choices: comma-separated non-negative integers, not ${text}`);
  return list;
}
