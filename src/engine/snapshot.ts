/**
 * Snapshots: a consistent, point-in-time read view of a store.
 *
 * What a snapshot holds: a copy-on-write clone of L0 (O(1), Memtable.clone), the frozen L0 being
 *   flushed (immutable already), and the level lists as they are (each install builds new arrays,
 *   so holding them is holding that version) — everything a read resolves through, taken in one
 *   synchronous step, so a snapshot sees exactly the writes that had reached L0 when it was taken,
 *   whatever is written, flushed or compacted afterwards.
 *
 * Why compaction keeps what a snapshot sees: as LevelDB's Version references, a snapshot pins the
 *   index segments of its levels. Compaction merges and drops shadowed versions and tombstones as
 *   before (the newest version wins: nothing in the merge changes), but the segments an install
 *   removes are freed (`SnapshotRegistry.release`) only once no live snapshot pins them — until
 *   then the old segment stays on the device, readable, and its offset is not reused. Values live
 *   in the value log, which a primary never frees (KV separation), so every pointer a snapshot
 *   holds keeps resolving. Pins are in memory only: after a restart no snapshot exists, and the
 *   manifest never named a pinned-but-removed segment, so the allocator's view is already right.
 *
 * A snapshot is released by its owner (`release`, idempotent); reads through a released one raise
 * SnapshotReleasedError. Iterators take an implicit snapshot of their own at creation (cursor.ts).
 */
import { assert } from '../assert.js';
import { SnapshotReleasedError } from '../errors.js';
import type { IndexEntry, Memtable } from './memtable.js';
import type { EntryStream } from './merge.js';
import type { LevelSegment, VersionSet } from './version-set.js';

/** What the registry needs of the store to take a snapshot. */
export interface SnapshotSource {
  l0: Memtable;
  frozen: Memtable | undefined;
  versions: VersionSet;
}

export class StoreSnapshot {
  private released = false;

  constructor(
    private readonly registry: SnapshotRegistry,
    private readonly l0: Memtable,
    private readonly frozen: Memtable | undefined,
    private readonly levels: LevelSegment[][],
    private readonly versions: VersionSet,
    /** The index segments this snapshot pins (its levels' segments). */
    readonly pinnedOffsets: number[],
  ) {}

  get isReleased(): boolean {
    return this.released;
  }

  /** The newest entry for `key` as of the snapshot (a tombstone included). */
  lookup(key: string, keyBytes: Buffer): IndexEntry | undefined {
    this.check();
    return this.l0.get(key) ?? this.frozen?.get(key) ?? this.versions.lookup(key, keyBytes, this.levels);
  }

  /** One sorted stream per source over [gte, lt), newest source first (for mergeStreams). */
  streams(gte: string | undefined, lt: string | undefined, reverse: boolean): EntryStream[] {
    this.check();
    const streams: EntryStream[] = [this.l0.range(gte, lt, reverse)];
    if (this.frozen !== undefined) streams.push(this.frozen.range(gte, lt, reverse));
    streams.push(...this.versions.streams(gte, lt, reverse, this.levels));
    return streams;
  }

  /** Ends the snapshot: the segments only it pinned may be freed. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.registry.unpin(this);
  }

  check(): void {
    if (this.released) throw new SnapshotReleasedError();
  }
}

/** The live snapshots' pins, and the frees they defer (see the header). */
export class SnapshotRegistry {
  /** Index segment offset → how many live snapshots pin it. */
  private readonly pins = new Map<number, number>();
  /** Pinned segments an install removed: freed when their last pin goes. */
  private readonly deferred = new Set<number>();
  private liveCount = 0;

  constructor(private readonly free: (offset: number) => void) {}

  get liveSnapshotCount(): number {
    return this.liveCount;
  }

  get deferredFreeCount(): number {
    return this.deferred.size;
  }

  /** Takes a snapshot of `source` now (one synchronous step). */
  take(source: SnapshotSource): StoreSnapshot {
    const levels = source.versions.levels.map((level) => level.slice());
    const offsets = levels.flat().map((s) => s.descriptor.offset);
    for (const offset of offsets) this.pins.set(offset, (this.pins.get(offset) ?? 0) + 1);
    this.liveCount++;
    return new StoreSnapshot(this, source.l0.clone(), source.frozen, levels, source.versions, offsets);
  }

  /** Frees `offset` now, or when the last snapshot pinning it is released. */
  release(offset: number): void {
    if ((this.pins.get(offset) ?? 0) > 0) {
      assert(!this.deferred.has(offset), () => `segment ${offset} freed twice`);
      this.deferred.add(offset);
    } else this.free(offset);
  }

  unpin(snapshot: StoreSnapshot): void {
    assert(this.liveCount > 0, 'a released snapshot was live');
    this.liveCount--;
    for (const offset of snapshot.pinnedOffsets) {
      const count = this.pins.get(offset) ?? 0;
      assert(count > 0, () => `segment ${offset} unpinned more often than pinned`);
      if (count > 1) {
        this.pins.set(offset, count - 1);
        continue;
      }
      this.pins.delete(offset);
      if (this.deferred.delete(offset)) this.free(offset);
    }
  }
}
