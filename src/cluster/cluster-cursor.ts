/**
 * Cluster cursors: one ordered cursor over every region a range touches, and cluster snapshots.
 *
 * A cluster cursor holds one engine cursor per region the range overlaps, each clipped to its
 * region's `[minKey, maxKey)`, and reads them in region order (reversed for `reverse`) — regions
 * are disjoint and ordered, so their concatenation is in key order. All region cursors are opened
 * in one synchronous step at creation, each on an implicit snapshot of its region's store (or on
 * the region's part of an explicit `ClusterSnapshot`), so an in-process cluster cursor reads one
 * point in time across regions. `seek(target)` outside the cursor's bounds ends it; inside, the
 * region holding the target seeks there, regions wholly past it (in the cursor's order) rewind,
 * regions wholly before it end, and reading restarts at the first region. `limit` is counted here,
 * across regions.
 *
 * What it does not survive: a failover. Its snapshots are of the stores that were primary when it
 * was created; once such a store closes, reads through it fail (STORE_CLOSED) — take a new one.
 * A region not serving at creation makes the first read fail (WRONG_PRIMARY), not the creation.
 */

import type { RegionConfig } from '../../coordination/types.js';
import { assert } from '../assert.js';
import { type Bytes, toKey } from '../engine/options.js';
import {
  type Cursor,
  type CursorEntry,
  type CursorOptions,
  type KeyRange,
  keyRange,
  type StoreSnapshot,
} from '../engine/store.js';
import { InvalidArgumentError, SnapshotReleasedError } from '../errors.js';

/**
 * A cursor whose reads may wait: a remote region's (src/client/remote-cursor.ts), or a cluster
 * cursor over any region cursors. `seek` and `rewind` only reposition; the next read applies them.
 */
export interface AsyncCursor {
  next(): Promise<CursorEntry | undefined>;
  nextv(size: number): Promise<CursorEntry[]>;
  all(): Promise<CursorEntry[]>;
  seek(target: Bytes): void;
  rewind(): void;
  close(): Promise<void> | void;
}

/** A region's cursor: an engine cursor (in-process sessions) or a remote one. */
export type RegionCursor = Cursor | AsyncCursor;

/** A region's snapshot: an engine snapshot (in-process sessions) or a remote one. */
export interface RegionSnapshot {
  release(): void;
}

/** Cursor options a region session takes: the engine's, with the region's own snapshot type. */
export type RegionCursorOptions = Omit<CursorOptions, 'snapshot'> & { snapshot?: RegionSnapshot };

/** One snapshot per region, taken together (LocalClient.snapshot); released together. */
export class ClusterSnapshot {
  private released = false;

  constructor(readonly regions: ReadonlyMap<string, RegionSnapshot | StoreSnapshot>) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    for (const snapshot of this.regions.values()) snapshot.release();
  }

  get isReleased(): boolean {
    return this.released;
  }
}

export type ClusterCursorOptions = Omit<CursorOptions, 'snapshot'> & { snapshot?: ClusterSnapshot };

/** Opens a region's cursor (the serving session's `iterator`), clipped by the caller. */
export type RegionCursorOpener = (regionId: string, options: RegionCursorOptions) => RegionCursor;

/** The region's bounds as a latin1 key range (the engine's key strings: UTF-8 bytes). */
function regionRange(region: RegionConfig): KeyRange {
  const latin1 = (k: string): string => Buffer.from(k, 'utf8').toString('latin1');
  return {
    lower: latin1(region.minKey),
    upper: region.maxKey === undefined ? undefined : latin1(region.maxKey),
  };
}

/** The intersection of two ranges, or undefined when empty. */
function intersect(a: KeyRange, b: KeyRange): KeyRange | undefined {
  const pick = (x: string | undefined, y: string | undefined, larger: boolean): string | undefined => {
    if (x === undefined) return y;
    if (y === undefined) return x;
    return larger === x > y ? x : y;
  };
  const lower = pick(a.lower, b.lower, true);
  const upper = pick(a.upper, b.upper, false);
  if (lower !== undefined && upper !== undefined && lower >= upper) return undefined;
  return { lower, upper };
}

export class ClusterCursor implements AsyncCursor {
  private readonly cursors: RegionCursor[] = [];
  /** Each region cursor's bounds (the cursor's range clipped to its region), in cursor order. */
  private readonly ranges: KeyRange[] = [];
  private readonly range: KeyRange;
  private readonly reverse: boolean;
  private readonly limit: number;
  private current = 0;
  private yielded = 0;
  private failure: unknown;
  private closed = false;

  constructor(regions: readonly RegionConfig[], open: RegionCursorOpener, options: ClusterCursorOptions) {
    const limit = options.limit ?? -1;
    if (typeof limit !== 'number' || Number.isNaN(limit))
      throw new InvalidArgumentError('limit must be a number');
    this.limit = limit < 0 ? Number.POSITIVE_INFINITY : limit;
    this.range = keyRange(options);
    this.reverse = options.reverse ?? false;
    if (options.snapshot?.isReleased) {
      this.failure = new SnapshotReleasedError();
      return;
    }
    const range = this.range;
    const ordered = options.reverse ? [...regions].reverse() : regions;
    try {
      for (const region of ordered) {
        const clipped = intersect(range, regionRange(region));
        if (clipped === undefined) continue;
        const regionOptions: RegionCursorOptions = {
          reverse: options.reverse ?? false,
          values: options.values ?? true,
          // No region yields more than the whole cursor may (a remote one then pages no further).
          limit: this.limit === Number.POSITIVE_INFINITY ? -1 : this.limit,
        };
        if (clipped.lower !== undefined) regionOptions.gte = Buffer.from(clipped.lower, 'latin1');
        if (clipped.upper !== undefined) regionOptions.lt = Buffer.from(clipped.upper, 'latin1');
        const snapshot = options.snapshot?.regions.get(region.regionId);
        if (options.snapshot !== undefined) {
          assert(snapshot !== undefined, () => `the cluster snapshot covers region ${region.regionId}`);
          regionOptions.snapshot = snapshot;
        }
        this.cursors.push(open(region.regionId, regionOptions));
        this.ranges.push(clipped);
      }
    } catch (err) {
      for (const cursor of this.cursors) cursor.close();
      this.cursors.length = 0;
      this.failure = err;
    }
  }

  async next(): Promise<CursorEntry | undefined> {
    this.check();
    if (this.yielded >= this.limit) return undefined;
    while (this.current < this.cursors.length) {
      const entry = await this.cursors[this.current]!.next();
      if (entry !== undefined) {
        this.yielded++;
        return entry;
      }
      this.current++;
    }
    return undefined;
  }

  async nextv(size: number): Promise<CursorEntry[]> {
    if (!(size >= 0)) throw new InvalidArgumentError('nextv size must be >= 0');
    const out: CursorEntry[] = [];
    while (out.length < size) {
      this.check();
      if (this.yielded >= this.limit || this.current >= this.cursors.length) break;
      // A region's cursor hands out what it has in one call (a remote one: a page).
      const entries = await this.cursors[this.current]!.nextv(
        Math.min(size - out.length, this.limit - this.yielded),
      );
      if (entries.length === 0) this.current++;
      this.yielded += entries.length;
      for (const entry of entries) out.push(entry);
    }
    return out;
  }

  all(): Promise<CursorEntry[]> {
    return this.nextv(Number.POSITIVE_INFINITY);
  }

  seek(target: Bytes): void {
    this.check();
    const t = toKey(target).toString('latin1');
    const { lower, upper } = this.range;
    const outside = (lower !== undefined && t < lower) || (upper !== undefined && t >= upper);
    this.cursors.forEach((cursor, i) => {
      const r = this.ranges[i]!;
      // Wholly past the target in reading order: read it all; else the cursor's own seek decides.
      const past = this.reverse
        ? r.upper !== undefined && r.upper <= `${t}\u0000`
        : r.lower !== undefined && t <= r.lower;
      if (past && !outside) cursor.rewind();
      else cursor.seek(target);
    });
    this.current = 0;
  }

  rewind(): void {
    this.check();
    for (const cursor of this.cursors) cursor.rewind();
    this.current = 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.cursors.map((cursor) => cursor.close()));
  }

  private check(): void {
    if (this.closed) throw new SnapshotReleasedError();
    if (this.failure !== undefined) throw this.failure;
  }
}
