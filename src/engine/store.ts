/**
 * Store: a single-node LSM key-value store with KV separation (DESIGN §3) — the facade over the
 * modules that each do one job:
 *   options.ts       options, defaults, validation
 *   value-log.ts     the log chain, the active segment, append, seal, value reads
 *   group-commit.ts  one sync (and one commit-gate call) per group of writes
 *   version-set.ts   the levels, replayFrom, the atomic level install
 *   compaction.ts    L0, flush, compaction, the one background job
 *   recovery.ts      the one log replay, primary and backup recovery
 *   fail-stop.ts     the first failure, after which nothing is acknowledged
 * The manifest is written by one method, `persistManifest`, from the state those modules hold.
 *
 * Write path (put/delete): validate → encode the record into the active log segment → insert the
 *   key's pointer into L0 → resolve. With syncPolicy 'always' or a commit gate the insert and the
 *   resolve wait for a group commit.
 *
 * Verification (`verifyPersisted`, `scrub`): every persisted log segment must parse as CRC-valid,
 *   lsn-continuous records up to its recorded length and every index segment must pass its block
 *   and metadata CRCs. A backup's node verifies a store it opens from disk and before promoting
 *   it (promotion refuses a corrupt store: it fail-stops instead), so a flipped bit is found
 *   before its segment could be served, and the copy is re-synced from the primary.
 *
 * Replication builds on it through hooks (`segmentSealed`, `indexSegmentWritten`,
 * `compactionCommitted`, `l0Full`, `failed`), the commit and ship gates, and role-checked
 * backup-side entry points: shipped log and index segments, level installs, the segment and index
 * maps the manifest persists, rebase, Build-Index indexing, promotion.
 */
import { assert, assertOffset } from '../assert.js';
import {
  CorruptSegmentError,
  InvalidArgumentError,
  KeyTooLargeError,
  OutcomeUnknownError,
  StoreClosedError,
  TalosError,
  ValueTooLargeError,
} from '../errors.js';
import { mutant } from '../mutants.js';
import { Compactor } from './compaction.js';
import { crc32c } from './crc.js';
import { cloneIoStats, type Device, type IoStats } from './device.js';
import { FailStop, NotWritableError } from './fail-stop.js';
import { FileDevice } from './file-device.js';
import { type CommitGate, GroupCommit, type ShipGate } from './group-commit.js';
import { type CompactionCommittedEvent, StoreHooks } from './hooks.js';
import { translateIndexSegment, verifyIndexSegment } from './index-segment.js';
import { createBlockCache, type IndexSegmentDescriptor } from './index-segment-reader.js';
import {
  type LogPosition,
  type LogSegmentEntry,
  type ManifestData,
  readManifest,
  type StoreRole,
  writeManifest,
} from './manifest.js';
import type { IndexEntry } from './memtable.js';
import { type EntryStream, mergeStreams } from './merge.js';
import {
  type Bytes,
  type ResolvedOptions,
  resolveOptions,
  type StoreOptions,
  type SyncPolicy,
  toKey,
  toValue,
} from './options.js';
import { parseRecords, recordBytes } from './record.js';
import { type RecoveryDeps, type RecoveryReport, recoverBackupL0, recoverPrimary } from './recovery.js';
import { SegmentAllocator } from './segment-allocator.js';
import { ValueLog } from './value-log.js';
import { sum, VersionSet } from './version-set.js';

export { NotWritableError, StoreFailedError } from './fail-stop.js';
export type { CommitGate, CommitTail, ShipGate } from './group-commit.js';
export type { Bytes, StoreOptions, SyncPolicy } from './options.js';
export type { RecoveryReport } from './recovery.js';

/** What a promotion took from the log buffers (Store.promoteToPrimary). */
export interface PromotionReport {
  /** Bytes of valid records taken from the buffers (beyond what was persisted). */
  keptBytes: number;
  /** Buffers that contributed records. */
  segmentsFromBuffers: number;
  /** The segment that became the active one. */
  activeSeq: number;
  /** The lsn after the last record kept (0 when the log holds none). */
  nextLsn: number;
}

/** A rebase named maps that do not match this backup's: it needs a full re-sync instead. */
export class RebaseMismatchError extends TalosError {
  constructor(detail: string) {
    super('REBASE_MISMATCH', `rebase refused: ${detail}`);
  }
}

export interface ScanOptions {
  gte?: Bytes;
  lt?: Bytes;
  limit?: number;
  reverse?: boolean;
}

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

  private readonly segmentMap: Map<number, number>;
  private readonly indexMap: Map<number, number>;
  /** The node whose offsets key segmentMap and indexMap (see ManifestData.mapOwner). */
  private owner: string | undefined;
  /** Backup: shipped index segments written but not yet committed (primary offset → descriptor). */
  private readonly shippedPending = new Map<number, IndexSegmentDescriptor>();
  /**
   * Backup (Build-Index): the log position right after the last record indexed into L0 — every
   * record before it is in L0, the frozen L0 or a level. It plays the role a primary's active tail
   * plays for `firstUnappliedPosition`. In memory only: recovery derives it (see recover()).
   */
  private indexedPosition: LogPosition;
  private closing: Promise<void> | undefined;
  private userBytes = 0;
  private readonly recovery: RecoveryReport = {
    replayedRecordCount: 0,
    replayedBytes: 0,
    corruptSegments: [],
  };

  private constructor(
    device: Device,
    ownsDevice: boolean,
    options: StoreOptions,
    manifest: ManifestData | undefined,
  ) {
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
    const persist = (): void => this.persistManifest();
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
      const manifest = readManifest(device);
      const store = new Store(device, options.device === undefined, options, manifest);
      store.recover(manifest !== undefined);
      return store;
    } catch (err) {
      if (options.device === undefined) device.close();
      throw err;
    }
  }

  private recover(existing: boolean): void {
    const deps: RecoveryDeps = {
      device: this.device,
      segmentBytes: this.segmentBytes,
      valueLog: this.valueLog,
      compactor: this.compactor,
      replayFrom: this.versions.replayFrom,
      report: this.recovery,
    };
    if (this.role === 'primary') recoverPrimary(deps, existing);
    else if (!existing) this.persistManifest();
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
    this.failStop.run(() => this.valueLog.syncTail(false));
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
    await this.compactor.drainBackground();
    try {
      this.commits.commitPending();
      // Every group handed to the commit gate settles first: one whose gate resolved is on every
      // backup and must reach L0 (and its caller an answer that says so), never a "closed" refusal.
      await this.commits.chain;
      if (this.failStop.error === undefined && this.role === 'primary') {
        this.failStop.run(() => {
          this.valueLog.syncTail(false);
          this.persistManifest();
        });
      }
    } finally {
      this.failStop.closed = true;
      if (this.ownsDevice) this.device.close();
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

  /** Reads the used bytes of a log segment of this store (for shipping). */
  readLogSegment(seq: number): Buffer {
    this.checkUsable();
    return this.valueLog.readSegment(seq);
  }

  /** Reads the bytes of an index segment of this store (for shipping). */
  readIndexSegment(offset: number): Buffer {
    this.checkUsable();
    const seg = this.versions.findLevelSegment(offset);
    if (seg === undefined) throw new InvalidArgumentError(`no index segment at ${offset}`);
    return this.device.read(offset, seg.descriptor.usedBytes, 'index');
  }

  // ─────────────────────── backup-side entry points ───────────────────────

  /**
   * Backup: persists the used prefix of primary log segment `seq` in a local segment (a new one,
   * or the same one again when a partial seal is followed by the full seal), syncs it, and records
   * `segmentMap[primarySegmentOffset] = local` in the manifest. Returns the local offset.
   */
  writeShippedLogSegment(args: {
    seq: number;
    primarySegmentOffset: number;
    bytes: Buffer;
    crc32c?: number;
  }): number {
    this.checkUsable();
    this.requireRole('backup');
    const { seq, primarySegmentOffset, bytes } = args;
    assertOffset(primarySegmentOffset, 'primarySegmentOffset');
    if (primarySegmentOffset % this.segmentBytes !== 0) {
      throw new InvalidArgumentError(`primary segment offset ${primarySegmentOffset} is not segment-aligned`);
    }
    if (bytes.length > this.segmentBytes)
      throw new InvalidArgumentError('shipped log segment larger than a segment');
    if (args.crc32c !== undefined && crc32c(bytes) !== args.crc32c) {
      throw new CorruptSegmentError(`shipped log segment ${seq}`, 'crc mismatch');
    }
    return this.failStop.run(() => {
      let local = this.segmentMap.get(primarySegmentOffset);
      if (local === undefined) local = this.allocator.allocate();
      const entry = this.valueLog.log.find((e) => e.seq === seq);
      // A segment grows by partial seals (tail syncs) before its full seal; the prefix persisted
      // already came from the same buffer (the CRC above covers all of it), so only the new
      // suffix is written — each log byte reaches a backup's device once, as on the primary.
      const persisted = entry !== undefined && entry.offset === local ? (entry.usedBytes ?? 0) : 0;
      const from = persisted <= bytes.length ? persisted : 0;
      if (from < bytes.length) this.device.write(local + from, bytes.subarray(from), 'log');
      this.device.sync();
      this.segmentMap.set(primarySegmentOffset, local);
      if (entry === undefined) {
        this.valueLog.log.push({ seq, offset: local, usedBytes: bytes.length });
        this.valueLog.log.sort((a, b) => a.seq - b.seq);
      } else {
        assert(entry.offset === local, 'a log segment must map to one local segment');
        entry.usedBytes = Math.max(entry.usedBytes ?? 0, bytes.length);
      }
      this.persistManifest();
      return local;
    });
  }

  /**
   * Backup: verifies a shipped index segment, translates its value pointers through this store's
   * segment map, writes it to a new local segment and syncs it. It joins a level only when the
   * matching `installShippedCompaction` commits; until then a crash frees it.
   */
  writeShippedIndexSegment(args: { primarySegmentOffset: number; bytes: Buffer }): IndexSegmentDescriptor {
    this.checkUsable();
    this.requireRole('backup');
    const name = `shipped index segment @${args.primarySegmentOffset}`;
    if (args.bytes.length > this.segmentBytes) throw new CorruptSegmentError(name, 'larger than a segment');
    const translated = translateIndexSegment(
      args.bytes,
      this.segmentBytes,
      (primary) => this.segmentMap.get(primary),
      name,
    );
    const meta = verifyIndexSegment(translated, name);
    const offset = this.failStop.run(() => {
      const allocated = this.allocator.allocate();
      this.device.write(allocated, translated, 'index');
      this.device.sync();
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
    if (previous !== undefined) this.allocator.release(previous.offset);
    this.shippedPending.set(args.primarySegmentOffset, descriptor);
    return { ...descriptor };
  }

  /**
   * Backup: installs a primary's compaction commit atomically — the new segments (already shipped)
   * join dstLevel, the removed ones leave both levels, the manifest is written once, then the
   * removed local segments are freed. Segment offsets are the primary's.
   */
  installShippedCompaction(
    commit: Omit<CompactionCommittedEvent, 'trivialMove'> & { trivialMove?: boolean },
  ): void {
    this.checkUsable();
    this.requireRole('backup');
    const { srcLevel, dstLevel } = commit;
    if (!(srcLevel >= 0 && dstLevel === srcLevel + 1 && dstLevel <= this.maxLevels)) {
      throw new InvalidArgumentError(`bad compaction levels ${srcLevel} → ${dstLevel}`);
    }
    const removedLocal = commit.removedSegments.map((p) => {
      const local = this.indexMap.get(p);
      if (local === undefined) throw new InvalidArgumentError(`removed segment ${p} is not installed here`);
      return local;
    });
    const newDescriptors = commit.newSegments.map((p) => {
      const pending = this.shippedPending.get(p);
      if (pending !== undefined) return pending;
      const local = this.indexMap.get(p);
      const existing = local === undefined ? undefined : this.versions.findLevelSegment(local);
      if (existing === undefined) throw new InvalidArgumentError(`new segment ${p} was never shipped here`);
      return existing.descriptor;
    });
    this.failStop.run(() =>
      this.versions.install({
        srcLevel,
        dstLevel,
        added: newDescriptors,
        removedOffsets: removedLocal,
        replayFrom: commit.replayFrom,
        beforePersist: () => {
          commit.removedSegments.forEach((p) => {
            this.indexMap.delete(p);
          });
          commit.newSegments.forEach((p, i) => {
            this.indexMap.set(p, newDescriptors[i]!.offset);
            this.shippedPending.delete(p);
          });
        },
      }),
    );
    if (this.versions.nextCompactionId <= commit.compactionId)
      this.versions.nextCompactionId = commit.compactionId + 1;
  }

  /**
   * The id of the last compaction (or flush) this store committed — on a Send-Index backup, the
   * last shipped commit it installed. A primary compares it with a backup's at open: a backup
   * whose levels are behind needs them re-synced (PROTOCOL §7). 0 when none.
   */
  lastCompactionId(): number {
    return this.versions.nextCompactionId - 1;
  }

  /** The manifest's replayFrom: where recovery (or a promotion) starts replaying the log into L0. */
  replayPosition(): LogPosition {
    return { ...this.versions.replayFrom };
  }

  /**
   * Backup, Send-Index re-sync (PROTOCOL §7): replaces every level at once. `levels[i]` lists the
   * PRIMARY offsets of level i + 1's segments, each shipped before (writeShippedIndexSegment, still
   * pending) or already installed here. One manifest write installs them all, with the primary's
   * `replayFrom`; the old levels' segments that are not named are freed afterwards; the index map
   * becomes exactly the named segments. A name neither pending nor installed, or more levels than
   * maxLevels, raises InvalidArgumentError and changes nothing.
   */
  installShippedLevels(args: { levels: number[][]; replayFrom: LogPosition; compactionId: number }): void {
    this.checkUsable();
    this.requireRole('backup');
    if (args.levels.length > this.maxLevels) {
      throw new InvalidArgumentError(`${args.levels.length} levels shipped, at most ${this.maxLevels}`);
    }
    const installed = new Map(
      this.versions.levels.flat().map((seg) => [seg.descriptor.offset, seg] as const),
    );
    const nextIndexMap = new Map<number, number>();
    const consumed: number[] = [];
    const next = args.levels.map((level, i) => {
      const segments = level.map((primaryOffset) => {
        const pending = this.shippedPending.get(primaryOffset);
        if (pending !== undefined) consumed.push(primaryOffset);
        const local = pending?.offset ?? this.indexMap.get(primaryOffset);
        const segment =
          local === undefined
            ? undefined
            : (installed.get(local) ??
              (pending === undefined ? undefined : this.versions.levelSegment(pending)));
        if (segment === undefined) {
          throw new InvalidArgumentError(
            `index segment ${primaryOffset} (level ${i + 1}) was never shipped here`,
          );
        }
        nextIndexMap.set(primaryOffset, segment.descriptor.offset);
        return segment;
      });
      segments.sort((a, b) =>
        a.descriptor.minKey < b.descriptor.minKey ? -1 : a.descriptor.minKey > b.descriptor.minKey ? 1 : 0,
      );
      for (let j = 1; j < segments.length; j++) {
        if (!(segments[j - 1]!.descriptor.maxKey < segments[j]!.descriptor.minKey)) {
          throw new InvalidArgumentError(`shipped level ${i + 1} has overlapping segments`);
        }
      }
      return segments;
    });
    while (next.length < this.maxLevels) next.push([]);
    const keptLocal = new Set(nextIndexMap.values());
    this.failStop.run(() => {
      this.versions.levels = next;
      this.indexMap.clear();
      for (const [primary, local] of nextIndexMap) this.indexMap.set(primary, local);
      for (const primary of consumed) this.shippedPending.delete(primary);
      this.versions.replayFrom = { ...args.replayFrom };
      // The levels now reflect the primary's compaction `compactionId`, whatever this store saw before.
      this.versions.nextCompactionId = args.compactionId + 1;
      this.persistManifest();
      for (const offset of installed.keys()) if (!keptLocal.has(offset)) this.allocator.release(offset);
    });
  }

  /** Backup: the node whose offsets key the segment and index maps; undefined while none does. */
  mapOwner(): string | undefined {
    return this.owner;
  }

  /** Backup: records which primary's offsets key the maps (the first primary to open it). */
  setMapOwner(nodeId: string): void {
    this.checkUsable();
    this.requireRole('backup');
    if (this.owner === nodeId) return;
    assert(
      this.owner === undefined || (this.segmentMap.size === 0 && this.indexMap.size === 0),
      () => `maps keyed by ${this.owner} cannot change owner without a rebase`,
    );
    this.owner = nodeId;
    this.failStop.run(() => this.persistManifest());
  }

  /** Backup (and a promoted primary): primary index segment offset → local offset. */
  indexMapEntries(): [number, number][] {
    return [...this.indexMap];
  }

  /**
   * Backup, after another backup was promoted (PROTOCOL §7, rebase). This store's maps are keyed by
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
  rebaseMaps(args: {
    owner: string;
    newOwner: string;
    segments: [number, number][];
    indexMap: [number, number][];
  }): { truncatedSegments: number; droppedIndexSegments: number } {
    this.checkUsable();
    this.requireRole('backup');
    if (this.owner !== args.owner) {
      throw new RebaseMismatchError(`maps are keyed by ${this.owner ?? 'nobody'}, not ${args.owner}`);
    }
    const offsetOfSeq = new Map(args.segments);
    const endSeq = Math.max(-1, ...offsetOfSeq.keys());
    const kept: LogSegmentEntry[] = [];
    const truncated: LogSegmentEntry[] = [];
    for (const entry of this.valueLog.log) {
      if (offsetOfSeq.has(entry.seq)) kept.push(entry);
      else if (entry.seq > endSeq) truncated.push(entry);
      else throw new RebaseMismatchError(`${args.newOwner} lacks log segment ${entry.seq}`);
    }
    const localToSeq = new Map(kept.map((e) => [e.offset, e.seq] as const));
    const nextSegmentMap: [number, number][] = [];
    for (const [key, local] of this.segmentMap) {
      const seq = localToSeq.get(local);
      // Keeping the old primary's keys is a simulator-only defect (the `stale-map` mutant).
      if (seq !== undefined) nextSegmentMap.push([mutant('stale-map') ? key : offsetOfSeq.get(seq)!, local]);
    }
    const newIndexKey = new Map(args.indexMap);
    const nextIndexMap: [number, number][] = [];
    let droppedIndexSegments = 0;
    for (const [oldKey, local] of this.indexMap) {
      const newKey = newIndexKey.get(oldKey);
      if (newKey === undefined) droppedIndexSegments++;
      else nextIndexMap.push([newKey, local]);
    }
    this.failStop.run(() => {
      this.valueLog.log = kept;
      this.segmentMap.clear();
      for (const [k, v] of nextSegmentMap) this.segmentMap.set(k, v);
      this.indexMap.clear();
      for (const [k, v] of nextIndexMap) this.indexMap.set(k, v);
      const dropped = [...this.shippedPending.values()].map((d) => d.offset);
      this.shippedPending.clear();
      this.owner = args.newOwner;
      this.persistManifest();
      for (const offset of dropped) this.allocator.release(offset);
      for (const entry of truncated) this.allocator.release(entry.offset);
    });
    return { truncatedSegments: truncated.length, droppedIndexSegments };
  }

  /**
   * A node that was a region's primary and comes back after another node was promoted holds a log
   * that may run past what the new primary kept (writes never acknowledged), keyed by its own
   * offsets: it cannot follow as it is. This rewrites the manifest as an empty backup's — every
   * segment becomes free space — and closes this instance; the caller reopens the device and the
   * new primary re-syncs it from scratch (PROTOCOL §7). One atomic manifest write: a crash leaves
   * either the old primary store or the empty backup.
   */
  async resetAsEmptyBackup(): Promise<void> {
    this.checkUsable();
    await this.compactor.drainBackground();
    this.failStop.run(() =>
      this.persistManifest({
        role: 'backup',
        log: [],
        replayFrom: { seq: 0, offset: 0, lsn: 1 },
        levels: this.versions.levels.map(() => []),
        nextCompactionId: 1,
        segmentMap: [],
        indexMap: [],
        mapOwner: undefined,
      }),
    );
    this.abandon();
  }

  /**
   * Backup → primary (PROTOCOL §6, promotion steps 1–2). `tail` holds the node's registered log
   * buffers for the segments after what it persisted (`seq`, the old primary's segment offset, the
   * buffer's bytes; stale or zero buffers are fine). Algorithm: starting right after the last
   * persisted record (lsn continuity), take from each buffer in seq order the longest prefix of
   * CRC-valid records that continues the lsn chain — the last persisted segment may continue in
   * its buffer, each later segment starts at offset 0 — and stop at the first buffer that adds no
   * record: nothing past it was ever acknowledged (a write is acknowledged only once every backup
   * holds it, and records are appended in lsn order). The kept bytes are written and synced into
   * local segments (mapped like shipped ones); then the manifest is rewritten with role 'primary'
   * and the last log segment as the active one, and this instance closes. The caller reopens the
   * device: the primary's ordinary recovery rebuilds L0 by replaying the log from `replayFrom` and
   * finds the active segment's valid end. A crash before the manifest write leaves a backup that
   * can be promoted again with the same tail; after it, a primary. The segment and index maps stay
   * in the manifest (keyed by the old primary) so the new primary can rebase the other backups.
   */
  async promoteToPrimary(args: {
    /** `primarySegmentOffset` is unknown for a segment the old primary never sealed. */
    tail: { seq: number; primarySegmentOffset?: number; bytes: Uint8Array }[];
  }): Promise<PromotionReport> {
    this.checkUsable();
    this.requireRole('backup');
    await this.compactor.drainBackground();
    this.checkUsable();
    // A corrupt copy is never promoted: the store fail-stops and its node is replaced, so another
    // backup (every one holds every acknowledged write) takes the region.
    this.scrub();
    const bySeq = new Map(args.tail.map((t) => [t.seq, t]));
    const last = this.valueLog.log.at(-1);
    let nextLsn = 0; // 0: the first record may carry any lsn (nothing persisted to continue)
    if (last !== undefined && last.usedBytes !== null && last.usedBytes > 0) {
      const bytes = this.device.read(last.offset, last.usedBytes, 'log');
      nextLsn = parseRecords(bytes, 0, bytes.length, 0).nextLsn;
    }
    let seq = last?.seq ?? Math.min(...bySeq.keys());
    let keptBytes = 0;
    let segmentsFromBuffers = 0;
    this.failStop.run(() => {
      for (;;) {
        const buffer = bySeq.get(seq);
        if (buffer === undefined) {
          if (seq === last?.seq) {
            seq++; // no buffer continues the last persisted segment; its successor may
            continue;
          }
          break;
        }
        const bytes = Buffer.from(buffer.bytes.buffer, buffer.bytes.byteOffset, buffer.bytes.byteLength);
        const entry = this.valueLog.log.find((e) => e.seq === seq);
        const from = entry?.usedBytes ?? 0;
        const parsed = parseRecords(bytes, from, Math.min(bytes.length, this.segmentBytes), nextLsn);
        if (parsed.records.length === 0) {
          if (entry !== undefined && seq === last?.seq) {
            seq++; // the persisted segment was complete; its successor may follow
            continue;
          }
          break;
        }
        const known = buffer.primarySegmentOffset;
        let local = entry?.offset ?? (known === undefined ? undefined : this.segmentMap.get(known));
        if (local === undefined) local = this.allocator.allocate();
        this.device.write(local + from, bytes.subarray(from, parsed.endOffset), 'log');
        if (known !== undefined) this.segmentMap.set(known, local);
        if (entry === undefined) this.valueLog.log.push({ seq, offset: local, usedBytes: parsed.endOffset });
        else entry.usedBytes = parsed.endOffset;
        keptBytes += parsed.endOffset - from;
        segmentsFromBuffers++;
        nextLsn = parsed.nextLsn;
        seq++;
      }
      this.valueLog.log.sort((a, b) => a.seq - b.seq);
      this.device.sync();
      let active = this.valueLog.log.at(-1);
      if (active === undefined) {
        active = { seq: 0, offset: this.allocator.allocate(), usedBytes: null };
        this.valueLog.log.push(active);
      }
      active.usedBytes = null;
      this.persistManifest({ role: 'primary' });
    });
    this.abandon();
    const end = this.valueLog.log.at(-1)!;
    return { keptBytes, segmentsFromBuffers, activeSeq: end.seq, nextLsn };
  }

  /** Backup: the segment map (primary log segment offset → local offset). */
  segmentMapEntries(): [number, number][] {
    return [...this.segmentMap];
  }

  /**
   * Backup, Build-Index mode: indexes the records of log segment `seq` that are new since the last
   * call — call it right after `writeShippedLogSegment` of the same seq, with the same used-prefix
   * bytes. A partial seal followed by the full seal of the same segment indexes only the suffix;
   * the next segment starts at offset 0. Each record goes into L0 with a local pointer (the local
   * segment + the record's offset) and its own lsn and tombstone flag; then, as on a primary, a full
   * L0 is frozen and flushed in the background (autoCompact) or announced once with `l0Full`.
   *
   * Segments must be indexed in seq order without gaps (AssertionFailedError otherwise, nothing
   * changes). Bytes inside the announced prefix that do not parse as records continuing the lsn
   * chain raise CorruptSegmentError, and nothing of the call is indexed. Returns the number of
   * records indexed.
   */
  indexShippedLogSegment(args: { seq: number; bytes: Buffer }): number {
    this.checkUsable();
    this.requireRole('backup');
    const { seq, bytes } = args;
    const at = this.indexedPosition;
    const entry = this.valueLog.log.find((e) => e.seq === seq);
    if (entry === undefined || entry.usedBytes === null || entry.usedBytes < bytes.length) {
      throw new InvalidArgumentError(
        `log segment ${seq} must be persisted (writeShippedLogSegment) before it is indexed`,
      );
    }
    let start: number;
    if (seq === at.seq) {
      start = at.offset;
      assert(
        bytes.length >= start,
        () => `log segment ${seq} shrank: ${bytes.length} bytes, ${start} already indexed`,
      );
    } else {
      const previous = this.valueLog.log.find((e) => e.seq === at.seq);
      assert(
        seq === at.seq + 1 && previous !== undefined && previous.usedBytes === at.offset,
        () =>
          `log segment ${seq} indexed out of order: indexed through segment ${at.seq} at offset ` +
          `${at.offset} of ${previous?.usedBytes ?? 'none'}`,
      );
      start = 0;
    }
    if (start === bytes.length) return 0;
    const parsed = parseRecords(bytes, start, bytes.length, at.lsn);
    if (parsed.endOffset !== bytes.length) {
      throw new CorruptSegmentError(
        `shipped log segment ${seq}`,
        `records stop at offset ${parsed.endOffset} of ${bytes.length} (${parsed.stop}, expected lsn ${parsed.nextLsn})`,
      );
    }
    this.failStop.run(() => {
      for (const record of parsed.records) {
        this.compactor.l0.insert(record.key.toString('latin1'), {
          pointer: entry.offset + record.offset,
          lsn: record.lsn,
          tombstone: record.value === null,
        });
      }
      this.indexedPosition = { seq, offset: bytes.length, lsn: parsed.nextLsn };
      this.valueLog.nextLsn = parsed.nextLsn;
      this.compactor.afterApply();
    });
    return parsed.records.length;
  }

  // ───────────────────────────── write path ─────────────────────────────

  private async write(key: Bytes, value: Bytes | null): Promise<void> {
    this.checkUsable();
    if (this.closing !== undefined) throw new StoreClosedError(); // closing: nothing new is appended
    if (this.role !== 'primary') throw new NotWritableError(this.role);
    const k = toKey(key);
    const v = value === null ? null : toValue(value);
    if (k.length > this.maxKeyBytes) throw new KeyTooLargeError(k.length, this.maxKeyBytes);
    const valueBytes = v?.length ?? 0;
    const fitsSegment = this.segmentBytes - recordBytes(k.length, 0);
    if (valueBytes > this.maxValueBytes || valueBytes > fitsSegment) {
      throw new ValueTooLargeError(valueBytes, Math.min(this.maxValueBytes, fitsSegment));
    }
    // Back-pressure: L0 is full and the previous one is still being flushed.
    const { compactor } = this;
    while (
      compactor.l0.bytes >= this.l0Bytes &&
      compactor.frozen !== undefined &&
      compactor.background !== undefined
    ) {
      await compactor.background;
      this.checkUsable();
      if (this.closing !== undefined) throw new StoreClosedError();
    }
    const keyString = k.toString('latin1');
    const entry = this.failStop.run(() => this.valueLog.append(k, v));
    this.userBytes += k.length + valueBytes;
    if (this.commits.waits) {
      const active = this.valueLog.active!;
      const position = { seq: active.seq, offset: entry.pointer - active.offset, lsn: entry.lsn };
      return new Promise<void>((resolve, reject) => {
        this.commits.enqueue({ key: keyString, entry, position, resolve, reject });
      });
    }
    try {
      this.failStop.run(() => {
        compactor.l0.insert(keyString, entry);
        compactor.afterApply();
      });
    } catch (err) {
      // The record is in the log (and in L0): whatever failed after it, the outcome is unknown.
      throw new OutcomeUnknownError(
        `write of ${JSON.stringify(keyString)} was appended, then the store failed`,
        {
          cause: err,
        },
      );
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
  private persistManifest(overrides: Partial<ManifestData> = {}): void {
    writeManifest(this.device, {
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
  private abandon(): void {
    this.failStop.closed = true;
    if (this.ownsDevice) this.device.close();
  }

  private checkUsable(): void {
    this.failStop.check();
  }

  private requireRole(role: StoreRole): void {
    if (this.role !== role) throw new NotWritableError(this.role);
  }
}
