/**
 * L0 and the background job that empties it: flush and compaction.
 *
 * Flush: when L0 reaches l0Bytes it is frozen (a new L0 takes writes), the log tail is synced (every
 *   pointer in the frozen L0 must resolve after a crash; hook `segmentSealed`, partial), and a
 *   background job merges the frozen L0 with the overlapping L1 segments into new L1 segments.
 *   Commit installs the new levels with `replayFrom` = the first record not in the frozen L0 (the
 *   log tail, or the first record appended but not yet applied), then frees the replaced segments.
 *
 * Compaction: while some Li (1 ≤ i < maxLevels) holds more than l0Bytes·growthFactor^i bytes, Li is
 *   merged with the overlapping part of Li+1 into new Li+1 segments (newest lsn wins; tombstones are
 *   dropped when no deeper level holds data). If nothing in Li+1 overlaps, Li's segments move down
 *   unchanged (trivial move) — unless that would carry tombstones into the deepest populated level.
 *   Hooks `indexSegmentWritten` per output segment (then the ship gate is awaited: shipping
 *   back-pressure) and `compactionCommitted` per commit.
 *
 * Compaction never starves the foreground (issue 15 item 4):
 * - Bounded jobs: a due compaction (the background loop, `compactLevel(level, { bounded })` from a
 *   Compaction actor) takes ONE segment of Li — the one with the least Li+1 overlap per byte
 *   (RocksDB's kMinOverlappingRatio; ties round-robin from a compaction pointer, as LevelDB's
 *   compact_pointer_) — with the Li+1 segments it overlaps: at most about growthFactor + 1
 *   segments of work. Explicit whole-level calls
 *   (compactAll, compactLevelNow without `bounded`) still merge all of Li.
 * - Slices: a merge yields a macrotask turn every MERGE_SLICE_ENTRIES entries and after each output
 *   segment, so reads, writes and keepalives run between slices.
 * - Flush and compaction alternate (backgroundLoop): a frozen L0 is flushed before the next
 *   compaction job starts, and after a flush that leaves a level overfull one job runs before the
 *   next flush, so a steady writer cannot starve compaction.
 * - L0 back-pressure: a writer waits only while L0 is full AND the previous L0 is still frozen, and
 *   only until that flush installed (`flushed()`), never for the compactions queued after it.
 *
 * Without autoCompact a full L0 is announced once (`l0Full`) and compactions are the owner's.
 */
import { assert } from '../assert.js';
import { StoreClosedError } from '../errors.js';
import { crc32c } from './crc.js';
import type { Device } from './device.js';
import type { FailStop } from './fail-stop.js';
import type { ShipGate } from './group-commit.js';
import type { IndexSegmentWrittenEvent, StoreHooks } from './hooks.js';
import { decodeIndexMeta, IndexSegmentBuilder } from './index-segment.js';
import type { IndexSegmentDescriptor } from './index-segment-reader.js';
import type { LogPosition } from './manifest.js';
import { Memtable } from './memtable.js';
import { type EntryStream, mergeStreams } from './merge.js';
import type { SegmentAllocator } from './segment-allocator.js';
import { concatScan, type LevelSegment, type VersionSet } from './version-set.js';

/** A merge yields a turn after this many entries (and after each output segment). */
export const MERGE_SLICE_ENTRIES = 4096;

export interface CompactorDeps {
  device: Device;
  allocator: SegmentAllocator;
  hooks: StoreHooks;
  versions: VersionSet;
  failStop: FailStop;
  segmentBytes: number;
  l0Bytes: number;
  autoCompact: boolean;
  /** Writes and syncs the log tail (ValueLog.syncTail). */
  syncTail: (partialSealHook: boolean) => Promise<void>;
  /** Where replay must start to rebuild what is not in L0 (store-parts.ts: firstUnappliedPosition). */
  firstUnappliedPosition: () => LogPosition;
}

export class Compactor {
  l0: Memtable;
  /** The frozen L0, with the tail sync its flush waits for (every pointer in it must resolve). */
  frozen: { memtable: Memtable; replayFrom: LogPosition; tailSynced: Promise<void> } | undefined;
  background: Promise<void> | undefined;
  shipGate: ShipGate | undefined;
  flushCount = 0;
  compactionCount = 0;
  trivialMoveCount = 0;
  private l0FullAnnounced = false;
  /** Per level (index 0 = L1): the max key of the last segment a bounded job took from it. */
  private readonly compactPointer: (string | undefined)[] = [];
  /** Settles when the frozen L0 has been flushed (or the background job failed). */
  private frozenFlushed: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(private readonly d: CompactorDeps) {
    this.l0 = new Memtable(d.l0Bytes);
  }

  /** After writes reached L0: freeze it when full (autoCompact), or announce it (for a Flush actor). */
  afterApply(): void {
    if (this.l0.bytes < this.d.l0Bytes || this.frozen !== undefined) return;
    if (this.d.autoCompact) this.freezeL0();
    else if (!this.l0FullAnnounced) {
      this.l0FullAnnounced = true;
      this.d.hooks.emit('l0Full', { l0Bytes: this.l0.bytes, entryCount: this.l0.size });
    }
  }

  freezeL0(): void {
    assert(this.frozen === undefined, 'only one frozen L0 at a time');
    // Tail sync: every pointer in the frozen L0 must resolve on the device (and on backups). It
    // runs asynchronously; the flush installs nothing before it completed.
    const tailSynced = this.d.failStop.runAsync(() => this.d.syncTail(true));
    tailSynced.catch(() => {}); // observed by the flush
    // Records appended but not yet in L0 (group commit, replication) are replayed, not flushed.
    this.frozen = { memtable: this.l0, replayFrom: this.d.firstUnappliedPosition(), tailSynced };
    let resolve!: () => void;
    const promise = new Promise<void>((res) => {
      resolve = res;
    });
    this.frozenFlushed = { promise, resolve };
    this.l0 = new Memtable(this.d.l0Bytes);
    this.l0FullAnnounced = false;
    this.startBackground();
  }

  private startBackground(): void {
    if (this.background !== undefined) return;
    const job = this.backgroundLoop().then(
      () => {
        this.background = undefined;
      },
      (err: unknown) => {
        this.background = undefined;
        this.d.failStop.note(err);
        this.settleFrozenFlushed(); // writers waiting for the flush see the failure
      },
    );
    this.background = job;
  }

  /**
   * Settles once no frozen L0 waits for its flush (at once when none does) — what a writer held
   * back by a full L0 waits for; the compactions after the flush run without holding it.
   */
  flushed(): Promise<void> {
    if (this.frozen === undefined || this.frozenFlushed === undefined) return Promise.resolve();
    return this.frozenFlushed.promise;
  }

  private settleFrozenFlushed(): void {
    const waiting = this.frozenFlushed;
    this.frozenFlushed = undefined;
    waiting?.resolve();
  }

  /**
   * Flushes and bounded compaction jobs, alternating: after a flush that leaves a level overfull,
   * one bounded job runs before the next flush even when L0 froze again meanwhile. Without that, a
   * steady writer refills L0 during every flush and compaction never runs: L1 grows past its
   * limit, and every flush (which merges L0 with all of L1 it overlaps) rewrites more of it — a
   * 120 000-put load once wrote 780 MiB of index instead of 53. One job (a segment) per flush (an
   * L0) keeps every level at its limit, and writers wait at most one job longer for a flush.
   */
  private async backgroundLoop(): Promise<void> {
    let compactionOwed = false;
    for (;;) {
      if (this.frozen !== undefined && !compactionOwed) {
        await this.flushFrozen();
        compactionOwed = this.d.autoCompact && this.d.versions.overfullLevel() !== undefined;
        continue;
      }
      compactionOwed = false;
      // Without autoCompact, compactions are the owner's decision (a Compaction actor).
      const level = this.d.autoCompact ? this.d.versions.overfullLevel() : undefined;
      if (level === undefined) {
        if (this.frozen !== undefined) continue;
        return;
      }
      await this.compactLevel(level, { bounded: true });
    }
  }

  async drainBackground(): Promise<void> {
    while (this.background !== undefined) await this.background;
  }

  /** Runs `job` as the only background job, after the current one; its failure fail-stops. */
  async runExclusive(job: () => Promise<void>): Promise<void> {
    await this.drainBackground();
    this.d.failStop.check();
    const run = (async () => {
      try {
        await job();
      } catch (err) {
        this.d.failStop.note(err);
        throw err;
      }
    })();
    const finished = (): void => {
      this.background = undefined;
      if (this.frozen === undefined || this.d.failStop.closed) this.settleFrozenFlushed();
      // An L0 frozen while the exclusive job ran still needs its flush.
      if (!this.d.failStop.closed && this.frozen !== undefined) this.startBackground();
    };
    this.background = run.then(finished, finished);
    await run;
  }

  private async flushFrozen(): Promise<void> {
    const frozen = this.frozen!;
    await frozen.tailSynced;
    const first = frozen.memtable.range(undefined, undefined, false).next();
    const last = frozen.memtable.range(undefined, undefined, true).next();
    const overlapping =
      first.done || last.done
        ? []
        : this.d.versions.levels[0]!.filter(
            (s) => s.descriptor.maxKey >= first.value[0] && s.descriptor.minKey <= last.value[0],
          );
    const input = frozen.memtable.range(undefined, undefined, false);
    // The frozen L0 leaves in the same synchronous step as its records join L1 (before the
    // install's manifest edit is awaited): in between, a read would see each record twice — in
    // the frozen L0 and in L1, with one lsn (found by the simulator, seed 799926141: a scan's
    // merge assertion on a Build-Index backup once device syncs became asynchronous).
    await this.mergeInto(0, [], input, overlapping, frozen.replayFrom, () => {
      assert(this.frozen === frozen, 'the frozen L0 being flushed is the frozen L0');
      this.frozen = undefined;
      this.settleFrozenFlushed();
    });
    assert(this.frozen !== frozen, 'a flushed L0 is not frozen any more');
    this.flushCount++;
  }

  /**
   * Merges Li into Li+1: all of Li, or with `bounded` one segment of it (the next after the level's
   * compaction pointer, wrapping around).
   */
  async compactLevel(srcLevel: number, options: { bounded?: boolean } = {}): Promise<void> {
    const { versions } = this.d;
    const level = versions.levels[srcLevel - 1]!;
    if (level.length === 0) return;
    const src = options.bounded === true ? [this.pickBounded(srcLevel, level)] : level;
    const minKey = src[0]!.descriptor.minKey;
    const maxKey = src[src.length - 1]!.descriptor.maxKey;
    const overlapping = versions.levels[srcLevel]!.filter(
      (s) => s.descriptor.maxKey >= minKey && s.descriptor.minKey <= maxKey,
    );
    // A move into the deepest populated level must not carry tombstones there: nothing below could
    // ever drop them. Such a move is rewritten instead (the merge drops them).
    const carriesTombstones =
      src.some((s) => s.descriptor.tombstoneCount > 0) &&
      versions.levels.slice(srcLevel + 1).every((level) => level.length === 0);
    if (overlapping.length === 0 && !carriesTombstones) {
      await this.trivialMove(srcLevel, src);
      return;
    }
    await this.mergeInto(srcLevel, src, concatScan(src), overlapping, versions.replayFrom);
    this.compactionCount++;
  }

  /**
   * The segment of Li a bounded job takes: the one whose overlap with Li+1 is smallest relative to
   * its own size (RocksDB's kMinOverlappingRatio: the least rewriting per byte moved down); ties go
   * to the first after the level's compaction pointer (round-robin, as LevelDB's compact_pointer_).
   */
  private pickBounded(srcLevel: number, level: LevelSegment[]): LevelSegment {
    const next = this.d.versions.levels[srcLevel]!;
    const pointer = this.compactPointer[srcLevel - 1];
    const start =
      pointer === undefined
        ? 0
        : Math.max(
            0,
            level.findIndex((s) => s.descriptor.minKey > pointer),
          );
    let picked = level[start]!;
    let best = Number.POSITIVE_INFINITY;
    for (let k = 0; k < level.length; k++) {
      const s = level[(start + k) % level.length]!;
      const { minKey, maxKey, usedBytes } = s.descriptor;
      let overlap = 0;
      for (const t of next)
        if (t.descriptor.maxKey >= minKey && t.descriptor.minKey <= maxKey) overlap += t.descriptor.usedBytes;
      const ratio = overlap / Math.max(1, usedBytes);
      if (ratio < best) {
        best = ratio;
        picked = s;
      }
    }
    this.compactPointer[srcLevel - 1] = picked.descriptor.maxKey;
    return picked;
  }

  private async trivialMove(srcLevel: number, src: LevelSegment[]): Promise<void> {
    const { versions } = this.d;
    const moved = src.map((s) => s.descriptor);
    const id = versions.nextCompactionId++;
    await versions.install({
      srcLevel,
      dstLevel: srcLevel + 1,
      added: moved,
      removedOffsets: moved.map((d) => d.offset),
      replayFrom: versions.replayFrom,
    });
    this.trivialMoveCount++;
    this.d.hooks.emit('compactionCommitted', {
      compactionId: id,
      srcLevel,
      dstLevel: srcLevel + 1,
      newSegments: moved.map((d) => d.offset),
      removedSegments: moved.map((d) => d.offset),
      trivialMove: true,
      replayFrom: { ...versions.replayFrom },
    });
  }

  /**
   * Merges `input` (from srcLevel; 0 = the frozen L0) with the overlapping dst segments into new
   * dst segments, ships-ready: each output segment is written, then announced; the commit installs
   * them atomically.
   */
  private async mergeInto(
    srcLevel: number,
    /** The Li segments merged (they leave Li at the install); none for a flush. */
    srcSegments: LevelSegment[],
    input: EntryStream,
    overlapping: LevelSegment[],
    replayFrom: LogPosition,
    /** Runs in the install's synchronous step, as the new levels become visible. */
    onInstall?: () => void,
  ): Promise<void> {
    const { versions, allocator } = this.d;
    const dstLevel = srcLevel + 1;
    const compactionId = versions.nextCompactionId++;
    const dropTombstones = versions.levels.slice(dstLevel).every((level) => level.length === 0);
    const merged = mergeStreams([input, concatScan(overlapping)], false);
    const outputs: IndexSegmentDescriptor[] = [];
    let builder = new IndexSegmentBuilder(this.d.segmentBytes);
    let sliceEntries = 0;
    try {
      for (const [key, entry] of merged) {
        if (++sliceEntries === MERGE_SLICE_ENTRIES) {
          sliceEntries = 0;
          await yieldTurn(); // a bounded slice: let reads, writes and keepalives run
          if (this.d.failStop.closed) throw new StoreClosedError();
        }
        if (entry.tombstone && dropTombstones) continue;
        if (!builder.add(key, entry)) {
          await this.finishSegment(builder, compactionId, dstLevel, outputs);
          builder = new IndexSegmentBuilder(this.d.segmentBytes);
          assert(builder.add(key, entry), 'an index entry must fit an empty segment');
        }
      }
      if (!builder.isEmpty) await this.finishSegment(builder, compactionId, dstLevel, outputs);
      if (this.d.failStop.closed) throw new StoreClosedError();
    } catch (err) {
      for (const d of outputs) allocator.release(d.offset);
      throw err;
    }
    // The outputs are durable before the manifest edit that names them.
    await this.d.device.sync();
    const removed = [...srcSegments, ...overlapping].map((s) => s.descriptor.offset);
    await versions.install({
      srcLevel,
      dstLevel,
      added: outputs,
      removedOffsets: removed,
      replayFrom,
      ...(onInstall === undefined ? {} : { beforePersist: onInstall }),
    });
    this.d.hooks.emit('compactionCommitted', {
      compactionId,
      srcLevel,
      dstLevel,
      newSegments: outputs.map((d) => d.offset),
      removedSegments: removed,
      trivialMove: false,
      replayFrom: { ...replayFrom },
    });
  }

  /** Writes one output segment, announces it, waits for the ship gate, then yields a turn. */
  private async finishSegment(
    builder: IndexSegmentBuilder,
    compactionId: number,
    dstLevel: number,
    outputs: IndexSegmentDescriptor[],
  ): Promise<void> {
    const entryCount = builder.count;
    const bytes = builder.finish();
    // The trailer, not every block again: the builder wrote the blocks and their CRCs a moment ago
    // (a full re-decode of each output was a fifth of a flush's CPU). Reads and shipping check the
    // block CRCs; integrity scans (store-integrity.ts) verify whole segments.
    const meta = decodeIndexMeta(bytes, 0, bytes.length, 'new index segment');
    assert(meta.entryCount === entryCount, 'a finished index segment holds what was added');
    const offset = this.d.allocator.allocate();
    this.d.device.write(offset, bytes, 'index');
    const descriptor = {
      offset,
      usedBytes: bytes.length,
      entryCount: meta.entryCount,
      tombstoneCount: meta.tombstoneCount,
      minKey: meta.minKey,
      maxKey: meta.maxKey,
    };
    outputs.push(descriptor);
    const written: IndexSegmentWrittenEvent = {
      compactionId,
      level: dstLevel,
      ordinal: outputs.length - 1,
      segmentOffset: offset,
      usedBytes: bytes.length,
      crc32c: crc32c(bytes),
      descriptor: { ...descriptor },
      bytes,
    };
    this.d.hooks.emit('indexSegmentWritten', written);
    // Shipping back-pressure: the next segment waits until the gate lets this one go.
    if (this.shipGate !== undefined) await this.shipGate(written);
    // Let writers and readers run between output segments.
    await yieldTurn();
  }
}

/** One macrotask turn (setImmediate): the I/O callbacks and timers due run before the merge goes on. */
function yieldTurn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}
