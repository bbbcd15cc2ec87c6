/**
 * Fault plans as fast-check arbitraries, and the shrinking `talos check` applies to a failing
 * schedule (the jest property uses the same arbitrary and fast-check's own runner).
 *
 * Shrinking a failure (`shrinkFailure`): fast-check's shrinker for the pair (operations, plan)
 * proposes smaller candidates — fewer operations, fewer faults, earlier and shorter faults, faults
 * on n1, simpler kinds — and the first candidate whose schedule still violates a checker becomes
 * the new failure; its own shrinks are tried next. It stops when no candidate fails or after
 * `maxRuns` schedules. The seed stays fixed (it drives the workload and the fabric's order), and
 * `faults` too, so every candidate replays exactly with `talos check --replay SEED --ops N --plan
 * JSON`.
 */
import * as fc from 'fast-check';
import { FAULT_KINDS, type Fault, runSchedule, type ScheduleOptions, type ScheduleResult } from './check.js';

/** One fault; shrinks towards the first kind, n1, time 0 and the shortest duration. */
export function faultArbitrary(nodeIds: readonly string[], maxAtMs: number): fc.Arbitrary<Fault> {
  return fc.record({
    kind: fc.constantFrom(...FAULT_KINDS),
    node: fc.constantFrom(...nodeIds),
    atMs: fc.nat({ max: maxAtMs }),
    forMs: fc.integer({ min: 100, max: 700 }),
  });
}

/** A fault plan of up to `maxFaults` faults (shrinks towards fewer). */
export function planArbitrary(
  nodeIds: readonly string[],
  maxAtMs: number,
  maxFaults = 4,
): fc.Arbitrary<Fault[]> {
  return fc.array(faultArbitrary(nodeIds, maxAtMs), { maxLength: maxFaults, size: 'max' });
}

export interface ShrunkFailure {
  ops: number;
  plan: Fault[];
  result: ScheduleResult;
  /** Schedules run while shrinking (the failing one not counted). */
  runs: number;
}

/**
 * Shrinks a failing schedule: `failing` is its result (seed, ops and the plan it ran). Resolves
 * with the smallest failing (ops, plan) found and its result.
 */
export async function shrinkFailure(
  options: ScheduleOptions,
  failing: ScheduleResult,
  { maxRuns = 100, onRun }: { maxRuns?: number; onRun?: (runs: number) => void } = {},
): Promise<ShrunkFailure> {
  const nodeIds = Array.from({ length: options.nodes ?? 4 }, (_, i) => `n${i + 1}`);
  const maxAtMs = Math.max(failing.ops * 2, ...failing.faults.map((f) => f.atMs));
  const maxFaults = Math.max(4, failing.faults.length);
  const arbitrary = fc.tuple(
    fc.integer({ min: 1, max: failing.ops }),
    planArbitrary(nodeIds, maxAtMs, maxFaults),
  );
  let best: ShrunkFailure = { ops: failing.ops, plan: failing.faults, result: failing, runs: 0 };
  let value: [number, Fault[]] = [failing.ops, failing.faults];
  let context: unknown;
  let runs = 0;
  for (let improved = true; improved && runs < maxRuns; ) {
    improved = false;
    for (const candidate of arbitrary.shrink(value, context)) {
      if (runs >= maxRuns) break;
      const [ops, plan] = candidate.value;
      runs++;
      onRun?.(runs);
      const result = await runSchedule({ ...options, ops, plan });
      if (result.violations.length > 0) {
        best = { ops, plan: result.faults, result, runs };
        value = candidate.value;
        context = candidate.context;
        improved = true;
        break;
      }
    }
  }
  return { ...best, runs };
}
