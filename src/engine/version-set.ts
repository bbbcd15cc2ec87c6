/**
 * The version set: the on-device levels L1..Ln (sorted, non-overlapping index segments each), the
 * log position recovery replays from (`replayFrom`) and the next compaction id — the part of the
 * manifest that says which index is current.
 *
 * Install (the edit every flush, compaction and shipped commit makes): removed segments leave the
 * source and destination levels, new ones join the destination in key order (asserted not to
 * overlap), a flush moves `replayFrom` forward, one manifest write makes it durable (awaited),
 * and only then are the segments that left (and did not come back) freed — a crash before the write keeps
 * the old version whole, after it the new one.
 */
import { assert } from '../assert.js';
import type { Device } from './device.js';
import { type BlockCache, type IndexSegmentDescriptor, IndexSegmentReader } from './index-segment-reader.js';
import type { LogPosition } from './manifest.js';
import type { IndexEntry } from './memtable.js';
import type { EntryStream } from './merge.js';
import type { SegmentAllocator } from './segment-allocator.js';

export interface LevelSegment {
  descriptor: IndexSegmentDescriptor;
  reader: IndexSegmentReader;
}

/** One level install: see the header. Offsets are local. */
export interface LevelInstall {
  srcLevel: number;
  dstLevel: number;
  added: IndexSegmentDescriptor[];
  removedOffsets: number[];
  replayFrom: LogPosition;
  /** Runs after the levels changed, right before the manifest write (a backup's map updates). */
  beforePersist?: () => void;
}

export class VersionSet {
  levels: LevelSegment[][];
  replayFrom: LogPosition;
  nextCompactionId: number;
  /**
   * Frees a segment an install replaced. The store routes it through its snapshot registry
   * (snapshot.ts): a segment a live snapshot reads is freed only once the last such snapshot ends.
   */
  releaseSegment: (offset: number) => void = (offset) => this.allocator.release(offset);

  constructor(
    private readonly device: Device,
    private readonly cache: BlockCache,
    private readonly allocator: SegmentAllocator,
    private readonly l0Bytes: number,
    private readonly growthFactor: number,
    readonly maxLevels: number,
    initial: { levels: IndexSegmentDescriptor[][]; replayFrom: LogPosition; nextCompactionId: number },
    /** Writes the manifest (Store.persistManifest): captured at the call, resolves once durable. */
    private readonly persistManifest: () => Promise<void>,
  ) {
    this.replayFrom = initial.replayFrom;
    this.nextCompactionId = initial.nextCompactionId;
    this.levels = initial.levels.map((level) => level.map((d) => this.levelSegment(d)));
    while (this.levels.length < this.maxLevels) this.levels.push([]);
  }

  levelSegment(descriptor: IndexSegmentDescriptor): LevelSegment {
    return { descriptor, reader: new IndexSegmentReader(this.device, descriptor, this.cache) };
  }

  findLevelSegment(offset: number): LevelSegment | undefined {
    return this.levels.flat().find((s) => s.descriptor.offset === offset);
  }

  /** Replaces every level; a segment already installed keeps its reader. */
  replaceLevels(levels: IndexSegmentDescriptor[][]): void {
    const installed = new Map(this.levels.flat().map((seg) => [seg.descriptor.offset, seg] as const));
    const next = levels.map((level) => level.map((d) => installed.get(d.offset) ?? this.levelSegment(d)));
    while (next.length < this.maxLevels) next.push([]);
    this.levels = next;
  }

  descriptors(): IndexSegmentDescriptor[][] {
    return this.levels.map((level) => level.map((s) => s.descriptor));
  }

  /**
   * Atomic level install (see the header), shared by flush, compaction and shipped commits. The
   * in-memory change and the manifest capture are one synchronous step; the replaced segments are
   * freed once the manifest edit is durable.
   */
  async install(edit: LevelInstall): Promise<void> {
    const { srcLevel, dstLevel, added, replayFrom } = edit;
    const removed = new Set(edit.removedOffsets);
    const addedOffsets = new Set(added.map((d) => d.offset));
    const keep = (level: LevelSegment[]): LevelSegment[] =>
      level.filter((s) => !removed.has(s.descriptor.offset));
    const reuse = new Map(this.levels.flat().map((s) => [s.descriptor.offset, s] as const));
    if (srcLevel > 0) this.levels[srcLevel - 1] = keep(this.levels[srcLevel - 1]!);
    const dst = [
      ...keep(this.levels[dstLevel - 1]!),
      ...added.map((d) => reuse.get(d.offset) ?? this.levelSegment(d)),
    ];
    sortByMinKey(dst);
    for (let i = 1; i < dst.length; i++) {
      assert(
        dst[i - 1]!.descriptor.maxKey < dst[i]!.descriptor.minKey,
        `level ${dstLevel} segments overlap after install`,
      );
    }
    this.levels[dstLevel - 1] = dst;
    if (srcLevel === 0) {
      assert(replayFrom.lsn >= this.replayFrom.lsn, 'replayFrom only moves forward');
      this.replayFrom = { ...replayFrom };
    }
    edit.beforePersist?.();
    await this.persistManifest();
    for (const offset of removed) if (!addedOffsets.has(offset)) this.releaseSegment(offset);
  }

  /** The shallowest level over its size limit, whose compaction is due; undefined when none. */
  overfullLevel(): number | undefined {
    for (let level = 1; level < this.maxLevels; level++) {
      const bytes = sum(this.levels[level - 1]!.map((s) => s.descriptor.usedBytes));
      if (bytes > this.levelMaxBytes(level)) return level;
    }
    return undefined;
  }

  levelMaxBytes(level: number): number {
    return this.l0Bytes * this.growthFactor ** level;
  }

  /** The newest entry the levels (these, or a snapshot's) hold for `key`, shallowest level first. */
  lookup(key: string, keyBytes: Buffer, levels: LevelSegment[][] = this.levels): IndexEntry | undefined {
    for (const level of levels) {
      const seg = findSegment(level, key);
      if (seg === undefined) continue;
      const entry = seg.reader.get(key, keyBytes);
      if (entry !== undefined) return entry;
    }
    return undefined;
  }

  /** One stream per non-empty level (these, or a snapshot's) over [gte, lt). */
  streams(
    gte: string | undefined,
    lt: string | undefined,
    reverse: boolean,
    levels: LevelSegment[][] = this.levels,
  ): EntryStream[] {
    const streams: EntryStream[] = [];
    for (const level of levels) {
      if (level.length > 0) streams.push(levelRange(level, gte, lt, reverse));
    }
    return streams;
  }
}

/** Sorts a level's segments by their first key. */
export function sortByMinKey(segments: LevelSegment[]): void {
  segments.sort((a, b) =>
    a.descriptor.minKey < b.descriptor.minKey ? -1 : a.descriptor.minKey > b.descriptor.minKey ? 1 : 0,
  );
}

/** The segment of a level (sorted, non-overlapping) whose range may hold `key`. */
function findSegment(level: LevelSegment[], key: string): LevelSegment | undefined {
  let lo = 0;
  let hi = level.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (level[mid]!.descriptor.maxKey < key) lo = mid + 1;
    else hi = mid;
  }
  const seg = level[lo];
  return seg !== undefined && seg.descriptor.minKey <= key ? seg : undefined;
}

function* levelRange(
  level: LevelSegment[],
  gte: string | undefined,
  lt: string | undefined,
  reverse: boolean,
): Generator<[string, IndexEntry]> {
  const order = reverse ? [...level].reverse() : level;
  for (const seg of order) yield* seg.reader.range(gte, lt, reverse);
}

export function* concatScan(segments: LevelSegment[]): Generator<[string, IndexEntry]> {
  for (const seg of segments) yield* seg.reader.scanAll();
}

export function sum(values: number[]): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}
