/**
 * Region layout helpers: a region is a key range `[minKey, maxKey)` in the stores' key order, the
 * UTF-8 byte order of the keys (compareKeys, src/keys.ts) — not JS string order. Bounds are strings;
 * a binary key (Uint8Array) is routed by comparing its bytes with the bounds' UTF-8 bytes.
 * The default layout splits the space of lowercase-hex-prefixed keys evenly (keys such as hashed
 * YCSB keys spread over it); the first region starts at '' and the last is unbounded, so every key
 * falls in exactly one region whatever its shape.
 */
import type { RegionConfig } from '../../coordination/types.js';
import type { RegionSpec } from '../actors/controller.js';
import { InvalidArgumentError, UnknownRegionError } from '../errors.js';
import { compareKeys, describeKeyLike, type KeyLike, keyInRange } from '../keys.js';

/** `count` regions splitting two-hex-digit prefixes evenly: r0 = ['', '55'), r1 = ['55', 'aa'), … */
export function hexRegionSpecs(count: number): RegionSpec[] {
  if (!Number.isInteger(count) || count < 1 || count > 256) {
    throw new InvalidArgumentError(`region count must be an integer in [1, 256], got ${count}`);
  }
  const bound = (i: number): string =>
    Math.floor((i * 256) / count)
      .toString(16)
      .padStart(2, '0');
  return Array.from({ length: count }, (_, i) => ({
    regionId: `r${i}`,
    minKey: i === 0 ? '' : bound(i),
    ...(i === count - 1 ? {} : { maxKey: bound(i + 1) }),
  }));
}

/** Checks that specs are sorted, start at '', leave no gap or overlap and end unbounded. */
export function validateRegionSpecs(specs: readonly RegionSpec[]): void {
  if (specs.length === 0) throw new InvalidArgumentError('at least one region');
  const ids = new Set(specs.map((s) => s.regionId));
  if (ids.size !== specs.length) throw new InvalidArgumentError('region ids must be unique');
  if (specs[0]!.minKey !== '') throw new InvalidArgumentError("the first region must start at ''");
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i]!;
    const next = specs[i + 1];
    if (next === undefined) {
      if (spec.maxKey !== undefined) throw new InvalidArgumentError('the last region must be unbounded');
    } else if (spec.maxKey !== next.minKey || !(compareKeys(spec.minKey, spec.maxKey) < 0)) {
      throw new InvalidArgumentError(
        `regions ${spec.regionId} and ${next.regionId} must be adjacent and non-empty`,
      );
    }
  }
}

/** Orders region configurations by minKey in key order: the order regionOf and scans rely on. */
export function byMinKey(a: { minKey: string }, b: { minKey: string }): number {
  return compareKeys(a.minKey, b.minKey);
}

/** The region of `key` among configurations sorted by minKey (byMinKey). */
export function regionOf<T extends Pick<RegionConfig, 'minKey' | 'maxKey' | 'regionId'>>(
  sorted: readonly T[],
  key: KeyLike,
): T {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(sorted[mid]!.minKey, key) <= 0) lo = mid + 1;
    else hi = mid;
  }
  const region = sorted[lo - 1];
  if (region === undefined || !keyInRange(key, region.minKey, region.maxKey)) {
    throw new UnknownRegionError(`key ${describeKeyLike(key)}`);
  }
  return region;
}
