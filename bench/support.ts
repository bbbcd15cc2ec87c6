/**
 * Pieces every benchmark shares: the worker pool that keeps N operations in flight, value
 * generation from one seeded source, ratios, and keeping a doc's hand-written Analysis section
 * when the numbers above it are regenerated.
 */
import { readFileSync } from 'node:fs';
import type { Prng } from '../src/engine/prng.js';

/** a ÷ b to three decimals (0 when b is 0). */
export function ratio(a: number, b: number): number {
  return b === 0 ? 0 : Number((a / b).toFixed(3));
}

/** Runs operations 0..count−1 with `concurrency` of them in flight. */
export async function runWorkers(
  count: number,
  concurrency: number,
  op: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** `count` values of `valueBytes` random bytes: views into one 1 MiB pool filled from `rng`. */
export function randomValues(rng: Prng, count: number, valueBytes: number): Buffer[] {
  const pool = Buffer.alloc(1 << 20);
  for (let i = 0; i < pool.length; i += 4) pool.writeUInt32LE(rng.int(0, 0x7fffffff), i);
  return Array.from({ length: count }, () => {
    const at = rng.int(0, pool.length - valueBytes);
    return pool.subarray(at, at + valueBytes);
  });
}

/** The "## Analysis" section (to the end) of an existing doc, or '' — it survives regeneration. */
export function keptAnalysis(docPath: string): string {
  try {
    const previous = readFileSync(docPath, 'utf8');
    const at = previous.indexOf('\n## Analysis');
    return at >= 0 ? previous.slice(at + 1) : '';
  } catch {
    return '';
  }
}
