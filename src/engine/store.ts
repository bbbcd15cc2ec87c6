/**
 * Store: the engine's facade — a key-value store with KV separation (values in an append-only log
 * of fixed-size segments, an LSM index of value pointers: L0 in memory, L1..Ln on the device).
 * Each job lives in its own module; the facade validates calls, checks fail-stop and delegates:
 *
 * - options and their validation: options.ts · wiring the parts: store-parts.ts
 * - the value log (append, seal, tail sync, verified reads): value-log.ts
 * - the write path (validate, make room, append, commit): write-path.ts, group-commit.ts
 * - the read path (point reads, merged scans): read-path.ts, merge.ts
 * - L0, flush and bounded compaction jobs: compaction.ts · the levels and installs: version-set.ts
 * - durable state and version edits (persist, applyEdit; the CRC-framed manifest log): store-edits.ts,
 *   manifest-log.ts · recovery (by role; one replay for primaries and Build-Index backups): recovery.ts
 * - fail-stop (the first device or integrity error ends the store): fail-stop.ts · integrity
 *   checks and verified reads for shipping: store-integrity.ts · statistics: store-stats.ts
 *
 * It knows nothing about replication: src/replication builds the backup side (shipped log and
 * index segments, segment and index maps, rebase, Build-Index indexing) and promotion on the
 * generic operations of `store.replica` (store-replica.ts: allocate, write and read a raw segment,
 * apply a version edit, apply records to L0, rewrite the manifest and abandon) and on the hooks
 * and gates the store exposes.
 */
import { type CorruptSegmentError, InvalidArgumentError } from '../errors.js';
import type { Compactor } from './compaction.js';
import { type CursorOptions, StoreCursor } from './cursor.js';
import type { Device } from './device.js';
import { FailStop, NotWritableError } from './fail-stop.js';
import { FileDevice } from './file-device.js';
import type { CommitGate, GroupCommit, ShipGate } from './group-commit.js';
import { StoreHooks } from './hooks.js';
import type { IndexSegmentDescriptor } from './index-segment-reader.js';
import type { LogSegmentEntry, StoreRole } from './manifest.js';
import { ManifestLog } from './manifest-log.js';
import { type Bytes, resolveOptions, type StoreOptions, type SyncPolicy } from './options.js';
import { entryOf, getValue, type ReadPathDeps, scanRange } from './read-path.js';
import type { SnapshotRegistry, StoreSnapshot } from './snapshot.js';
import type { StoreEdits } from './store-edits.js';
import { type IntegrityDeps, persistedSegments, verifyPersisted } from './store-integrity.js';
import { assembleStore } from './store-parts.js';
import type { ReplicaOps } from './store-replica.js';
import { type StoreStatsSources, storeStats } from './store-stats.js';
import type { KeyValue, ReadOptions, ScanOptions, StoreStats } from './store-types.js';
import type { ValueLog } from './value-log.js';
import type { VersionSet } from './version-set.js';
import type { BatchOperation } from './write-batch.js';
import type { WritePath } from './write-path.js';

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
export type { ReplicaOps } from './store-replica.js';
export type { KeyValue, LevelStats, ReadOptions, ScanOptions, StoreEdit, StoreStats } from './store-types.js';
export type { BatchOperation } from './write-batch.js';

/** Keys deleted per batch by clear(): small enough to fit any segment size's batch. */
const CLEAR_BATCH_KEYS = 32;

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
  /** The generic operations replication builds on (store-replica.ts). */
  readonly replica: ReplicaOps;

  private readonly device: Device;
  private readonly ownsDevice: boolean;
  private readonly failStop = new FailStop(this.hooks);
  private readonly valueLog: ValueLog;
  private readonly versions: VersionSet;
  private readonly compactor: Compactor;
  private readonly commits: GroupCommit;

  /** The maps, their owner, and every durable change's way to the manifest (store-edits.ts). */
  private readonly edits: StoreEdits;
  private closing: Promise<void> | undefined;
  private readonly writes: WritePath;
  /** Live snapshots and the segment frees they defer (snapshot.ts). */
  private readonly snapshots: SnapshotRegistry;
  /** What the read path, the integrity checks and the statistics work on (store-parts.ts). */
  private readonly reads: ReadPathDeps;
  private readonly integrity: IntegrityDeps;
  private readonly statsSources: StoreStatsSources;
  /** Recovers the store once opened (store-parts.ts, recovery.ts). */
  private readonly recover: (existing: boolean) => Promise<void>;

  private constructor(device: Device, ownsDevice: boolean, options: StoreOptions, manifestLog: ManifestLog) {
    const manifest = manifestLog.data;
    this.device = device;
    this.ownsDevice = ownsDevice;
    const o = resolveOptions(options, manifest);
    this.segmentBytes = o.segmentBytes;
    this.l0Bytes = o.l0Bytes;
    this.growthFactor = o.growthFactor;
    this.maxLevels = o.maxLevels;
    this.syncPolicy = o.syncPolicy;
    this.maxKeyBytes = o.maxKeyBytes;
    this.maxValueBytes = o.maxValueBytes;
    this.role = o.role;
    const parts = assembleStore({
      device,
      options: o,
      manifestLog,
      manifest,
      hooks: this.hooks,
      failStop: this.failStop,
      closing: () => this.closing !== undefined,
      abandon: () => this.abandon(),
    });
    this.edits = parts.edits;
    this.valueLog = parts.valueLog;
    this.versions = parts.versions;
    this.compactor = parts.compactor;
    this.commits = parts.commits;
    this.writes = parts.writes;
    this.snapshots = parts.snapshots;
    this.reads = parts.reads;
    this.integrity = parts.integrity;
    this.statsSources = parts.stats;
    this.replica = parts.replica;
    this.recover = parts.recover;
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

  // ───────────────────────────── public API ─────────────────────────────

  async put(key: Bytes, value: Bytes): Promise<void> {
    return this.writes.write(key, value);
  }

  async delete(key: Bytes): Promise<void> {
    return this.writes.write(key, null);
  }

  /** Applies puts and deletes atomically (write-path.ts, write-batch.ts). */
  async batch(operations: readonly BatchOperation[]): Promise<void> {
    return this.writes.batch(operations);
  }

  /** The value of `key` (as of `options.snapshot` when given), or undefined. */
  async get(key: Bytes, options: ReadOptions = {}): Promise<Buffer | undefined> {
    return this.getSync(key, options);
  }

  /** `get`, synchronously (the engine reads without waiting: abstract-level's getSync). */
  getSync(key: Bytes, options: ReadOptions = {}): Buffer | undefined {
    this.checkUsable();
    return getValue(this.reads, key, options.snapshot);
  }

  /** Values of `keys` in order (undefined where absent), read from one snapshot. */
  async getMany(keys: readonly Bytes[], options: ReadOptions = {}): Promise<(Buffer | undefined)[]> {
    const snapshot = options.snapshot ?? this.snapshot();
    try {
      return keys.map((key) => this.getSync(key, { snapshot }));
    } finally {
      if (options.snapshot === undefined) snapshot.release();
    }
  }

  /** Whether `key` holds a value (as of `options.snapshot`); reads no value bytes. */
  async has(key: Bytes, options: ReadOptions = {}): Promise<boolean> {
    this.checkUsable();
    const entry = entryOf(this.reads, key, options.snapshot);
    return entry !== undefined && !entry.tombstone;
  }

  /** A consistent read view as of now (snapshot.ts); the caller releases it. */
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

  async scan(options: ScanOptions = {}): Promise<KeyValue[]> {
    this.checkUsable();
    return scanRange(this.reads, options);
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
    return storeStats(this.statsSources);
  }

  /** The level descriptors (L1..Ln), for replication and inspection. */
  levelDescriptors(): IndexSegmentDescriptor[][] {
    return this.versions.levels.map((level) => level.map((s) => ({ ...s.descriptor })));
  }

  /** The log chain (sealed segments and, on a primary, the active one last). */
  logSegments(): LogSegmentEntry[] {
    return this.valueLog.log.map((e) => ({ ...e }));
  }

  // ─────────────── replication's gates (its operations: `replica`) ───────────────

  /** Installs (or removes) replication's commit gate; see CommitGate. */
  setCommitGate(gate: CommitGate | undefined): void {
    this.checkUsable();
    if (this.role !== 'primary') throw new NotWritableError(this.role);
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

  private checkUsable(): void {
    this.failStop.check();
  }
}
