/**
 * Seeds for property tests. Every run prints its seed (stderr) so a failure can be replayed with
 * `TALOS_SEED=<seed> npx jest <file>`; failing seeds become regression tests next to the property.
 * `TALOS_RUNS=<n>` changes the number of runs; `TALOS_NO_SHRINK=1` reports the first failure
 * without shrinking (quick mutation checks: does the property bite at all?).
 */
import type * as fc from 'fast-check';

export function propertyParams<T>(
  name: string,
  numRuns: number,
  extra: fc.Parameters<T> = {},
): fc.Parameters<T> {
  const fromEnv = process.env.TALOS_SEED;
  const seed = fromEnv !== undefined ? Number(fromEnv) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  const runs = process.env.TALOS_RUNS !== undefined ? Number(process.env.TALOS_RUNS) : numRuns;
  process.stderr.write(`[property] ${name}: seed=${seed} numRuns=${runs}\n`);
  const endOnFailure = process.env.TALOS_NO_SHRINK === '1';
  return { seed, numRuns: runs, ...(endOnFailure ? { endOnFailure } : {}), ...extra };
}
