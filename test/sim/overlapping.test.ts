/**
 * Overlapping fault plans (issue 17 item 2): 1 000 seeded schedules with up to two faults in
 * effect at once on distinct nodes — a third of them struck inside a recovery step (promotion,
 * rebase, re-sync, level install, a new epoch starting to serve) — pass every checker, the
 * liveness bounds included. `TALOS_SIM_OVERLAPPING_SEEDS` changes the batch size; a failing seed
 * is printed and goes into REGRESSIONS.
 *
 * The batch starts at a fixed seed (one that passed) so that `npm test` — CI's gate — is
 * deterministic: random batches drew a new failing seed in about every other run of session 11
 * (three bugs found and fixed: see regressions.ts), and a gate
 * that fails at random blocks every change alike. Random batches are for hunting:
 * `TALOS_SIM_OVERLAPPING_BASE=random` (or a seed number), and `npm run soak`.
 */

import { FAULT_KINDS, livenessBounds, runSchedule } from '../../src/sim/check.js';
import { PHASES } from '../../src/sim/faults.js';

jest.setTimeout(900_000);

/** The batch's first seed by default (its 1 000 schedules passed on session 11's final tree). */
const FIXED_BASE_SEED = 637282106;

test('1 000 overlapping schedules, faults inside recovery steps included, pass every checker', async () => {
  const count = Number(process.env.TALOS_SIM_OVERLAPPING_SEEDS ?? 1000);
  const chosen = process.env.TALOS_SIM_OVERLAPPING_BASE;
  const base =
    chosen === 'random'
      ? (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0
      : chosen !== undefined
        ? Number(chosen) >>> 0
        : FIXED_BASE_SEED;
  process.stderr.write(`[sim] ${count} overlapping schedules from seed ${base}\n`);
  const failures: string[] = [];
  const kinds = new Map<string, number>();
  const phases = new Map<string, number>();
  let maxConcurrent = 0;
  let maxRecoveryMs = 0;
  for (let i = 0; i < count; i++) {
    const seed = (base + i) >>> 0;
    const result = await runSchedule({ seed, faults: 4, concurrentFaults: 2 });
    if (result.violations.length > 0) failures.push(`seed ${seed}: ${result.violations.join('; ')}`);
    for (const f of result.faults) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
    for (const [phase, n] of Object.entries(result.phaseFaults))
      phases.set(phase, (phases.get(phase) ?? 0) + n);
    maxConcurrent = Math.max(maxConcurrent, result.maxConcurrentFaults);
    maxRecoveryMs = Math.max(maxRecoveryMs, result.recoveryMs);
  }
  process.stderr.write(
    `[sim] struck during: ${JSON.stringify(Object.fromEntries(phases))}; max recovery ${maxRecoveryMs} ms\n`,
  );
  expect(failures).toEqual([]);
  expect(maxConcurrent).toBe(2);
  for (const kind of FAULT_KINDS) expect(kinds.get(kind) ?? 0).toBeGreaterThan(0);
  // Faults landed inside every kind of recovery step.
  if (count >= 1000) for (const phase of PHASES) expect(phases.get(phase) ?? 0).toBeGreaterThan(0);
});

test('a fault planned during a recovery step strikes the node that runs it', async () => {
  const lines: string[] = [];
  const plan = [
    { kind: 'kill' as const, node: 'n1', atMs: 10, forMs: 200 },
    { kind: 'crash' as const, node: 'n4', atMs: 20, forMs: 100, during: 'promotion' as const },
  ];
  const result = await runSchedule({
    seed: 3,
    faults: 2,
    concurrentFaults: 2,
    plan,
    timeline: (l) => lines.push(l),
  });
  expect(result.violations).toEqual([]);
  const struck = lines.find((l) => l.includes('struck during promotion'));
  expect(struck).toBeDefined();
  // The promoting node is the one struck (whatever the plan's node said).
  const match = /ms: (n\d) struck during promotion of r\d on (n\d)$/.exec(struck!);
  expect(match).not.toBeNull();
  expect(match![1]).toBe(match![2]);
  expect(result.phaseFaults.promotion).toBe(1);
});

test('the liveness bounds: recovery within 10 lease TTLs of the last fault, at most 4 epochs per fault', () => {
  expect(livenessBounds([{ endedAtMs: 100, wholeAtMs: 400 }], 3)).toEqual([]);
  expect(livenessBounds([{ endedAtMs: 100, wholeAtMs: 3200 }], 3)[0]).toMatch(
    /whole only 3100 ms after the last fault/,
  );
  expect(livenessBounds([{ endedAtMs: 100, wholeAtMs: Number.POSITIVE_INFINITY }], 3)).toHaveLength(1);
  // Only the fault that ended last counts: an earlier one may be held up by a later one.
  expect(
    livenessBounds(
      [
        { endedAtMs: 100, wholeAtMs: 5000 },
        { endedAtMs: 4000, wholeAtMs: 4500 },
      ],
      3,
    ),
  ).toEqual([]);
  expect(livenessBounds([{ endedAtMs: 0, wholeAtMs: 300 }], 5)[0]).toMatch(/5 epochs for 1 faults .*storm/);
  expect(livenessBounds([], 4)).toEqual([]);
});
