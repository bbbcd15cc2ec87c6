/**
 * The simulator (src/sim/): the same seed gives the same run, byte for byte; a batch of 1 000
 * seeded schedules — concurrent clients (put/get/delete/scan), fault plans over every fault kind,
 * both replication modes, K = 1 or 2 log buffers — passes every checker (durability, per-key
 * linearizability, replica equivalence, epochs, the trace checkers); every mutant is caught within
 * 100 seeds (the CLI's defaults, or the configuration MUTANT_SCHEDULES names for it); stalls and
 * clock faults alone pass, sequential and overlapping; fast-check fault plans pass too, and a
 * failure shrinks.
 * `TALOS_SIM_SEEDS` changes the batch size; a failing seed is printed and goes into REGRESSIONS.
 */
import * as fc from 'fast-check';
import { InvalidArgumentError } from '../../src/errors.js';
import { MUTANTS, type Mutant } from '../../src/probe.js';
import { FAULT_KINDS, runSchedule, type ScheduleOptions } from '../../src/sim/check.js';
import { REGRESSIONS } from '../../src/sim/regressions.js';
import { planArbitrary, shrinkFailure } from '../../src/sim/shrink.js';
import { SimWorld } from '../../src/sim/world.js';
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

/**
 * Mutants that the default schedules cannot reach, with the configuration that does (the same as
 * CLI flags). `no-lease-margin` shows only when a node whose clock runs slow acts within the few
 * ms after the coordinator ended its lease: a node that stalled about a lease with requests queued
 * behind the stall. The default plans draw a stall one fault in twelve, and only the first fault
 * of a sequential plan overlaps the 60-operation workload (about 120 ms), so 100 default seeds
 * hold almost no such moment (none in seeds 1–100). Overlapping plans of stalls on drifting clocks
 * do — `talos check --mutant no-lease-margin --fault-kinds stall,clock-drift --faults 4
 * --concurrent-faults 2` catches it at seed 2, ten times in seeds 1–100 — and the same plans pass
 * without the mutant (the test below, and the 2 000-schedule runs in docs/failure-model.md).
 */
const MUTANT_SCHEDULES: Partial<Record<Mutant, Partial<ScheduleOptions>>> = {
  'no-lease-margin': { faultKinds: ['stall', 'clock-drift'], faults: 4, concurrentFaults: 2 },
};

test.each(MUTANTS)('the checkers catch the mutant %s within 100 seeds', async (mutant) => {
  let caught: string | undefined;
  const config = MUTANT_SCHEDULES[mutant] ?? {};
  for (let seed = 1; seed <= 100 && caught === undefined; seed++) {
    const result = await runSchedule({ seed, mutant, ...config });
    if (result.violations.length > 0) caught = `seed ${seed}: ${result.violations[0]}`;
  }
  process.stderr.write(`[sim] ${mutant}: ${caught}\n`);
  expect(caught).toBeDefined();
  // Each schedule brings its own probe: the same seed passes without the mutant.
  expect((await runSchedule({ seed: 1, ...config })).violations).toEqual([]);
});

test('stalls, clock drift and clock jumps alone: 200 sequential and 200 overlapping schedules pass every checker', async () => {
  const kinds = ['stall', 'clock-drift', 'clock-jump'] as const;
  const failures: string[] = [];
  const seen = new Map<string, number>();
  for (const concurrentFaults of [1, 2]) {
    for (let i = 0; i < 200; i++) {
      const seed = 30_000 + concurrentFaults * 1000 + i;
      const result = await runSchedule({ seed, faults: 4, faultKinds: kinds, concurrentFaults });
      for (const f of result.faults) seen.set(f.kind, (seen.get(f.kind) ?? 0) + 1);
      if (result.violations.length > 0) failures.push(`seed ${seed}: ${result.violations.join('; ')}`);
    }
  }
  expect(failures).toEqual([]);
  for (const kind of kinds) expect(seen.get(kind) ?? 0).toBeGreaterThan(100);
});

test('a stall just past the lease on a slow clock: fenced with the margin, acting on a dead lease without it', async () => {
  // r0's primary n1 (its clock 15 % slow in both seeds) stalls 300 ms from 20 ms on; the
  // coordinator ends its lease at 295 ms and r0 moves on. When n1 wakes at 320 ms, requests queued
  // behind the stall come first — before it hears that its lease ended. Seed 3 queued a read,
  // seed 19 a write whose replication completed during the stall (seeds re-picked when device I/O
  // completions became simulator steps: the schedules changed).
  for (const [seed, what] of [
    [3, 'answered a read of region r0'],
    [19, 'acknowledged "00-key" of region r0'],
  ] as const) {
    const lines: string[] = [];
    const plan = [{ kind: 'stall' as const, node: 'n1', atMs: 20, forMs: 300 }];
    const result = await runSchedule({ seed, clockDrift: true, plan, timeline: (l) => lines.push(l) });
    expect(result.violations).toEqual([]);
    expect(lines.some((l) => /r0 epoch \d+: primary n[234]/.test(l))).toBe(true);
    expect(lines.some((l) => /supervisor restarts n1 \(lease lost\)/.test(l))).toBe(true);
    const mutated = await runSchedule({ seed, clockDrift: true, plan, mutant: 'no-lease-margin' });
    expect(mutated.violations[0]).toContain(`leases: event`);
    expect(mutated.violations[0]).toContain(
      `n1 ${what} (epoch 1) after its lease ended on the coordinator (at 295 ms)`,
    );
  }
});

test('a lease margin that does not cover the clock bounds is refused', async () => {
  const make = (options: { leaseMarginMs?: number; maxClockDrift?: number; maxClockJumpMs?: number }) =>
    SimWorld.create({ seed: 1, nodes: 3, leaseTtlMs: 300, ...options });
  // 0.15 · 300 + 10 = 55 ms needed.
  await expect(make({ leaseMarginMs: 54, maxClockDrift: 0.15, maxClockJumpMs: 10 })).rejects.toThrow(
    InvalidArgumentError,
  );
  await expect(make({ maxClockDrift: 0.25 })).rejects.toThrow(/at least 75 ms/);
  await expect(make({ maxClockDrift: 1 })).rejects.toThrow(InvalidArgumentError);
  const world = await make({ leaseMarginMs: 55, maxClockDrift: 0.15, maxClockJumpMs: 10 });
  await world.close();
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
