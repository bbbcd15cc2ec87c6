/**
 * The simulator (src/sim/): the same seed gives the same run, byte for byte; a batch of 1 000
 * seeded schedules — concurrent clients (put/get/delete/scan), fault plans over every fault kind,
 * both replication modes, K = 1 or 2 log buffers — passes every checker (durability, per-key
 * linearizability, replica equivalence, epochs, the trace checkers); every mutant is caught within
 * the CLI's default 100 seeds; fast-check fault plans pass too, and a failure shrinks.
 * `TALOS_SIM_SEEDS` changes the batch size; a failing seed is printed and goes into REGRESSIONS.
 */
import * as fc from 'fast-check';
import { MUTANTS } from '../../src/mutants.js';
import { FAULT_KINDS, runSchedule } from '../../src/sim/check.js';
import { REGRESSIONS } from '../../src/sim/regressions.js';
import { planArbitrary, shrinkFailure } from '../../src/sim/shrink.js';
import { propertyParams } from '../support/property.js';

jest.setTimeout(900_000);

test('the same seed gives the same run: history, faults, steps, trace and virtual time', async () => {
  const a = await runSchedule({ seed: 4242, ops: 40, faults: 3 });
  const b = await runSchedule({ seed: 4242, ops: 40, faults: 3 });
  expect(b.history).toEqual(a.history);
  expect(b.faults).toEqual(a.faults);
  expect(b.steps).toBe(a.steps);
  expect(b.traceEvents).toBe(a.traceEvents);
  expect(b.virtualMs).toBe(a.virtualMs);
  expect(a.operations).toBeGreaterThan(40); // the workload plus the final reads
  const c = await runSchedule({ seed: 4243, ops: 40, faults: 3 });
  expect(c.history).not.toEqual(a.history);
  // The drawn plan, given explicitly, replays the seed exactly (what --replay --plan relies on).
  const d = await runSchedule({ seed: 4242, ops: 40, faults: 3, plan: a.faults });
  expect(d.history).toEqual(a.history);
});

test('regression schedules pass every checker', async () => {
  for (const options of REGRESSIONS) {
    const result = await runSchedule(options);
    expect({ seed: options.seed, violations: result.violations }).toEqual({
      seed: options.seed,
      violations: [],
    });
  }
});

test('1 000 seeded schedules across every fault kind, both modes and K = 1, 2 pass every checker', async () => {
  const count = Number(process.env.TALOS_SIM_SEEDS ?? 1000);
  const base = (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0;
  process.stderr.write(`[sim] ${count} schedules from seed ${base}\n`);
  const kinds = new Map<string, number>();
  const modes = new Set<string>();
  const ops = new Set<string>();
  const failures: string[] = [];
  let events = 0;
  for (let i = 0; i < count; i++) {
    const seed = (base + i) >>> 0;
    const result = await runSchedule({ seed, ops: 40, faults: 3 });
    modes.add(result.mode);
    events += result.traceEvents;
    for (const e of result.history) ops.add(e.op);
    for (const f of result.faults) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
    if (result.violations.length > 0) failures.push(`seed ${seed}: ${result.violations.join('; ')}`);
  }
  expect(failures).toEqual([]);
  expect([...modes].sort()).toEqual(['build-index', 'send-index']);
  expect([...ops].sort()).toEqual(['delete', 'get', 'put', 'scan']);
  for (const kind of FAULT_KINDS) expect(kinds.get(kind) ?? 0).toBeGreaterThan(0);
  expect(events).toBeGreaterThan(count * 50); // the trace checkers saw the protocol at work
});

test.each(MUTANTS)('the checkers catch the mutant %s within the default 100 seeds', async (mutant) => {
  let caught: string | undefined;
  for (let seed = 1; seed <= 100 && caught === undefined; seed++) {
    const result = await runSchedule({ seed, mutant });
    if (result.violations.length > 0) caught = `seed ${seed}: ${result.violations[0]}`;
  }
  process.stderr.write(`[sim] ${mutant}: ${caught}\n`);
  expect(caught).toBeDefined();
  // The switch is off again after the schedule: the same seed passes without the mutant.
  expect((await runSchedule({ seed: 1 })).violations).toEqual([]);
});

test('property: fast-check fault plans (shrinkable) over seeded workloads pass every checker', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.nat({ max: 0x7fffffff }),
      planArbitrary(['n1', 'n2', 'n3', 'n4'], 80, 3),
      async (seed, plan) => {
        const result = await runSchedule({ seed, ops: 40, plan });
        expect(result.violations).toEqual([]);
      },
    ),
    propertyParams('simulated fault plans', 60),
  );
});

test('a failing schedule shrinks to fewer operations and faults that still fail', async () => {
  // A mutant's failure, as `talos check` finds it: the first failing seed, then shrinking.
  let failing: Awaited<ReturnType<typeof runSchedule>> | undefined;
  for (let seed = 1; failing === undefined; seed++) {
    const result = await runSchedule({ seed, faults: 3, mutant: 'no-l0-replay' });
    if (result.violations.length > 0) failing = result;
  }
  const small = await shrinkFailure({ seed: failing.seed, faults: 3, mutant: 'no-l0-replay' }, failing, {
    maxRuns: 40,
  });
  expect(small.result.violations.length).toBeGreaterThan(0);
  expect(small.ops + small.plan.length).toBeLessThan(failing.ops + failing.faults.length);
  // The shrunk schedule replays exactly.
  const again = await runSchedule({
    seed: failing.seed,
    faults: 3,
    ops: small.ops,
    plan: small.plan,
    mutant: 'no-l0-replay',
  });
  expect(again.violations).toEqual(small.result.violations);
});

test('overlapping fault plans: faults on distinct nodes run at once, never every replica of a region', async () => {
  const result = await runSchedule({ seed: 1, faults: 4, concurrentFaults: 2 });
  expect(result.maxConcurrentFaults).toBe(2);
  expect(result.skippedFaults).toBe(0);
  expect(result.violations).toEqual([]);
  // One at a time (the default) never overlaps.
  const sequential = await runSchedule({ seed: 1, faults: 4 });
  expect(sequential.maxConcurrentFaults).toBe(1);
  await expect(runSchedule({ seed: 1, concurrentFaults: 0 })).rejects.toThrow('concurrentFaults');
}, 60_000);

test('a schedule narrates its timeline: faults, configurations, restarts, first acknowledgements', async () => {
  const lines: string[] = [];
  const result = await runSchedule({
    seed: 101697,
    faults: 4,
    concurrentFaults: 2,
    timeline: (l) => lines.push(l),
  });
  expect(result.violations).toEqual([]);
  // The cluster's start (before the workload's clock starts) comes first, then timed lines.
  expect(lines[0]).toMatch(/^setup: n\d resync r\d \(peer n\d\)$/);
  const timed = lines.filter((l) => !l.startsWith('setup: '));
  expect(timed[0]).toMatch(/^0 ms: r0 epoch 1: primary n\d, backups \[n\d, n\d\]$/);
  expect(lines.some((l) => /ms: fault \S+ n\d for \d+ ms starts$/.test(l))).toBe(true);
  expect(lines.some((l) => /ms: n\d acknowledges r\d epoch \d+ \(first: /.test(l))).toBe(true);
  // Times never run backwards.
  const times = timed.map((l) => Number.parseInt(l, 10));
  expect(times).toEqual([...times].sort((a, b) => a - b));
  // The timeline only watches: the same seed without it runs the same.
  const quiet = await runSchedule({ seed: 101697, faults: 4, concurrentFaults: 2 });
  expect(quiet.history).toEqual(result.history);
});

test('a drawn plan picks only from the fault kinds it is given', async () => {
  const result = await runSchedule({ seed: 7, faults: 6, faultKinds: ['pause', 'crash'] });
  expect(result.faults.every((f) => f.kind === 'pause' || f.kind === 'crash')).toBe(true);
  await expect(runSchedule({ seed: 7, faultKinds: [] })).rejects.toThrow('faultKinds');
});
