/**
 * The backup side of a store (role 'backup'), built on the engine's generic operations
 * (`store.replica`: raw segment writes, version edits, applyRecords). A backup takes no writes: it
 * persists what the primary ships.
 *
 * Send-Index: shipped log segments are persisted in local segments (`segmentMap`: primary offset →
 *   local offset); shipped index segments are verified, their value pointers translated through
 *   the segment map, written and synced, and join a level only when the matching compaction commit
 *   is installed (`installShippedCompaction`: one manifest write, `indexMap` updated, removed
 *   segments freed after it). A re-sync replaces every level at once (`installShippedLevels`).
 *
 * Build-Index (PROTOCOL §5, the papers' baseline): shipped log segments are persisted the same way
 *   and then indexed here (`indexShippedLogSegment`): each newly persisted record goes into this
 *   store's L0 with a local pointer, and flushes and compactions run on their own, as on a
 *   primary. Such a backup is opened with `rebuildL0` so a restart replays its persisted log.
 *
 * Rebase (`rebaseMaps`, PROTOCOL §7): after another backup was promoted, the maps are re-keyed to
 *   the new primary's offsets; see the method.
 *
 * One BackupStore per Store instance (`backupStore(store)`): it holds the shipped index segments
 * written but not yet committed, which a crash (a new instance) frees.
 */
import { assert, assertOffset } from '../assert.js';
import { crc32c } from '../engine/crc.js';
import type { CompactionCommittedEvent } from '../engine/hooks.js';
import type { IndexSegmentDescriptor } from '../engine/index-segment-reader.js';
import { translateIndexSegmentChecked } from '../engine/index-translate.js';
import type { LogPosition, LogSegmentEntry } from '../engine/manifest.js';
import { parseRecords } from '../engine/record.js';
import type { Store } from '../engine/store.js';
import { CorruptSegmentError, InvalidArgumentError, TalosError } from '../errors.js';
import { defective, NO_PROBE, type Probe } from '../probe.js';

/** A rebase named maps that do not match this backup's: it needs a full re-sync instead. */
export class RebaseMismatchError extends TalosError {
  constructor(detail: string) {
    super('REBASE_MISMATCH', `rebase refused: ${detail}`);
  }
}

const instances = new WeakMap<Store, BackupStore>();

/** The backup side of `store` (one per store instance). */
export function backupStore(store: Store): BackupStore {
  let backup = instances.get(store);
  if (backup === undefined) {
    backup = new BackupStore(store);
    instances.set(store, backup);
  }
  return backup;
}

export class BackupStore {
  /** Shipped index segments written but not yet committed (primary offset → descriptor). */
  private readonly shippedPending = new Map<number, IndexSegmentDescriptor>();
  /** Shipped index segments written since the last device sync: the install commit syncs them once. */
  private shippedUnsynced = false;

  constructor(readonly store: Store) {}

  /**
   * Persists the used prefix of primary log segment `seq` in a local segment (a new one, or the
   * same one again when a partial seal is followed by the full seal), syncs it, and records
   * `segmentMap[primarySegmentOffset] = local` in the manifest. Returns the local offset.
   */
  async writeShippedLogSegment(args: {
    seq: number;
    primarySegmentOffset: number;
    bytes: Buffer;
    crc32c?: number;
  }): Promise<number> {
    const { store } = this;
    store.replica.requireUsable('backup');
    const { seq, primarySegmentOffset, bytes } = args;
    assertOffset(primarySegmentOffset, 'primarySegmentOffset');
    if (primarySegmentOffset % store.segmentBytes !== 0) {
      throw new InvalidArgumentError(`primary segment offset ${primarySegmentOffset} is not segment-aligned`);
    }
    if (bytes.length > store.segmentBytes)
      throw new InvalidArgumentError('shipped log segment larger than a segment');
    if (args.crc32c !== undefined && crc32c(bytes) !== args.crc32c) {
      throw new CorruptSegmentError(`shipped log segment ${seq}`, 'crc mismatch');
    }
    return store.replica.mutateAsync(async () => {
      const local =
        new Map(store.replica.segmentMapEntries()).get(primarySegmentOffset) ??
        store.replica.allocateSegment();
      const before = store.logSegments().find((e) => e.seq === seq);
      // A segment grows by partial seals (tail syncs) before its full seal; the prefix persisted
      // already came from the same buffer (the CRC above covers all of it), so only the new
      // suffix is written — each log byte reaches a backup's device once, as on the primary.
      const persisted = before !== undefined && before.offset === local ? (before.usedBytes ?? 0) : 0;
      const from = persisted <= bytes.length ? persisted : 0;
      if (from < bytes.length) store.replica.writeRaw(local + from, bytes.subarray(from), 'log');
      // The bytes are durable before the manifest edit names them. The region hands this store one
      // message at a time (BackupRegion's queue), so nothing else edits its log meanwhile; the
      // edit is computed after the sync all the same, from the state as it is then.
      await store.replica.syncDevice();
      const segmentMap = new Map(store.replica.segmentMapEntries());
      const log = store.logSegments();
      const entry = log.find((e) => e.seq === seq);
      segmentMap.set(primarySegmentOffset, local);
      if (entry === undefined) {
        log.push({ seq, offset: local, usedBytes: bytes.length });
        log.sort((a, b) => a.seq - b.seq);
      } else {
        assert(entry.offset === local, 'a log segment must map to one local segment');
        entry.usedBytes = Math.max(entry.usedBytes ?? 0, bytes.length);
      }
      await store.replica.applyEdit({ log, segmentMap: [...segmentMap] });
      return local;
    });
  }

  /**
   * Verifies a shipped index segment, translates its value pointers through the segment map and
   * writes it to a new local segment. It joins a level only when the matching
   * `installShippedCompaction` (or `installShippedLevels`) commits, which syncs the device once for
   * all of its segments before its manifest edit; until then a crash frees it (pending segments are
   * in memory only, so syncing each one would make nothing recoverable).
   */
  writeShippedIndexSegment(args: { primarySegmentOffset: number; bytes: Buffer }): IndexSegmentDescriptor {
    const { store } = this;
    store.replica.requireUsable('backup');
    const name = `shipped index segment @${args.primarySegmentOffset}`;
    if (args.bytes.length > store.segmentBytes) throw new CorruptSegmentError(name, 'larger than a segment');
    const segmentMap = new Map(store.replica.segmentMapEntries());
    // One pass: every block's CRC checked once, pointers and CRCs rewritten (index-translate.ts).
    const { bytes: translated, meta } = translateIndexSegmentChecked(
      args.bytes,
      store.segmentBytes,
      (p) => segmentMap.get(p),
      name,
    );
    const offset = store.replica.mutate(() => {
      const allocated = store.replica.allocateSegment();
      store.replica.writeRaw(allocated, translated, 'index');
      this.shippedUnsynced = true;
      return allocated;
    });
    const descriptor: IndexSegmentDescriptor = {
      offset,
      usedBytes: translated.length,
      entryCount: meta.entryCount,
      tombstoneCount: meta.tombstoneCount,
      minKey: meta.minKey,
      maxKey: meta.maxKey,
    };
    const previous = this.shippedPending.get(args.primarySegmentOffset);
    if (previous !== undefined) store.replica.releaseSegment(previous.offset);
    this.shippedPending.set(args.primarySegmentOffset, descriptor);
    return { ...descriptor };
  }

  /**
   * Installs a primary's compaction commit atomically — the new segments (already shipped) join
   * dstLevel, the removed ones leave both levels, the manifest is written once, then the removed
   * local segments are freed. Segment offsets are the primary's.
   */
  async installShippedCompaction(
    commit: Omit<CompactionCommittedEvent, 'trivialMove'> & { trivialMove?: boolean },
  ): Promise<void> {
    const { store } = this;
    store.replica.requireUsable('backup');
    const { srcLevel, dstLevel } = commit;
    if (!(srcLevel >= 0 && dstLevel === srcLevel + 1 && dstLevel <= store.maxLevels)) {
      throw new InvalidArgumentError(`bad compaction levels ${srcLevel} → ${dstLevel}`);
    }
    const indexMap = new Map(store.replica.indexMapEntries());
    const removedLocal = commit.removedSegments.map((p) => {
      const local = indexMap.get(p);
      if (local === undefined) throw new InvalidArgumentError(`removed segment ${p} is not installed here`);
      return local;
    });
    const installed = store.levelDescriptors().flat();
    const added = commit.newSegments.map((p) => {
      const pending = this.shippedPending.get(p);
      if (pending !== undefined) return pending;
      const local = indexMap.get(p);
      const existing = local === undefined ? undefined : installed.find((d) => d.offset === local);
      if (existing === undefined) throw new InvalidArgumentError(`new segment ${p} was never shipped here`);
      return existing;
    });
    for (const p of commit.removedSegments) indexMap.delete(p);
    commit.newSegments.forEach((p, i) => {
      indexMap.set(p, added[i]!.offset);
    });
    const install = {
      srcLevel,
      dstLevel,
      added,
      removedOffsets: removedLocal,
      replayFrom: commit.replayFrom,
    };
    await store.replica.mutateAsync(async () => {
      await this.syncShippedIndex();
      for (const p of commit.newSegments) this.shippedPending.delete(p);
      // The compaction id in the same edit: a restart must not find this commit's levels under
      // the previous id (it would be re-synced for nothing).
      await store.replica.applyEdit({
        install,
        indexMap: [...indexMap],
        nextCompactionId: Math.max(store.replica.lastCompactionId(), commit.compactionId) + 1,
      });
    });
  }

  /**
   * Send-Index re-sync (PROTOCOL §7): replaces every level at once. `levels[i]` lists the PRIMARY
   * offsets of level i + 1's segments, each shipped before (writeShippedIndexSegment, still
   * pending) or already installed here. One manifest write installs them all, with the primary's
   * `replayFrom`; the old levels' segments that are not named are freed afterwards; the index map
   * becomes exactly the named segments. A name neither pending nor installed, or more levels than
   * maxLevels, raises InvalidArgumentError and changes nothing.
   */
  async installShippedLevels(args: {
    levels: number[][];
    replayFrom: LogPosition;
    compactionId: number;
  }): Promise<void> {
    const { store } = this;
    store.replica.requireUsable('backup');
    if (args.levels.length > store.maxLevels) {
      throw new InvalidArgumentError(`${args.levels.length} levels shipped, at most ${store.maxLevels}`);
    }
    const installed = new Map(
      store
        .levelDescriptors()
        .flat()
        .map((d) => [d.offset, d] as const),
    );
    const indexMap = new Map(store.replica.indexMapEntries());
    const nextIndexMap = new Map<number, number>();
    const consumed: number[] = [];
    const levels = args.levels.map((level, i) => {
      const segments = level.map((primaryOffset) => {
        const pending = this.shippedPending.get(primaryOffset);
        if (pending !== undefined) consumed.push(primaryOffset);
        const local = pending?.offset ?? indexMap.get(primaryOffset);
        const segment = local === undefined ? undefined : (installed.get(local) ?? pending);
        if (segment === undefined) {
          throw new InvalidArgumentError(
            `index segment ${primaryOffset} (level ${i + 1}) was never shipped here`,
          );
        }
        nextIndexMap.set(primaryOffset, segment.offset);
        return segment;
      });
      segments.sort((a, b) => (a.minKey < b.minKey ? -1 : a.minKey > b.minKey ? 1 : 0));
      for (let j = 1; j < segments.length; j++) {
        if (!(segments[j - 1]!.maxKey < segments[j]!.minKey)) {
          throw new InvalidArgumentError(`shipped level ${i + 1} has overlapping segments`);
        }
      }
      return segments;
    });
    const keptLocal = new Set(nextIndexMap.values());
    await store.replica.mutateAsync(async () => {
      await this.syncShippedIndex();
      for (const primary of consumed) this.shippedPending.delete(primary);
      await store.replica.applyEdit({
        levels,
        indexMap: [...nextIndexMap],
        replayFrom: args.replayFrom,
        // The levels now reflect the primary's compaction `compactionId`, whatever this store saw before.
        nextCompactionId: args.compactionId + 1,
        release: [...installed.keys()].filter((offset) => !keptLocal.has(offset)),
      });
    });
  }

  /** One device sync for every shipped index segment written since the last, before an install names them. */
  private async syncShippedIndex(): Promise<void> {
    if (!this.shippedUnsynced) return;
    this.shippedUnsynced = false; // the sync below covers every one written so far
    await this.store.replica.syncDevice();
  }

  /** Records which primary's offsets key the maps (the first primary to open it). */
  async setMapOwner(nodeId: string): Promise<void> {
    const { store } = this;
    store.replica.requireUsable('backup');
    const owner = store.replica.mapOwner();
    if (owner === nodeId) return;
    assert(
      owner === undefined ||
        (store.replica.segmentMapEntries().length === 0 && store.replica.indexMapEntries().length === 0),
      () => `maps keyed by ${owner} cannot change owner without a rebase`,
    );
    await store.replica.applyEdit({ mapOwner: nodeId });
  }

  /**
   * After another backup was promoted (PROTOCOL §7, rebase). This store's maps are keyed by
   * `owner` (the old primary); from now on they are keyed by `newOwner`, the promoted node, whose
   * log is `segments` (seq → its local offset) and whose `indexMap` maps the old primary's index
   * segment offsets to its own. Algorithm:
   * - log: every persisted segment is re-keyed by its seq to the new primary's offset; segments past
   *   the new primary's log end were never acknowledged (an acknowledged write is in every
   *   backup's buffer, so the promoted node has it) and are truncated — dropped and freed. A gap
   *   (a seq below the end the new primary lacks) cannot be reconciled: RebaseMismatchError.
   * - index: installed segments are re-keyed; one the new primary never installed (a commit that
   *   reached only this backup) is dropped from the map — this backup's levels are then ahead of
   *   the new primary's, and the level re-sync that follows (its last compaction id differs)
   *   replaces them. Shipped-but-uncommitted index segments are dropped.
   * Local offsets do not move; one manifest write makes it durable. A store whose maps are keyed by
   * another node than `owner` gets RebaseMismatchError and nothing changes.
   */
  async rebaseMaps(args: {
    owner: string;
    newOwner: string;
    segments: [number, number][];
    indexMap: [number, number][];
    /** The simulator's defects (`stale-map`, src/probe.ts). Default none. */
    probe?: Probe;
  }): Promise<{ truncatedSegments: number; droppedIndexSegments: number }> {
    const { store } = this;
    store.replica.requireUsable('backup');
    const owner = store.replica.mapOwner();
    if (owner !== args.owner) {
      throw new RebaseMismatchError(`maps are keyed by ${owner ?? 'nobody'}, not ${args.owner}`);
    }
    const offsetOfSeq = new Map(args.segments);
    const endSeq = Math.max(-1, ...offsetOfSeq.keys());
    const kept: LogSegmentEntry[] = [];
    const truncated: LogSegmentEntry[] = [];
    for (const entry of store.logSegments()) {
      if (offsetOfSeq.has(entry.seq)) kept.push(entry);
      else if (entry.seq > endSeq) truncated.push(entry);
      else throw new RebaseMismatchError(`${args.newOwner} lacks log segment ${entry.seq}`);
    }
    const localToSeq = new Map(kept.map((e) => [e.offset, e.seq] as const));
    const nextSegmentMap: [number, number][] = [];
    // Keeping the old primary's keys is a simulator-only defect (the `stale-map` mutant).
    const staleMap = defective(args.probe ?? NO_PROBE, 'stale-map');
    for (const [key, local] of store.replica.segmentMapEntries()) {
      const seq = localToSeq.get(local);
      if (seq !== undefined) nextSegmentMap.push([staleMap ? key : offsetOfSeq.get(seq)!, local]);
    }
    const newIndexKey = new Map(args.indexMap);
    const nextIndexMap: [number, number][] = [];
    let droppedIndexSegments = 0;
    for (const [oldKey, local] of store.replica.indexMapEntries()) {
      const newKey = newIndexKey.get(oldKey);
      if (newKey === undefined) droppedIndexSegments++;
      else nextIndexMap.push([newKey, local]);
    }
    await store.replica.mutateAsync(async () => {
      const dropped = [...this.shippedPending.values()].map((d) => d.offset);
      this.shippedPending.clear();
      await store.replica.applyEdit({
        log: kept,
        segmentMap: nextSegmentMap,
        indexMap: nextIndexMap,
        mapOwner: args.newOwner,
        release: [...dropped, ...truncated.map((e) => e.offset)],
      });
    });
    return { truncatedSegments: truncated.length, droppedIndexSegments };
  }

  /**
   * Build-Index: indexes the records of log segment `seq` that are new since the last call — call
   * it right after `writeShippedLogSegment` of the same seq, with the same used-prefix bytes. A
   * partial seal followed by the full seal of the same segment indexes only the suffix; the next
   * segment starts at offset 0. Each record goes into L0 with a local pointer (the local segment +
   * the record's offset) and its own lsn and tombstone flag; then, as on a primary, a full L0 is
   * frozen and flushed in the background (autoCompact) or announced once with `l0Full`.
   *
   * Segments must be indexed in seq order without gaps (AssertionFailedError otherwise, nothing
   * changes). Bytes inside the announced prefix that do not parse as records continuing the lsn
   * chain raise CorruptSegmentError, and nothing of the call is indexed. Returns the number of
   * records indexed.
   */
  indexShippedLogSegment(args: { seq: number; bytes: Buffer }): number {
    const { store } = this;
    store.replica.requireUsable('backup');
    const { seq, bytes } = args;
    const at = store.replica.appliedPosition();
    const log = store.logSegments();
    const entry = log.find((e) => e.seq === seq);
    if (entry === undefined || entry.usedBytes === null || entry.usedBytes < bytes.length) {
      throw new InvalidArgumentError(
        `log segment ${seq} must be persisted (writeShippedLogSegment) before it is indexed`,
      );
    }
    const start = indexStart(log, seq, at, bytes.length);
    if (start === bytes.length) return 0;
    const parsed = parseRecords(bytes, start, bytes.length, at.lsn);
    if (parsed.endOffset !== bytes.length) {
      throw new CorruptSegmentError(
        `shipped log segment ${seq}`,
        `records stop at offset ${parsed.endOffset} of ${bytes.length} (${parsed.stop}, expected lsn ${parsed.nextLsn})`,
      );
    }
    const records = parsed.records.map((record) => ({
      key: record.key.toString('latin1'),
      entry: { pointer: entry.offset + record.offset, lsn: record.lsn, tombstone: record.value === null },
    }));
    store.replica.applyRecords(records, { seq, offset: bytes.length, lsn: parsed.nextLsn });
    return parsed.records.length;
  }
}

/** Where indexing of segment `seq` starts, given the position indexed through (seq order, no gaps). */
function indexStart(log: LogSegmentEntry[], seq: number, at: LogPosition, length: number): number {
  if (seq === at.seq) {
    assert(
      length >= at.offset,
      () => `log segment ${seq} shrank: ${length} bytes, ${at.offset} already indexed`,
    );
    return at.offset;
  }
  const previous = log.find((e) => e.seq === at.seq);
  assert(
    seq === at.seq + 1 && previous !== undefined && previous.usedBytes === at.offset,
    () =>
      `log segment ${seq} indexed out of order: indexed through segment ${at.seq} at offset ` +
      `${at.offset} of ${previous?.usedBytes ?? 'none'}`,
  );
  return 0;
}
