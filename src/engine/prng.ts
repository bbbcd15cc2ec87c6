import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

/** A seeded pseudo-random source: all randomness in Talos comes from one of these. */
export interface Prng {
  /** Uniform integer in [from, to], both included. */
  int(from: number, to: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
}

export function createPrng(seed: number): Prng {
  const rng = xoroshiro128plus(seed | 0);
  return {
    int: (from, to) => uniformInt(rng, from, to),
    chance: (p) => uniformInt(rng, 0, 999_999) < p * 1_000_000,
  };
}
