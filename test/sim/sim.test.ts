/**
 * The simulator (src/sim/): the same seed gives the same run, byte for byte; and a batch of seeded
 * schedules — concurrent clients, a fault plan of crashes, pauses and partitions, both replication
 * modes — passes every checker (durability, per-key linearizability, replica equivalence, epochs).
 * `TALOS_SIM_SEEDS` changes the batch size; a failing seed is printed and goes into REGRESSIONS.
 */
import * as fc from 'fast-check';
import { MUTANTS } from '../../src/mutants.js';
import { FAULT_KINDS, runSchedule } from '../../src/sim/check.js';
import { propertyParams } from '../support/property.js';

jest.setTimeout(600_000);

/** Seeds that once failed a checker; each runs on every `npm test`. */
const REGRESSIONS: number[] = [];

test('the same seed gives the same run: history, faults, steps and virtual time', async () => {
  const a = await runSchedule({ seed: 4242, ops: 40, faults: 3 });
  const b = await runSchedule({ seed: 4242, ops: 40, faults: 3 });
  expect(b.history).toEqual(a.history);
  expect(b.faults).toEqual(a.faults);
  expect(b.steps).toBe(a.steps);
  expect(b.virtualMs).toBe(a.virtualMs);
  expect(a.operations).toBeGreaterThan(40); // the workload plus the final reads
  const c = await runSchedule({ seed: 4243, ops: 40, faults: 3 });
  expect(c.history).not.toEqual(a.history);
});

test('seeded schedules across every fault kind and both modes pass every checker', async () => {
  const count = Number(process.env.TALOS_SIM_SEEDS ?? 400);
  const base = (Date.now() ^ (Math.random() * 0x7fffffff)) >>> 0;
  process.stderr.write(`[sim] ${count} schedules from seed ${base}\n`);
  const kinds = new Map<string, number>();
  const modes = new Set<string>();
  const failures: string[] = [];
  for (const seed of [...REGRESSIONS, ...Array.from({ length: count }, (_, i) => (base + i) >>> 0)]) {
    const result = await runSchedule({ seed, ops: 40, faults: 2 });
    modes.add(result.mode);
    for (const f of result.faults) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
    if (result.violations.length > 0) failures.push(`seed ${seed}: ${result.violations.join('; ')}`);
  }
  expect(failures).toEqual([]);
  expect([...modes].sort()).toEqual(['build-index', 'send-index']);
  for (const kind of FAULT_KINDS) expect(kinds.get(kind) ?? 0).toBeGreaterThan(0);
});

test.each(MUTANTS)('the checkers catch the mutant %s within 50 seeds', async (mutant) => {
  let caught: string | undefined;
  for (let seed = 1; seed <= 50 && caught === undefined; seed++) {
    const result = await runSchedule({ seed, ops: 40, faults: 2, mutant });
    if (result.violations.length > 0) caught = `seed ${seed}: ${result.violations[0]}`;
  }
  expect(caught).toBeDefined();
  // The switch is off again after the schedule: the same seed passes without the mutant.
  expect((await runSchedule({ seed: 1, ops: 40, faults: 2 })).violations).toEqual([]);
});

/** A fault plan as fast-check sees it: shrinks towards fewer, earlier, shorter faults on n1. */
const faultArb = fc.record({
  kind: fc.constantFrom(...FAULT_KINDS),
  node: fc.constantFrom('n1', 'n2', 'n3', 'n4'),
  atMs: fc.nat({ max: 320 }),
  forMs: fc.integer({ min: 100, max: 700 }),
});

test('property: fast-check fault plans (shrinkable) over seeded workloads pass every checker', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.nat({ max: 0x7fffffff }),
      fc.array(faultArb, { maxLength: 3, size: 'max' }),
      async (seed, plan) => {
        const result = await runSchedule({ seed, ops: 40, plan });
        expect(result.violations).toEqual([]);
      },
    ),
    propertyParams('simulated fault plans', 60),
  );
});
