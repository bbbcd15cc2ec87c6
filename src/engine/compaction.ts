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
 *   back-pressure) and `compactionCommitted` per commit. One job runs at a time; writers wait
 *   only if L0 fills again while the previous L0 is still being flushed.
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
import { IndexSegmentBuilder, verifyIndexSegment } from './index-segment.js';
import type { IndexSegmentDescriptor } from './index-segment-reader.js';
import type { LogPosition } from './manifest.js';
import { Memtable } from './memtable.js';
import { type EntryStream, mergeStreams } from './merge.js';
import type { SegmentAllocator } from './segment-allocator.js';
import { concatScan, type LevelSegment, type VersionSet } from './version-set.js';

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
  /** Where replay must start to rebuild what is not in L0 (Store.firstUnappliedPosition). */
  firstUnappliedPosition: () => LogPosition;
}

export class Compactor {
  l0 = new Memtable();
  /** The frozen L0, with the tail sync its flush waits for (every pointer in it must resolve). */
  frozen: { memtable: Memtable; replayFrom: LogPosition; tailSynced: Promise<void> } | undefined;
  background: Promise<void> | undefined;
  shipGate: ShipGate | undefined;
  flushCount = 0;
  compactionCount = 0;
  trivialMoveCount = 0;
  private l0FullAnnounced = false;

  constructor(private readonly d: CompactorDeps) {}

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
    this.l0 = new Memtable();
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
      },
    );
    this.background = job;
  }

  private async backgroundLoop(): Promise<void> {
    for (;;) {
      if (this.frozen !== undefined) {
        await this.flushFrozen();
        continue;
      }
      // Without autoCompact, compactions are the owner's decision (a Compaction actor).
      if (!this.d.autoCompact) return;
      const level = this.d.versions.overfullLevel();
      if (level === undefined) return;
      await this.compactLevel(level);
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
    await this.mergeInto(0, input, overlapping, frozen.replayFrom, () => {
      assert(this.frozen === frozen, 'the frozen L0 being flushed is the frozen L0');
      this.frozen = undefined;
    });
    assert(this.frozen !== frozen, 'a flushed L0 is not frozen any more');
    this.flushCount++;
  }

  async compactLevel(srcLevel: number): Promise<void> {
    const { versions } = this.d;
    const src = versions.levels[srcLevel - 1]!;
    if (src.length === 0) return;
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
    await this.mergeInto(srcLevel, concatScan(src), overlapping, versions.replayFrom);
    this.compactionCount++;
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
    input: EntryStream,
    overlapping: LevelSegment[],
    replayFrom: LogPosition,
    /** Runs in the install's synchronous step, as the new levels become visible. */
    onInstall?: () => void,
  ): Promise<void> {
    const { versions, allocator } = this.d;
    const dstLevel = srcLevel + 1;
    const compactionId = versions.nextCompactionId++;
    const srcSegments = srcLevel === 0 ? [] : versions.levels[srcLevel - 1]!;
    const dropTombstones = versions.levels.slice(dstLevel).every((level) => level.length === 0);
    const merged = mergeStreams([input, concatScan(overlapping)], false);
    const outputs: IndexSegmentDescriptor[] = [];
    let builder = new IndexSegmentBuilder(this.d.segmentBytes);
    try {
      for (const [key, entry] of merged) {
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
    const bytes = builder.finish();
    const meta = verifyIndexSegment(bytes, 'new index segment');
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
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
