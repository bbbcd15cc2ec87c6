/**
 * `talos check`: runs seeded simulated schedules (src/sim/) and reports what the checkers found.
 * `--replay <seed>` runs one schedule again and prints its fault plan and history.
 */
import { Presets, SingleBar } from 'cli-progress';
import type { Mutant } from '../mutants.js';
import type { ReplicationMode } from '../replication/messages.js';
import { type HistoryEntry, runSchedule, type ScheduleResult } from '../sim/check.js';

export interface CheckOptions {
  seeds?: number;
  ops?: number;
  faults?: number;
  seed?: number;
  replay?: number;
  mode?: ReplicationMode;
  mutant?: Mutant;
  json?: boolean;
}

export interface CheckSummary {
  schedules: number;
  operations: number;
  faults: number;
  faultsByKind: Record<string, number>;
  violations: number;
  failedSeeds: number[];
  firstSeed: number;
  mutant: string | null;
}

export async function runCheck(options: CheckOptions): Promise<CheckSummary> {
  const out = (line: string): void => {
    if (!options.json) process.stdout.write(`${line}\n`);
  };
  if (options.replay !== undefined) {
    const result = await runSchedule(scheduleOptions(options, options.replay));
    out(
      `seed ${result.seed} (${result.mode}): ${result.operations} operations, ${result.steps} steps, ${result.virtualMs} virtual ms`,
    );
    for (const f of result.faults) out(`  fault at ${f.atMs} ms: ${f.kind} ${f.node} (${f.forMs} ms)`);
    for (const v of result.violations) out(`  VIOLATION ${v}`);
    out('history (client op key value call-ret outcome):');
    for (const e of result.history) out(`  ${formatEntry(e)}`);
    const summary = summarize([result], result.seed, options.mutant);
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
  const summary = summarize(results, first, options.mutant);
  for (const r of results.filter((x) => x.violations.length > 0)) {
    out(`seed ${r.seed} (${r.mode}): ${r.violations.join('; ')}  — replay: talos check --replay ${r.seed}`);
  }
  out(
    `${summary.schedules} schedules from seed ${first}, ${summary.operations} operations, ${summary.faults} faults (${Object.entries(
      summary.faultsByKind,
    )
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}), ${summary.violations} violations`,
  );
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  return summary;
}

function scheduleOptions(options: CheckOptions, seed: number) {
  return {
    seed,
    ...(options.ops === undefined ? {} : { ops: options.ops }),
    ...(options.faults === undefined ? {} : { faults: options.faults }),
    ...(options.mode === undefined ? {} : { mode: options.mode }),
    ...(options.mutant === undefined ? {} : { mutant: options.mutant }),
  };
}

function summarize(results: readonly ScheduleResult[], firstSeed: number, mutant?: Mutant): CheckSummary {
  const faultsByKind: Record<string, number> = {};
  for (const r of results) for (const f of r.faults) faultsByKind[f.kind] = (faultsByKind[f.kind] ?? 0) + 1;
  return {
    schedules: results.length,
    operations: results.reduce((n, r) => n + r.operations, 0),
    faults: results.reduce((n, r) => n + r.faults.length, 0),
    faultsByKind,
    violations: results.reduce((n, r) => n + r.violations.length, 0),
    failedSeeds: results.filter((r) => r.violations.length > 0).map((r) => r.seed),
    firstSeed,
    mutant: mutant ?? null,
  };
}

function formatEntry(e: HistoryEntry): string {
  const ret = e.ret === Number.POSITIVE_INFINITY ? '?' : String(e.ret);
  return `c${e.client} ${e.op} ${e.key} ${e.value ?? '-'} ${e.call}-${ret} ${e.outcome}`;
}
