import {
  CorruptSegmentError,
  InvalidArgumentError,
  KeyTooLargeError,
  OutcomeUnknownError,
  StoreClosedError,
} from '../errors.js';
import { Compactor } from './compaction.js';
import { type CursorOptions, StoreCursor } from './cursor.js';
import { cloneIoStats, type Device, type IoStats } from './device.js';
import { FailStop, NotWritableError } from './fail-stop.js';
import { FileDevice } from './file-device.js';
import { type CommitGate, GroupCommit, type ShipGate } from './group-commit.js';
import { StoreHooks } from './hooks.js';
import { verifyIndexSegment } from './index-segment.js';
import { createBlockCache, type IndexSegmentDescriptor } from './index-segment-reader.js';
import type { LogPosition, LogSegmentEntry, ManifestData, StoreRole } from './manifest.js';
import { ManifestLog } from './manifest-log.js';
import type { IndexEntry } from './memtable.js';
import {
  type Bytes,
  type ResolvedOptions,
  resolveOptions,
  type StoreOptions,
  type SyncPolicy,
  toKey,
} from './options.js';
import { type RecoveryDeps, type RecoveryReport, recoverBackupL0, recoverPrimary } from './recovery.js';
import { SegmentAllocator } from './segment-allocator.js';
import { SnapshotRegistry, type StoreSnapshot } from './snapshot.js';
import { ValueLog } from './value-log.js';
import { type LevelInstall, sum, VersionSet } from './version-set.js';
import { appendBatch, type BatchOperation, describeKey, prepareBatch } from './write-batch.js';

export {
  type Cursor,
  type CursorEntry,
  type CursorOptions,
  type KeyRange,
  keyRange,
  StoreCursor,
} from './cursor.js';
export { NotWritableError, StoreFailedError } from './fail-stop.js';
export type { CommitGate, CommitTail, ShipGate } from './group-commit.js';
export type { Bytes, StoreOptions, SyncPolicy } from './options.js';
export type { RecoveryReport } from './recovery.js';
export type { StoreSnapshot } from './snapshot.js';
export type { BatchOperation } from './write-batch.js';

export interface ScanOptions {
  gte?: Bytes;
  lt?: Bytes;
  limit?: number;
  reverse?: boolean;
}

export interface ReadOptions {
  /** Read as of this snapshot (Store.snapshot()). */
  snapshot?: StoreSnapshot;
}

/** Keys deleted per batch by clear(): small enough to fit any segment size's batch. */
const CLEAR_BATCH_KEYS = 32;

export interface KeyValue {
  key: Buffer;
  value: Buffer;
}

export interface LevelStats {
  level: number;
  segmentCount: number;
  bytes: number;
  entryCount: number;
  maxBytes: number;
}

export interface StoreStats {
  role: StoreRole;
  nextLsn: number;
  l0: { entryCount: number; bytes: number; frozenEntryCount: number };
  levels: LevelStats[];
  logSegmentCount: number;
  segmentsInUse: number;
  flushCount: number;
  compactionCount: number;
  trivialMoveCount: number;
  /** Key + value bytes accepted from users. */
  userBytes: number;
  /** Device bytes written (all categories) ÷ userBytes. */
  writeAmplification: number;
  io: IoStats;
  recovery: RecoveryReport;
}

/** A version edit (Store.applyEdit): each field given replaces the store's. */
export interface StoreEdit {
  log?: LogSegmentEntry[];
  segmentMap?: [number, number][];
  indexMap?: [number, number][];
  mapOwner?: string;
  /** Every level at once (sorted, non-overlapping); installed segments keep their readers. */
  levels?: IndexSegmentDescriptor[][];
  /** One level install (VersionSet.install); offsets are local. */
  install?: Omit<LevelInstall, 'beforePersist'>;
  replayFrom?: LogPosition;
  nextCompactionId?: number;
  /** Segments freed after the manifest write, in this order. */
  release?: number[];
}

export class Store {
  readonly hooks = new StoreHooks();
  readonly segmentBytes: number;
  readonly l0Bytes: number;
  readonly growthFactor: number;
  readonly maxLevels: number;
  readonly syncPolicy: SyncPolicy;
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
  readonly role: StoreRole;

  private readonly device: Device;
  private readonly manifestLog: ManifestLog;
  private readonly ownsDevice: boolean;
  private readonly options: ResolvedOptions;
  private readonly allocator: SegmentAllocator;
  private readonly failStop = new FailStop(this.hooks);
  private readonly valueLog: ValueLog;
  private readonly versions: VersionSet;
  private readonly compactor: Compactor;
  private readonly commits: GroupCommit;
  /** Live snapshots and the segment frees they defer (snapshot.ts). */
  private readonly snapshots = new SnapshotRegistry((offset) => this.allocator.release(offset));

  private readonly segmentMap: Map<number, number>;
  private readonly indexMap: Map<number, number>;
  /** The node whose offsets key segmentMap and indexMap (see ManifestData.mapOwner). */
  private owner: string | undefined;
  /**
   * Backup (Build-Index): the log position right after the last record indexed into L0 — every
   * record before it is in L0, the frozen L0 or a level. It plays the role a primary's active tail
   * plays for `firstUnappliedPosition`. In memory only: recovery derives it (recoverBackupL0).
   */
  private indexedPosition: LogPosition;
  private closing: Promise<void> | undefined;
  /** Writes waiting to append (makeRoom): close() lets them append first. */
  private readonly makingRoom = new Set<Promise<void>>();
  private userBytes = 0;
  private readonly recovery: RecoveryReport = {
    replayedRecordCount: 0,
    replayedBytes: 0,
    corruptSegments: [],
  };

  private constructor(device: Device, ownsDevice: boolean, options: StoreOptions, manifestLog: ManifestLog) {
    const manifest = manifestLog.data;
    this.device = device;
    this.manifestLog = manifestLog;
    this.ownsDevice = ownsDevice;
    const o = resolveOptions(options, manifest);
    this.options = o;
    this.segmentBytes = o.segmentBytes;
    this.l0Bytes = o.l0Bytes;
    this.growthFactor = o.growthFactor;
    this.maxLevels = o.maxLevels;
    this.syncPolicy = o.syncPolicy;
    this.maxKeyBytes = o.maxKeyBytes;
    this.maxValueBytes = o.maxValueBytes;
    this.role = o.role;
    const cache = createBlockCache(o.blockCacheBytes);
    this.segmentMap = new Map(manifest?.segmentMap ?? []);
    this.indexMap = new Map(manifest?.indexMap ?? []);
    this.owner = manifest?.mapOwner;
    const log = manifest?.log.map((e) => ({ ...e })) ?? [];
    const inUse = [...log.map((e) => e.offset), ...(manifest?.levels.flat().map((d) => d.offset) ?? [])];
    this.allocator = new SegmentAllocator(
      this.segmentBytes,
      manifest?.allocatedSegmentCount ?? 0,
      inUse,
      o.reservedSegments,
    );
    const persist = (): Promise<void> => this.persistManifest();
    this.valueLog = new ValueLog(device, this.allocator, this.hooks, this.segmentBytes, log, persist);
    this.versions = new VersionSet(
      device,
      cache,
      this.allocator,
      o.l0Bytes,
      o.growthFactor,
      o.maxLevels,
      {
        levels: manifest?.levels ?? [],
        replayFrom: manifest === undefined ? { seq: 0, offset: 0, lsn: 1 } : { ...manifest.replayFrom },
        nextCompactionId: manifest?.nextCompactionId ?? 1,
      },
      persist,
    );
    this.compactor = new Compactor({
      device,
      allocator: this.allocator,
      hooks: this.hooks,
      versions: this.versions,
      failStop: this.failStop,
      segmentBytes: this.segmentBytes,
      l0Bytes: o.l0Bytes,
      autoCompact: o.autoCompact,
      syncTail: (partial) => this.valueLog.syncTail(partial),
      firstUnappliedPosition: () => this.firstUnappliedPosition(),
    });
    this.commits = new GroupCommit(this.syncPolicy, this.failStop, this.valueLog, (batch) => {
      for (const p of batch) this.compactor.l0.insert(p.key, p.entry);
      this.compactor.afterApply();
    });
    this.versions.releaseSegment = (offset) => this.snapshots.release(offset);
    this.valueLog.nextLsn = this.versions.replayFrom.lsn;
    this.indexedPosition = { ...this.versions.replayFrom };
  }

  /** Opens (or creates) a store; recovers from the manifest and the log when one exists. */
  static async open(options: StoreOptions): Promise<Store> {
    if ((options.dir === undefined) === (options.device === undefined)) {
      throw new InvalidArgumentError('Store.open needs exactly one of `dir` and `device`');
    }
    const device = options.device ?? FileDevice.open(options.dir!);
    try {
      // A device reused by a new incarnation may still be landing what the last one queued.
      await device.settled();
      const manifestLog = ManifestLog.open(device, { rotateBytes: options.manifestRotateBytes });
      const store = new Store(device, options.device === undefined, options, manifestLog);
      await store.recover(manifestLog.exists);
      return store;
    } catch (err) {
      if (options.device === undefined) await device.close();
      throw err;
    }
  }

  private async recover(existing: boolean): Promise<void> {
    const deps: RecoveryDeps = {
      device: this.device,
      segmentBytes: this.segmentBytes,
      valueLog: this.valueLog,
      compactor: this.compactor,
      replayFrom: this.versions.replayFrom,
      report: this.recovery,
    };
    if (this.role === 'primary') await recoverPrimary(deps, existing);
    else if (!existing) await this.persistManifest();
    else if (this.options.rebuildL0) {
      this.indexedPosition = recoverBackupL0(deps);
      this.compactor.afterApply();
    }
  }

  // ───────────────────────────── public API ─────────────────────────────

  async put(key: Bytes, value: Bytes): Promise<void> {
    return this.write(key, value);
  }

  async delete(key: Bytes): Promise<void> {
    return this.write(key, null);
  }

  /** The value of `key` (as of `options.snapshot` when given), or undefined. */
  async get(key: Bytes, options: ReadOptions = {}): Promise<Buffer | undefined> {
    return this.getNow(key, options);
  }

  /** `get`, synchronously (the engine reads without waiting: abstract-level's getSync). */
  getSync(key: Bytes, options: ReadOptions = {}): Buffer | undefined {
    return this.getNow(key, options);
  }

  /** Values of `keys` in order (undefined where absent), read from one snapshot. */
  async getMany(keys: readonly Bytes[], options: ReadOptions = {}): Promise<(Buffer | undefined)[]> {
    const snapshot = options.snapshot ?? this.snapshot();
    try {
      return keys.map((key) => this.getNow(key, { snapshot }));
    } finally {
      if (options.snapshot === undefined) snapshot.release();
    }
  }

  /** Whether `key` holds a value (as of `options.snapshot`); reads no value bytes. */
  async has(key: Bytes, options: ReadOptions = {}): Promise<boolean> {
    const entry = this.entryOf(key, options);
    return entry !== undefined && !entry.tombstone;
  }

  private getNow(key: Bytes, options: ReadOptions): Buffer | undefined {
    const k = toKey(key);
    const entry = this.entryOf(k, options);
    if (entry === undefined || entry.tombstone) return undefined;
    return this.valueLog.readValue(entry, k);
  }

  private entryOf(key: Bytes, options: ReadOptions): IndexEntry | undefined {
    this.checkUsable();
    const k = toKey(key);
    if (k.length > this.maxKeyBytes) throw new KeyTooLargeError(k.length, this.maxKeyBytes);
    if (options.snapshot !== undefined) return options.snapshot.lookup(k.toString('latin1'), k);
    return this.lookup(k.toString('latin1'), k);
  }

  /**
   * A consistent read view as of now (snapshot.ts); the caller releases it. Until then compaction
   * keeps the index segments it reads.
   */
  snapshot(): StoreSnapshot {
    this.checkUsable();
    const { l0, frozen } = this.compactor;
    return this.snapshots.take({ l0, frozen: frozen?.memtable, versions: this.versions });
  }

  /** A streaming cursor (cursor.ts) over `options.snapshot`, or over a snapshot of its own. */
  iterator(options: CursorOptions = {}): StoreCursor {
    const own = options.snapshot === undefined;
    const snapshot = options.snapshot ?? this.snapshot();
    try {
      return new StoreCursor(snapshot, own, (entry, key) => this.valueLog.readValue(entry, key), options);
    } catch (err) {
      if (own) snapshot.release();
      throw err;
    }
  }

  async scan(options: ScanOptions = {}): Promise<KeyValue[]> {
    this.checkUsable();
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    if (!(limit >= 0)) throw new InvalidArgumentError('scan limit must be >= 0');
    const cursor = this.iterator({ ...options, limit: limit === Number.POSITIVE_INFINITY ? -1 : limit });
    try {
      return cursor.all();
    } finally {
      cursor.close();
    }
  }

  /**
   * Deletes every key in the range (all keys without bounds): the keys a snapshot holds are deleted
   * in batches, each atomic (write-batch.ts); the clear as a whole is not one batch.
   */
  async clear(options: Omit<CursorOptions, 'values'> = {}): Promise<void> {
    const cursor = this.iterator({ ...options, values: false });
    try {
      for (;;) {
        const keys = cursor.nextv(CLEAR_BATCH_KEYS);
        if (keys.length === 0) return;
        await this.batch(keys.map((e) => ({ type: 'del', key: e.key })));
      }
    } finally {
      cursor.close();
    }
  }

  private lookup(key: string, keyBytes: Buffer): IndexEntry | undefined {
    const hit = this.compactor.l0.get(key) ?? this.compactor.frozen?.memtable.get(key);
    if (hit !== undefined) return hit;
    return this.versions.lookup(key, keyBytes);
  }

  /** The error the store fail-stopped on, or undefined while it is usable. */
  get failure(): unknown {
    return this.failStop.error;
  }

  /**
   * Reads back every persisted segment and checks it: each sealed log segment must hold CRC-valid,
   * lsn-continuous records up to the length the manifest records for it, each index segment of
   * the levels must pass verifyIndexSegment (block CRCs, metadata CRC, key order). Returns the
   * first corruption found, or undefined. Reads only; the store stays usable either way (the
   * caller decides: `scrub` fail-stops, a node opening a backup store resets it).
   */
  verifyPersisted(): CorruptSegmentError | undefined {
    this.checkUsable();
    const corruptLog = this.valueLog.verify();
    if (corruptLog !== undefined) return corruptLog;
    for (const level of this.versions.levels) {
      for (const segment of level) {
        const { offset, usedBytes } = segment.descriptor;
        try {
          verifyIndexSegment(this.device.read(offset, usedBytes, 'index'), `index@${offset}`);
        } catch (err) {
          if (err instanceof CorruptSegmentError) return err;
          throw err;
        }
      }
    }
    return undefined;
  }

  /** Verifies every persisted segment (verifyPersisted); a corrupt one makes the store fail-stop. */
  scrub(): void {
    const corrupt = this.verifyPersisted();
    if (corrupt !== undefined)
      this.failStop.run(() => {
        throw corrupt;
      });
  }

  /**
   * The persisted segments the manifest names (sealed log segments and level index segments):
   * where each lies on the device and how many bytes of it are in use. For fault injection and
   * tools.
   */
  persistedSegments(): { kind: 'log' | 'index'; offset: number; usedBytes: number }[] {
    const out: { kind: 'log' | 'index'; offset: number; usedBytes: number }[] = [];
    for (const e of this.valueLog.log) {
      if (e.usedBytes !== null && e.usedBytes > 0)
        out.push({ kind: 'log', offset: e.offset, usedBytes: e.usedBytes });
    }
    for (const s of this.versions.levels.flat()) {
      out.push({ kind: 'index', offset: s.descriptor.offset, usedBytes: s.descriptor.usedBytes });
    }
    return out;
  }

  /** Makes every write issued so far durable (log tail written and synced). */
  async sync(): Promise<void> {
    this.checkUsable();
    this.commits.commitPending();
    this.checkUsable();
    await this.failStop.runAsync(() => this.valueLog.syncTail(false));
  }

  /** Flushes L0 to L1 and (with autoCompact) runs the compactions that follow, waiting for all of it. */
  async flush(): Promise<void> {
    this.checkUsable();
    await this.compactor.drainBackground();
    this.checkUsable();
    this.commits.commitPending();
    this.checkUsable();
    if (this.compactor.l0.size > 0) this.failStop.run(() => this.compactor.freezeL0());
    await this.compactor.drainBackground();
    this.checkUsable();
  }

  /** Flushes, then merges every level into the next until all data sits in the deepest level. */
  async compactAll(): Promise<void> {
    await this.flush();
    for (let level = 1; level < this.maxLevels; level++) {
      if (this.versions.levels[level - 1]!.length === 0) continue;
      await this.compactor.runExclusive(() => this.compactor.compactLevel(level));
    }
  }

  /** Merges level `level` (1 ≤ level < maxLevels) into the next one now. */
  async compactLevelNow(level: number): Promise<void> {
    this.checkUsable();
    if (!(Number.isInteger(level) && level >= 1 && level < this.maxLevels)) {
      throw new InvalidArgumentError(`level must be in [1, ${this.maxLevels - 1}]`);
    }
    await this.compactor.runExclusive(() => this.compactor.compactLevel(level));
  }

  /** The shallowest level over its size limit, whose compaction is due; undefined when none. */
  dueCompaction(): number | undefined {
    return this.versions.overfullLevel();
  }

  /**
   * Waits for background work, makes every write durable and releases the device. A fail-stopped
   * store just releases the device: recovery on the next open decides what survived.
   */
  async close(): Promise<void> {
    // Idempotent and ordered: a second close waits for the first.
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    if (this.failStop.closed) return;
    // Writes admitted before the close and still making room (a seal, back-pressure) append first.
    while (this.makingRoom.size > 0) await Promise.allSettled([...this.makingRoom]);
    await this.compactor.drainBackground();
    try {
      this.commits.commitPending();
      // Every group handed to the commit gate settles first: one whose gate resolved is on every
      // backup and must reach L0 (and its caller an answer that says so), never a "closed" refusal.
      await this.commits.chain;
      if (this.failStop.error === undefined && this.role === 'primary') {
        await this.failStop.runAsync(async () => {
          await this.valueLog.syncTail(false);
          await this.persistManifest();
        });
      }
    } finally {
      this.failStop.closed = true;
      if (this.ownsDevice) await this.device.close();
    }
  }

  get isClosed(): boolean {
    return this.failStop.closed;
  }

  stats(): StoreStats {
    const io = cloneIoStats(this.device.io());
    const written = io.writtenBytes.log + io.writtenBytes.index + io.writtenBytes.manifest;
    const { compactor } = this;
    return {
      role: this.role,
      nextLsn: this.valueLog.nextLsn,
      l0: {
        entryCount: compactor.l0.size,
        bytes: compactor.l0.bytes,
        frozenEntryCount: compactor.frozen?.memtable.size ?? 0,
      },
      levels: this.versions.levels.map((segments, i) => ({
        level: i + 1,
        segmentCount: segments.length,
        bytes: sum(segments.map((s) => s.descriptor.usedBytes)),
        entryCount: sum(segments.map((s) => s.descriptor.entryCount)),
        maxBytes: this.versions.levelMaxBytes(i + 1),
      })),
      logSegmentCount: this.valueLog.log.length,
      segmentsInUse: this.allocator.inUseCount,
      flushCount: compactor.flushCount,
      compactionCount: compactor.compactionCount,
      trivialMoveCount: compactor.trivialMoveCount,
      userBytes: this.userBytes,
      writeAmplification: this.userBytes === 0 ? 0 : written / this.userBytes,
      io,
      recovery: { ...this.recovery, corruptSegments: [...this.recovery.corruptSegments] },
    };
  }

  /** The level descriptors (L1..Ln), for replication and inspection. */
  levelDescriptors(): IndexSegmentDescriptor[][] {
    return this.versions.levels.map((level) => level.map((s) => ({ ...s.descriptor })));
  }

  /** The log chain (sealed segments and, on a primary, the active one last). */
  logSegments(): LogSegmentEntry[] {
    return this.valueLog.log.map((e) => ({ ...e }));
  }

  /**
   * Reads the used bytes of a log segment of this store (for shipping), verified at the source: a
   * sealed segment whose records do not check out raises CorruptSegmentError and the store
   * fail-stops (its node restarts and another replica serves: PROTOCOL §8, bit rot).
   */
  readLogSegment(seq: number): Buffer {
    this.checkUsable();
    return this.readVerified(() => this.valueLog.readSegment(seq));
  }

  /** Reads the bytes of an index segment of this store (for shipping), verified as readLogSegment. */
  readIndexSegment(offset: number): Buffer {
    this.checkUsable();
    const seg = this.versions.findLevelSegment(offset);
    if (seg === undefined) throw new InvalidArgumentError(`no index segment at ${offset}`);
    return this.readVerified(() => {
      const bytes = this.device.read(offset, seg.descriptor.usedBytes, 'index');
      verifyIndexSegment(bytes, `index@${offset}`);
      return bytes;
    });
  }

  /** A read whose corruption makes the store fail-stop (other errors propagate as they are). */
  private readVerified(read: () => Buffer): Buffer {
    try {
      return read();
    } catch (err) {
      if (err instanceof CorruptSegmentError)
        this.failStop.run(() => {
          throw err;
        });
      throw err;
    }
  }

  // ─────────────── generic operations (replication builds on them) ───────────────

  /** The id of the last compaction (or flush) this store committed or installed; 0 when none. */
  lastCompactionId(): number {
    return this.versions.nextCompactionId - 1;
  }

  /** The manifest's replayFrom: where recovery (or a promotion) starts replaying the log into L0. */
  replayPosition(): LogPosition {
    return { ...this.versions.replayFrom };
  }

  /** The node whose offsets key the segment and index maps; undefined while none does. */
  mapOwner(): string | undefined {
    return this.owner;
  }

  /** The segment map the manifest persists (another node's log segment offset → local offset). */
  segmentMapEntries(): [number, number][] {
    return [...this.segmentMap];
  }

  /** The index map the manifest persists (another node's index segment offset → local offset). */
  indexMapEntries(): [number, number][] {
    return [...this.indexMap];
  }

  /**
   * Backup: the log position right after the last record applied to L0 by `applyRecords` or by
   * recovery's replay (`rebuildL0`).
   */
  appliedPosition(): LogPosition {
    return { ...this.indexedPosition };
  }

  /** Throws unless the store is usable and, given `role`, has that role (NotWritableError). */
  requireUsable(role?: StoreRole): void {
    this.checkUsable();
    if (role !== undefined) this.requireRole(role);
  }

  /** Runs a mutation under fail-stop: its first error makes the store fail-stop, then propagates. */
  mutate<T>(mutation: () => T): T {
    return this.failStop.run(mutation);
  }

  /** `mutate` for an asynchronous mutation (one that awaits a sync or a manifest commit). */
  mutateAsync<T>(mutation: () => Promise<T>): Promise<T> {
    return this.failStop.runAsync(mutation);
  }

  allocateSegment(): number {
    return this.allocator.allocate();
  }

  releaseSegment(offset: number): void {
    this.allocator.release(offset);
  }

  /** Writes raw bytes at a device offset (a segment this store allocated). */
  writeRaw(offset: number, bytes: Buffer, kind: 'log' | 'index'): void {
    this.device.write(offset, bytes, kind);
  }

  /** Syncs the device (shared with every other sync due on it); resolves once durable. */
  syncDevice(): Promise<void> {
    return this.device.sync();
  }

  readRaw(offset: number, length: number, kind: 'log' | 'index'): Buffer {
    return this.device.read(offset, length, kind);
  }

  /** Waits until no background job (flush, compaction) runs. */
  drain(): Promise<void> {
    return this.compactor.drainBackground();
  }

  /**
   * Applies a version edit under fail-stop: the named fields change (a level install first, see
   * VersionSet.install), one manifest write makes them durable, then `release` is freed in order.
   * The in-memory change and the manifest capture are one synchronous step; resolves once durable.
   */
  async applyEdit(edit: StoreEdit): Promise<void> {
    await this.failStop.runAsync(async () => {
      const applyFields = (): void => {
        if (edit.log !== undefined) this.valueLog.log = edit.log;
        if (edit.segmentMap !== undefined) replaceMap(this.segmentMap, edit.segmentMap);
        if (edit.indexMap !== undefined) replaceMap(this.indexMap, edit.indexMap);
        if (edit.mapOwner !== undefined) this.owner = edit.mapOwner;
        if (edit.levels !== undefined) this.versions.replaceLevels(edit.levels);
        if (edit.replayFrom !== undefined) this.versions.replayFrom = { ...edit.replayFrom };
        if (edit.nextCompactionId !== undefined) this.versions.nextCompactionId = edit.nextCompactionId;
      };
      if (edit.install !== undefined)
        await this.versions.install({ ...edit.install, beforePersist: applyFields });
      else {
        applyFields();
        await this.persistManifest();
      }
      for (const offset of edit.release ?? []) this.snapshots.release(offset);
    });
  }

  /** Records that the levels reflect compaction `id` (in memory; the next manifest write keeps it). */
  noteCompactionId(id: number): void {
    if (this.versions.nextCompactionId <= id) this.versions.nextCompactionId = id + 1;
  }

  /**
   * Backup: inserts records of the persisted log into L0 under fail-stop; `position` is right after
   * the last of them. A full L0 then freezes (autoCompact) or is announced, as on a primary.
   */
  applyRecords(records: { key: string; entry: IndexEntry }[], position: LogPosition): void {
    this.failStop.run(() => {
      for (const r of records) this.compactor.l0.insert(r.key, r.entry);
      this.indexedPosition = { ...position };
      this.valueLog.nextLsn = position.lsn;
      this.compactor.afterApply();
    });
  }

  /**
   * Writes one manifest that differs from this instance's state by `overrides` (a role change, a
   * reset) and ends the instance; the caller reopens the device.
   */
  async rewriteManifestAndAbandon(overrides: Partial<ManifestData>): Promise<void> {
    await this.failStop.runAsync(() => this.persistManifest(overrides));
    await this.abandon();
  }

  // ───────────────────────────── write path ─────────────────────────────

  private async write(key: Bytes, value: Bytes | null): Promise<void> {
    const op: BatchOperation = value === null ? { type: 'del', key } : { type: 'put', key, value };
    return this.batch([op]);
  }

  /**
   * Applies `operations` atomically (write-batch.ts): validated whole first (one bad entry rejects
   * the batch, nothing written), appended as one run of records in one step, acknowledged as one.
   */
  async batch(operations: readonly BatchOperation[]): Promise<void> {
    this.checkUsable();
    if (this.closing !== undefined) throw new StoreClosedError(); // closing: nothing new is appended
    if (this.role !== 'primary') throw new NotWritableError(this.role);
    const prepared = prepareBatch(operations, this);
    if (prepared.writes.length === 0) return;
    const length = prepared.recordBytes;
    // Checked again after each wait: another write may have taken the room meanwhile.
    while (this.needsRoom(length)) {
      // Admitted before any close: close() waits for it to append (then commits it).
      const room = this.makeRoom(length);
      this.makingRoom.add(room);
      try {
        await room;
      } finally {
        this.makingRoom.delete(room);
      }
    }
    const entries = this.failStop.run(() => appendBatch(this.valueLog, prepared));
    this.userBytes += prepared.userBytes;
    const keys = prepared.writes.map((w) => w.key.toString('latin1'));
    if (this.commits.waits) return this.enqueueBatch(keys, entries);
    try {
      this.failStop.run(() => {
        for (let i = 0; i < keys.length; i++) this.compactor.l0.insert(keys[i]!, entries[i]!);
        this.compactor.afterApply();
      });
    } catch (err) {
      // The records are in the log (and in L0): whatever failed after them, the outcome is unknown.
      const what = describeKey(prepared.writes[0]!.key);
      throw new OutcomeUnknownError(`write of ${what} was appended, then the store failed`, { cause: err });
    }
  }

  /** Hands an appended batch to group commit: one group, one answer (write-batch.ts). */
  private enqueueBatch(keys: string[], entries: IndexEntry[]): Promise<void> {
    const active = this.valueLog.active!;
    return new Promise<void>((resolve, reject) => {
      const last = entries.length - 1;
      for (let i = 0; i <= last; i++) {
        const entry = entries[i]!;
        const position = { seq: active.seq, offset: entry.pointer - active.offset, lsn: entry.lsn };
        // Every record rejects the one promise (settling twice is a no-op); the last resolves it.
        this.commits.enqueue({
          key: keys[i]!,
          entry,
          position,
          resolve: i === last ? resolve : noop,
          reject,
        });
      }
    });
  }

  /** Whether a write of `length` record bytes must wait before it appends (see makeRoom). */
  private needsRoom(length: number): boolean {
    const { compactor, valueLog } = this;
    return (
      (compactor.l0.bytes >= this.l0Bytes &&
        compactor.frozen !== undefined &&
        compactor.background !== undefined) ||
      valueLog.sealing !== undefined ||
      !valueLog.fits(length)
    );
  }

  /** Waits until a record of `length` bytes can be appended: back-pressure, a seal. */
  private async makeRoom(length: number): Promise<void> {
    const { compactor, valueLog } = this;
    for (;;) {
      if (
        compactor.l0.bytes >= this.l0Bytes &&
        compactor.frozen !== undefined &&
        compactor.background !== undefined
      ) {
        // Back-pressure: L0 is full and the previous one is still being flushed.
        await compactor.background;
      } else if (valueLog.sealing !== undefined) {
        // Nothing is appended while a seal runs (its failure is the store's: checked below).
        await valueLog.sealing.catch(() => {});
      } else if (!valueLog.fits(length)) {
        // The record does not fit the active segment: seal it (its failure is this write's).
        await this.failStop.runAsync(() => valueLog.seal());
      } else break;
      this.checkUsable();
    }
  }

  /**
   * The log position from which replay must start to rebuild what is not in L0: the first record
   * appended but not yet applied (pending or in a gated group), else the log's tail.
   */
  private firstUnappliedPosition(): LogPosition {
    // A backup has no active segment: what it indexed is all in L0 (or frozen, or in a level).
    if (this.role === 'backup') return { ...this.indexedPosition };
    const first = this.commits.firstUnapplied();
    if (first !== undefined) return { ...first.position };
    const active = this.valueLog.active!;
    return { seq: active.seq, offset: active.usedBytes, lsn: this.valueLog.nextLsn };
  }

  /** Installs (or removes) replication's commit gate; see CommitGate. */
  setCommitGate(gate: CommitGate | undefined): void {
    this.checkUsable();
    this.requireRole('primary');
    this.commits.gate = gate;
  }

  /** Installs (or removes) the gate compaction awaits after each index segment; see ShipGate. */
  setShipGate(gate: ShipGate | undefined): void {
    this.compactor.shipGate = gate;
  }

  /** Waits until every group handed to the commit gate so far is settled. */
  async settleCommits(): Promise<void> {
    this.commits.commitPending();
    await this.commits.chain;
  }

  /** Writes the manifest of the current state; `overrides` replace fields (a role change, a reset). */
  private persistManifest(overrides: Partial<ManifestData> = {}): Promise<void> {
    return this.manifestLog.commit({
      formatVersion: 1,
      role: this.role,
      segmentBytes: this.segmentBytes,
      allocatedSegmentCount: this.allocator.highWaterCount,
      log: this.valueLog.log,
      replayFrom: this.versions.replayFrom,
      levels: this.versions.descriptors(),
      nextCompactionId: this.versions.nextCompactionId,
      segmentMap: [...this.segmentMap],
      indexMap: [...this.indexMap],
      ...(this.owner === undefined ? {} : { mapOwner: this.owner }),
      ...overrides,
    });
  }

  /** Ends this instance without the closing flush: its manifest already says what the device holds. */
  private async abandon(): Promise<void> {
    this.failStop.closed = true;
    if (this.ownsDevice) await this.device.close();
  }

  private checkUsable(): void {
    this.failStop.check();
  }

  private requireRole(role: StoreRole): void {
    if (this.role !== role) throw new NotWritableError(this.role);
  }
}

function noop(): void {}

function replaceMap(map: Map<number, number>, entries: [number, number][]): void {
  map.clear();
  for (const [k, v] of entries) map.set(k, v);
}
