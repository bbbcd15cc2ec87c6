/**
 * The generic operations replication builds on (`Store.replica`): src/replication makes the backup
 * side (shipped log and index segments, segment and index maps, rebase, Build-Index indexing) and
 * promotion out of them — raw segment allocation, writes and reads, device syncs, version edits,
 * records applied to L0, a last manifest and the end of the instance — and reads the store's maps,
 * positions and verified segment bytes for shipping through them. Nothing here knows replication.
 */
import type { Compactor } from './compaction.js';
import type { Device } from './device.js';
import { type FailStop, NotWritableError } from './fail-stop.js';
import type { LogPosition, ManifestData, StoreRole } from './manifest.js';
import type { IndexEntry } from './memtable.js';
import type { SegmentAllocator } from './segment-allocator.js';
import type { StoreEdits } from './store-edits.js';
import { type IntegrityDeps, readIndexSegmentVerified, readLogSegmentVerified } from './store-integrity.js';
import type { StoreEdit } from './store-types.js';
import type { ValueLog } from './value-log.js';
import type { VersionSet } from './version-set.js';

export interface ReplicaOps {
  /** The id of the last compaction (or flush) this store committed or installed; 0 when none. */
  lastCompactionId(): number;
  /** The manifest's replayFrom: where recovery (or a promotion) starts replaying the log into L0. */
  replayPosition(): LogPosition;
  /** The node whose offsets key the segment and index maps; undefined while none does. */
  mapOwner(): string | undefined;
  /** The segment map the manifest persists (another node's log segment offset → local offset). */
  segmentMapEntries(): [number, number][];
  /** The index map the manifest persists (another node's index segment offset → local offset). */
  indexMapEntries(): [number, number][];
  /**
   * Backup: the log position right after the last record applied to L0 by `applyRecords` or by
   * recovery's replay (`rebuildL0`).
   */
  appliedPosition(): LogPosition;
  /** Primary: the active segment's sequence and the bytes of valid records it holds. */
  activeTail(): { seq: number; usedBytes: number } | undefined;
  /** Throws unless the store is usable and, given `role`, has that role (NotWritableError). */
  requireUsable(role?: StoreRole): void;
  /** Runs a mutation under fail-stop: its first error makes the store fail-stop, then propagates. */
  mutate<T>(mutation: () => T): T;
  /** `mutate` for an asynchronous mutation (one that awaits a sync or a manifest commit). */
  mutateAsync<T>(mutation: () => Promise<T>): Promise<T>;
  allocateSegment(): number;
  releaseSegment(offset: number): void;
  /** Writes raw bytes at a device offset (a segment this store allocated). */
  writeRaw(offset: number, bytes: Buffer, kind: 'log' | 'index'): void;
  /** Syncs the device (shared with every other sync due on it); resolves once durable. */
  syncDevice(): Promise<void>;
  readRaw(offset: number, length: number, kind: 'log' | 'index'): Buffer;
  /**
   * Reads the used bytes of a log segment of this store (for shipping), verified at the source: a
   * sealed segment whose records do not check out raises CorruptSegmentError and the store
   * fail-stops (its node restarts and another replica serves: PROTOCOL §8, bit rot).
   */
  readLogSegment(seq: number): Buffer;
  /** Reads the bytes of an index segment of this store (for shipping), verified as readLogSegment. */
  readIndexSegment(offset: number): Buffer;
  /** Waits until no background job (flush, compaction) runs. */
  drain(): Promise<void>;
  /**
   * Applies a version edit under fail-stop: the named fields change (a level install first, see
   * VersionSet.install), one manifest write makes them durable, then `release` is freed in order.
   * The in-memory change and the manifest capture are one synchronous step; resolves once durable.
   */
  applyEdit(edit: StoreEdit): Promise<void>;
  /**
   * Backup: inserts records of the persisted log into L0 under fail-stop; `position` is right after
   * the last of them. A full L0 then freezes (autoCompact) or is announced, as on a primary.
   */
  applyRecords(records: { key: string; entry: IndexEntry }[], position: LogPosition): void;
  /**
   * Writes one manifest that differs from this instance's state by `overrides` (a role change, a
   * reset) and ends the instance; the caller reopens the device.
   */
  rewriteManifestAndAbandon(overrides: Partial<ManifestData>): Promise<void>;
}

/**
 * Backup (Build-Index): the log position right after the last record indexed into L0 — every
 * record before it is in L0, the frozen L0 or a level. It plays the role a primary's active tail
 * plays for `firstUnappliedPosition`. In memory only: recovery derives it (recoverBackupL0).
 */
export interface IndexedPosition {
  position: LogPosition;
}

export interface StoreReplicaDeps {
  role: StoreRole;
  device: Device;
  allocator: SegmentAllocator;
  failStop: FailStop;
  valueLog: ValueLog;
  versions: VersionSet;
  compactor: Compactor;
  edits: StoreEdits;
  integrity: IntegrityDeps;
  indexed: IndexedPosition;
  /** Ends the instance without the closing flush: its manifest already says what the device holds. */
  abandon: () => Promise<void>;
}

/** ReplicaOps over a store's parts (store-parts.ts builds it). */
export class StoreReplica implements ReplicaOps {
  constructor(private readonly d: StoreReplicaDeps) {}

  lastCompactionId(): number {
    return this.d.versions.nextCompactionId - 1;
  }

  replayPosition(): LogPosition {
    return { ...this.d.versions.replayFrom };
  }

  mapOwner(): string | undefined {
    return this.d.edits.owner;
  }

  segmentMapEntries(): [number, number][] {
    return [...this.d.edits.segmentMap];
  }

  indexMapEntries(): [number, number][] {
    return [...this.d.edits.indexMap];
  }

  appliedPosition(): LogPosition {
    return { ...this.d.indexed.position };
  }

  activeTail(): { seq: number; usedBytes: number } | undefined {
    const active = this.d.valueLog.active;
    return active === undefined ? undefined : { seq: active.seq, usedBytes: active.usedBytes };
  }

  requireUsable(role?: StoreRole): void {
    this.d.failStop.check();
    if (role !== undefined && this.d.role !== role) throw new NotWritableError(this.d.role);
  }

  mutate<T>(mutation: () => T): T {
    return this.d.failStop.run(mutation);
  }

  mutateAsync<T>(mutation: () => Promise<T>): Promise<T> {
    return this.d.failStop.runAsync(mutation);
  }

  allocateSegment(): number {
    return this.d.allocator.allocate();
  }

  releaseSegment(offset: number): void {
    this.d.allocator.release(offset);
  }

  writeRaw(offset: number, bytes: Buffer, kind: 'log' | 'index'): void {
    this.d.device.write(offset, bytes, kind);
  }

  syncDevice(): Promise<void> {
    return this.d.device.sync();
  }

  readRaw(offset: number, length: number, kind: 'log' | 'index'): Buffer {
    return this.d.device.read(offset, length, kind);
  }

  readLogSegment(seq: number): Buffer {
    this.d.failStop.check();
    return readLogSegmentVerified(this.d.integrity, seq);
  }

  readIndexSegment(offset: number): Buffer {
    this.d.failStop.check();
    return readIndexSegmentVerified(this.d.integrity, offset);
  }

  drain(): Promise<void> {
    return this.d.compactor.drainBackground();
  }

  applyEdit(edit: StoreEdit): Promise<void> {
    return this.d.edits.applyEdit(edit);
  }

  applyRecords(records: { key: string; entry: IndexEntry }[], position: LogPosition): void {
    const { failStop, compactor, valueLog, indexed } = this.d;
    failStop.run(() => {
      for (const r of records) compactor.l0.insert(r.key, r.entry);
      indexed.position = { ...position };
      valueLog.nextLsn = position.lsn;
      compactor.afterApply();
    });
  }

  async rewriteManifestAndAbandon(overrides: Partial<ManifestData>): Promise<void> {
    await this.d.failStop.runAsync(() => this.d.edits.persist(overrides));
    await this.d.abandon();
  }
}
