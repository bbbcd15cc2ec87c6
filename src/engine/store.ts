import { type CorruptSegmentError, InvalidArgumentError, KeyTooLargeError } from '../errors.js';
import { Compactor } from './compaction.js';
import { cloneIoStats, type Device } from './device.js';
import { FailStop, NotWritableError } from './fail-stop.js';
import { FileDevice } from './file-device.js';
import { type CommitGate, GroupCommit, type ShipGate } from './group-commit.js';
import { StoreHooks } from './hooks.js';
import { createBlockCache, type IndexSegmentDescriptor } from './index-segment-reader.js';
import type { LogPosition, LogSegmentEntry, ManifestData, StoreRole } from './manifest.js';
import { ManifestLog } from './manifest-log.js';
import type { IndexEntry } from './memtable.js';
import { type EntryStream, mergeStreams } from './merge.js';
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
import { StoreEdits } from './store-edits.js';
import {
  type IntegrityDeps,
  persistedSegments,
  readIndexSegmentVerified,
  readLogSegmentVerified,
  verifyPersisted,
} from './store-integrity.js';
import { ValueLog } from './value-log.js';
import { sum, VersionSet } from './version-set.js';
import { WritePath } from './write-path.js';

export { NotWritableError, StoreFailedError } from './fail-stop.js';
export type { CommitGate, CommitTail, ShipGate } from './group-commit.js';
export type { Bytes, StoreOptions, SyncPolicy } from './options.js';
export type { RecoveryReport } from './recovery.js';

export type { KeyValue, LevelStats, ScanOptions, StoreEdit, StoreStats } from './store-types.js';

import type { KeyValue, ScanOptions, StoreEdit, StoreStats } from './store-types.js';

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
  private readonly ownsDevice: boolean;
  private readonly options: ResolvedOptions;
  private readonly allocator: SegmentAllocator;
  private readonly failStop = new FailStop(this.hooks);
  private readonly valueLog: ValueLog;
  private readonly versions: VersionSet;
  private readonly compactor: Compactor;
  private readonly commits: GroupCommit;

  /** The maps, their owner, and every durable change's way to the manifest (store-edits.ts). */
  private readonly edits: StoreEdits;
  /**
   * Backup (Build-Index): the log position right after the last record indexed into L0 — every
   * record before it is in L0, the frozen L0 or a level. It plays the role a primary's active tail
   * plays for `firstUnappliedPosition`. In memory only: recovery derives it (recoverBackupL0).
   */
  private indexedPosition: LogPosition;
  private closing: Promise<void> | undefined;
  private readonly writes: WritePath;
  private readonly recovery: RecoveryReport = {
    replayedRecordCount: 0,
    replayedBytes: 0,
    corruptSegments: [],
  };

  private constructor(device: Device, ownsDevice: boolean, options: StoreOptions, manifestLog: ManifestLog) {
    const manifest = manifestLog.data;
    this.device = device;
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
    const log = manifest?.log.map((e) => ({ ...e })) ?? [];
    const inUse = [...log.map((e) => e.offset), ...(manifest?.levels.flat().map((d) => d.offset) ?? [])];
    this.allocator = new SegmentAllocator(
      this.segmentBytes,
      manifest?.allocatedSegmentCount ?? 0,
      inUse,
      o.reservedSegments,
    );
    this.edits = new StoreEdits(
      {
        manifestLog,
        role: this.role,
        segmentBytes: this.segmentBytes,
        allocator: this.allocator,
        failStop: this.failStop,
        valueLog: () => this.valueLog,
        versions: () => this.versions,
      },
      manifest,
    );
    const persist = (): Promise<void> => this.edits.persist();
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
    this.writes = new WritePath({
      role: this.role,
      segmentBytes: this.segmentBytes,
      l0Bytes: o.l0Bytes,
      maxKeyBytes: o.maxKeyBytes,
      maxValueBytes: o.maxValueBytes,
      failStop: this.failStop,
      valueLog: this.valueLog,
      compactor: this.compactor,
      commits: this.commits,
      closing: () => this.closing !== undefined,
    });
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
    else if (!existing) await this.edits.persist();
    else if (this.options.rebuildL0) {
      this.indexedPosition = recoverBackupL0(deps);
      this.compactor.afterApply();
    }
  }

  // ───────────────────────────── public API ─────────────────────────────

  async put(key: Bytes, value: Bytes): Promise<void> {
    return this.writes.write(key, value);
  }

  async delete(key: Bytes): Promise<void> {
    return this.writes.write(key, null);
  }

  async get(key: Bytes): Promise<Buffer | undefined> {
    this.checkUsable();
    const k = toKey(key);
    if (k.length > this.maxKeyBytes) throw new KeyTooLargeError(k.length, this.maxKeyBytes);
    const entry = this.lookup(k.toString('latin1'), k);
    if (entry === undefined || entry.tombstone) return undefined;
    return this.valueLog.readValue(entry, k);
  }

  async scan(options: ScanOptions = {}): Promise<KeyValue[]> {
    this.checkUsable();
    const gte = options.gte === undefined ? undefined : toKey(options.gte).toString('latin1');
    const lt = options.lt === undefined ? undefined : toKey(options.lt).toString('latin1');
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    const reverse = options.reverse ?? false;
    if (!(limit >= 0)) throw new InvalidArgumentError('scan limit must be >= 0');
    const out: KeyValue[] = [];
    if (limit === 0 || (gte !== undefined && lt !== undefined && gte >= lt)) return out;
    const { l0, frozen } = this.compactor;
    const streams: EntryStream[] = [l0.range(gte, lt, reverse)];
    if (frozen !== undefined) streams.push(frozen.memtable.range(gte, lt, reverse));
    streams.push(...this.versions.streams(gte, lt, reverse));
    for (const [key, entry] of mergeStreams(streams, reverse)) {
      if (entry.tombstone) continue;
      const keyBytes = Buffer.from(key, 'latin1');
      out.push({ key: keyBytes, value: this.valueLog.readValue(entry, keyBytes) });
      if (out.length >= limit) break;
    }
    return out;
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
   * Reads back every persisted segment and checks it (store-integrity.ts); returns the first
   * corruption found, or undefined. Reads only; the store stays usable either way (the caller
   * decides: `scrub` fail-stops, a node opening a backup store resets it).
   */
  verifyPersisted(): CorruptSegmentError | undefined {
    this.checkUsable();
    return verifyPersisted(this.integrity);
  }

  /** Verifies every persisted segment (verifyPersisted); a corrupt one makes the store fail-stop. */
  scrub(): void {
    const corrupt = this.verifyPersisted();
    if (corrupt !== undefined)
      this.failStop.run(() => {
        throw corrupt;
      });
  }

  /** The persisted segments the manifest names, where each lies (for fault injection and tools). */
  persistedSegments(): { kind: 'log' | 'index'; offset: number; usedBytes: number }[] {
    return persistedSegments(this.integrity);
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

  /**
   * Merges level `level` (1 ≤ level < maxLevels) into the next one now: all of it, or with
   * `bounded` one segment of it and what it overlaps (a due compaction's bounded job, see
   * compaction.ts).
   */
  async compactLevelNow(level: number, options: { bounded?: boolean } = {}): Promise<void> {
    this.checkUsable();
    if (!(Number.isInteger(level) && level >= 1 && level < this.maxLevels)) {
      throw new InvalidArgumentError(`level must be in [1, ${this.maxLevels - 1}]`);
    }
    await this.compactor.runExclusive(() => this.compactor.compactLevel(level, options));
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
    while (this.writes.makingRoom.size > 0) await Promise.allSettled([...this.writes.makingRoom]);
    await this.compactor.drainBackground();
    try {
      this.commits.commitPending();
      // Every group handed to the commit gate settles first: one whose gate resolved is on every
      // backup and must reach L0 (and its caller an answer that says so), never a "closed" refusal.
      await this.commits.chain;
      if (this.failStop.error === undefined && this.role === 'primary') {
        await this.failStop.runAsync(async () => {
          await this.valueLog.syncTail(false);
          await this.edits.persist();
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
      userBytes: this.writes.userBytes,
      writeAmplification: this.writes.userBytes === 0 ? 0 : written / this.writes.userBytes,
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
    return readLogSegmentVerified(this.integrity, seq);
  }

  /** Reads the bytes of an index segment of this store (for shipping), verified as readLogSegment. */
  readIndexSegment(offset: number): Buffer {
    this.checkUsable();
    return readIndexSegmentVerified(this.integrity, offset);
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
    return this.edits.owner;
  }

  /** The segment map the manifest persists (another node's log segment offset → local offset). */
  segmentMapEntries(): [number, number][] {
    return [...this.edits.segmentMap];
  }

  /** The index map the manifest persists (another node's index segment offset → local offset). */
  indexMapEntries(): [number, number][] {
    return [...this.edits.indexMap];
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
  applyEdit(edit: StoreEdit): Promise<void> {
    return this.edits.applyEdit(edit);
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
    await this.failStop.runAsync(() => this.edits.persist(overrides));
    await this.abandon();
  }

  // ───────────────────────────── write path ─────────────────────────────

  /**
   * The log position from which replay must start to rebuild what is not in L0: on a primary the
   * first record appended but not yet applied, else the log's tail (WritePath); on a backup the
   * position after the last record indexed.
   */
  private firstUnappliedPosition(): LogPosition {
    // A backup has no active segment: what it indexed is all in L0 (or frozen, or in a level).
    if (this.role === 'backup') return { ...this.indexedPosition };
    return this.writes.firstUnappliedPosition();
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

  /** Ends this instance without the closing flush: its manifest already says what the device holds. */
  private async abandon(): Promise<void> {
    this.failStop.closed = true;
    if (this.ownsDevice) await this.device.close();
  }

  private get integrity(): IntegrityDeps {
    return { device: this.device, failStop: this.failStop, valueLog: this.valueLog, versions: this.versions };
  }

  private checkUsable(): void {
    this.failStop.check();
  }

  private requireRole(role: StoreRole): void {
    if (this.role !== role) throw new NotWritableError(this.role);
  }
}
