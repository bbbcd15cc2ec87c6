/**
 * `talos check`: runs seeded simulated schedules (src/sim/) and reports what the checkers found.
 * A failing schedule is shrunk (fast-check's shrinker over its operations and fault plan, see
 * src/sim/shrink.ts) and printed readably — seed, shrunk plan, the history around each violation —
 * with the command that replays it. `--replay <seed>` runs one schedule again (with `--plan`, that
 * plan instead of the drawn one) and prints its faults, violations and whole history.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Presets, SingleBar } from 'cli-progress';
import type { Mutant } from '../probe.js';
import type { ReplicationMode } from '../replication/messages.js';
import {
  explainViolations,
  type Fault,
  formatEntry,
  runSchedule,
  type ScheduleOptions,
  type ScheduleResult,
} from '../sim/check.js';
import type { FaultKind } from '../sim/faults.js';
import { REGRESSIONS } from '../sim/regressions.js';
import { shrinkFailure } from '../sim/shrink.js';

export interface CheckOptions {
  seeds?: number;
  ops?: number;
  faults?: number;
  faultKinds?: FaultKind[];
  concurrentFaults?: number;
  nodes?: number;
  seed?: number;
  replay?: number;
  plan?: Fault[];
  /** With replay: print the schedule's timeline (ScheduleOptions.timeline) as it happens. */
  timeline?: boolean;
  /** With replay: write the trace viewer's HTML page here. */
  html?: string;
  mode?: ReplicationMode;
  mutant?: Mutant;
  /** Shrink the first failing schedule (default true). */
  shrink?: boolean;
  /** The workload issues atomic batches (default true; false replays seeds recorded before them). */
  batches?: boolean;
  json?: boolean;
  /** Write a markdown report here (schedules, faults by kind, violations, seeds to keep). */
  report?: string;
  /** Add this run's section to an existing report instead of starting a new one. */
  appendReport?: boolean;
}

export interface ShrunkReport {
  seed: number;
  ops: number;
  plan: Fault[];
  violations: string[];
  replay: string;
}

export interface CheckSummary {
  schedules: number;
  operations: number;
  faults: number;
  faultsByKind: Record<string, number>;
  /** The most faults in effect at once in any schedule. */
  maxConcurrentFaults: number;
  /** Faults of overlapping plans that never started (node busy, or a region's last replicas). */
  skippedFaults: number;
  /** Faults of overlapping plans that struck inside a recovery step, by phase. */
  phaseFaults: Record<string, number>;
  /** The longest recovery after a schedule's last fault (virtual ms; bound: 10 lease TTLs). */
  maxRecoveryMs: number;
  /** The most epochs one region went through in one schedule. */
  maxEpochs: number;
  /** Keys whose linearizability search ran past its budget (undecided, counted, not passed). */
  undecidedKeys: number;
  violations: number;
  failedSeeds: number[];
  firstSeed: number;
  mutant: string | null;
  /** The first failure, shrunk (null when nothing failed or --no-shrink). */
  shrunk: ShrunkReport | null;
}

export async function runCheck(options: CheckOptions): Promise<CheckSummary> {
  const out = (line: string): void => {
    if (!options.json) process.stdout.write(`${line}\n`);
  };
  if (options.replay !== undefined) {
    const result = await runSchedule({
      ...scheduleOptions(options, options.replay),
      ...(options.timeline ? { timeline: (line: string) => out(`  ${line}`) } : {}),
      ...(options.html === undefined ? {} : { record: true }),
    });
    if (options.html !== undefined) {
      const { renderScheduleHtml } = await import('../sim/viewer.js');
      const replay = `talos check --replay ${options.replay}${replayFlags(options)}${options.ops === undefined ? '' : ` --ops ${options.ops}`}${options.plan === undefined ? '' : ` --plan '${JSON.stringify(options.plan)}'`}`;
      writeFileSync(options.html, await renderScheduleHtml(result, replay));
      out(`wrote ${options.html}`);
    }
    out(
      `seed ${result.seed} (${result.mode}): ${result.operations} operations, ${result.steps} steps, ${result.virtualMs} virtual ms`,
    );
    for (const line of explainViolations(result)) out(line);
    out('history:');
    for (const e of result.history) out(`  ${formatEntry(e)}`);
    const summary = summarize([result], result.seed, options.mutant, null);
    if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    return summary;
  }
  const count = options.seeds ?? 100;
  const first = options.seed ?? (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0;
  const bar = options.json
    ? undefined
    : new SingleBar(
        { format: 'check [{bar}] {value}/{total} schedules, {violations} violations' },
        Presets.shades_classic,
      );
  bar?.start(count, 0, { violations: 0 });
  const results: ScheduleResult[] = [];
  let violations = 0;
  for (let i = 0; i < count; i++) {
    const result = await runSchedule(scheduleOptions(options, (first + i) >>> 0));
    // Keep what the summary needs; histories of passing runs are dropped.
    results.push(result.violations.length > 0 ? result : { ...result, history: [] });
    violations += result.violations.length;
    bar?.update(i + 1, { violations });
  }
  bar?.stop();
  const failed = results.filter((x) => x.violations.length > 0);
  for (const r of failed) {
    out(
      `seed ${r.seed} (${r.mode}): ${r.violations.join('; ')}  — replay: talos check --replay ${r.seed}${replayFlags(options)}`,
    );
  }
  let shrunk: ShrunkReport | null = null;
  const firstFailure = failed[0];
  if (firstFailure !== undefined && options.shrink !== false) {
    out(
      `shrinking seed ${firstFailure.seed} (${firstFailure.faults.length} faults, ${firstFailure.ops} operations)…`,
    );
    const small = await shrinkFailure(scheduleOptions(options, firstFailure.seed), firstFailure);
    const replay = `talos check --replay ${firstFailure.seed} --ops ${small.ops}${replayFlags(options)} --plan '${JSON.stringify(small.plan)}'`;
    shrunk = {
      seed: firstFailure.seed,
      ops: small.ops,
      plan: small.plan,
      violations: small.result.violations,
      replay,
    };
    out(`shrunk in ${small.runs} schedules to ${small.ops} operations and ${small.plan.length} fault(s):`);
    for (const line of explainViolations(small.result)) out(`  ${line}`);
    out(`replay: ${replay}`);
  }
  const summary = summarize(results, first, options.mutant, shrunk);
  out(
    `${summary.schedules} schedules from seed ${first}, ${summary.operations} operations, ${summary.faults} faults (${Object.entries(
      summary.faultsByKind,
    )
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}), ${summary.violations} violations`,
  );
  if (options.report !== undefined) writeReport(options.report, summary, results, options);
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  return summary;
}

function writeReport(
  path: string,
  summary: CheckSummary,
  results: readonly ScheduleResult[],
  options: CheckOptions,
): void {
  const failed = results.filter((r) => r.violations.length > 0);
  const overlapping = (options.concurrentFaults ?? 1) > 1;
  const command = `talos check --seeds ${summary.schedules} --seed ${summary.firstSeed}${replayFlags(options)}${options.ops === undefined ? '' : ` --ops ${options.ops}`}`;
  const header = [
    '# Reliability: simulated schedules',
    '',
    `Generated by \`npm run soak\` (\`talos check … --report ${path}\`, one section per run) on ${new Date().toISOString().slice(0, 10)}.`,
    `Each schedule: a seeded SimWorld (${options.nodes ?? 4} nodes, 3 regions, RF = 3, both replication modes and K = 1 or 2 log`,
    "buffers by seed, replicas' device layouts skewed, L0 of 64 B so flushes and compactions run under the faults),",
    '60 client operations (put/get/delete/scan, values of 10/100/1000 B) from 4 concurrent clients on a skewed key',
    'space, a fault plan drawn from the seed, then healing and the checkers: durability, per-key linearizability',
    '(strict: a write reported as failed must never be observed), replica equivalence, epochs, the trace checkers',
    '(one acknowledging node per epoch, nothing placed in a fenced buffer, no buffer overwritten before its segment',
    'persisted, no index segment before its log segments) and the liveness bounds (every region whole within 10',
    'lease TTLs of the last fault; at most 4 epochs per region per fault).',
    '',
  ];
  const section = [
    `## ${overlapping ? `Overlapping faults (up to ${options.concurrentFaults} at once)` : 'One fault at a time'}: ${summary.schedules} schedules`,
    '',
    `\`${command}\``,
    '',
    '| | |',
    '| --- | --- |',
    `| schedules | ${summary.schedules} (seeds ${summary.firstSeed} … ${(summary.firstSeed + summary.schedules - 1) >>> 0}) |`,
    `| operations | ${summary.operations} |`,
    `| faults | ${summary.faults} (${options.faults ?? 3} per schedule) |`,
    ...Object.entries(summary.faultsByKind)
      .sort()
      .map(([kind, n]) => `| faults: ${kind} | ${n} |`),
    `| most faults in effect at once | ${summary.maxConcurrentFaults} |`,
    ...(overlapping
      ? [
          `| faults struck inside a recovery step | ${Object.values(summary.phaseFaults).reduce((a, b) => a + b, 0)} |`,
          ...Object.entries(summary.phaseFaults)
            .sort()
            .map(([phase, n]) => `| struck during: ${phase} | ${n} |`),
          `| faults skipped (node busy or a region's last replicas, 2 s) | ${summary.skippedFaults} |`,
        ]
      : []),
    `| longest recovery after the last fault | ${summary.maxRecoveryMs} virtual ms |`,
    `| most epochs of one region in one schedule | ${summary.maxEpochs} |`,
    `| keys whose linearizability search ran out of budget | ${summary.undecidedKeys} |`,
    `| violations | ${summary.violations} |`,
    `| mutant | ${summary.mutant ?? 'none'} |`,
    '',
    failed.length === 0
      ? 'No schedule failed a checker.'
      : `Failing seeds (add them to REGRESSIONS in src/sim/regressions.ts; replay with \`talos check --replay SEED${replayFlags(options)}\`):\n\n${failed.map((r) => `- ${r.seed} (${r.mode}): ${r.violations.join('; ')}`).join('\n')}`,
    '',
  ];
  const footer = [
    '## Regression schedules',
    '',
    'src/sim/regressions.ts; each once failed a checker and now runs in every `npm test`:',
    '',
    ...REGRESSIONS.map((r) => `- \`${JSON.stringify(r)}\``),
    '',
  ];
  // A second run appends its section before the regression list (`--append-report`).
  const FOOTER = '## Regression schedules';
  const earlier = options.appendReport && existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  const body =
    earlier === undefined
      ? [...header, ...section, ...footer]
      : [
          earlier.slice(0, earlier.includes(FOOTER) ? earlier.indexOf(FOOTER) : earlier.length).trimEnd(),
          '',
          ...section,
          ...footer,
        ];
  writeFileSync(path, body.join('\n'));
}

/** The options that shape a schedule, as flags for its replay command. */
function replayFlags(options: CheckOptions): string {
  return [
    options.faults === undefined ? '' : ` --faults ${options.faults}`,
    options.concurrentFaults === undefined ? '' : ` --concurrent-faults ${options.concurrentFaults}`,
    options.faultKinds === undefined ? '' : ` --fault-kinds ${options.faultKinds.join(',')}`,
    options.mode === undefined ? '' : ` --mode ${options.mode}`,
    options.mutant === undefined ? '' : ` --mutant ${options.mutant}`,
  ].join('');
}

function scheduleOptions(options: CheckOptions, seed: number): ScheduleOptions {
  return {
    seed,
    ...(options.ops === undefined ? {} : { ops: options.ops }),
    ...(options.faults === undefined ? {} : { faults: options.faults }),
    ...(options.nodes === undefined ? {} : { nodes: options.nodes }),
    ...(options.concurrentFaults === undefined ? {} : { concurrentFaults: options.concurrentFaults }),
    ...(options.faultKinds === undefined ? {} : { faultKinds: options.faultKinds }),
    ...(options.plan === undefined ? {} : { plan: options.plan }),
    ...(options.mode === undefined ? {} : { mode: options.mode }),
    ...(options.mutant === undefined ? {} : { mutant: options.mutant }),
    ...(options.batches === false ? { batches: false } : {}),
  };
}

function summarize(
  results: readonly ScheduleResult[],
  firstSeed: number,
  mutant: Mutant | undefined,
  shrunk: ShrunkReport | null,
): CheckSummary {
  const faultsByKind: Record<string, number> = {};
  for (const r of results) for (const f of r.faults) faultsByKind[f.kind] = (faultsByKind[f.kind] ?? 0) + 1;
  const phaseFaults: Record<string, number> = {};
  for (const r of results)
    for (const [phase, n] of Object.entries(r.phaseFaults))
      phaseFaults[phase] = (phaseFaults[phase] ?? 0) + n;
  return {
    schedules: results.length,
    operations: results.reduce((n, r) => n + r.operations, 0),
    faults: results.reduce((n, r) => n + r.faults.length, 0),
    faultsByKind,
    maxConcurrentFaults: results.reduce((n, r) => Math.max(n, r.maxConcurrentFaults), 0),
    skippedFaults: results.reduce((n, r) => n + r.skippedFaults, 0),
    phaseFaults,
    maxRecoveryMs: results.reduce((n, r) => Math.max(n, r.recoveryMs), 0),
    maxEpochs: results.reduce((n, r) => Math.max(n, r.maxEpochs), 0),
    undecidedKeys: results.reduce((n, r) => n + r.undecidedKeys, 0),
    violations: results.reduce((n, r) => n + r.violations.length, 0),
    failedSeeds: results.filter((r) => r.violations.length > 0).map((r) => r.seed),
    firstSeed,
    mutant: mutant ?? null,
    shrunk,
  };
}
