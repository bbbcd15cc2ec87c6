/**
 * The backup's side of one region (PROTOCOL §2, §4, §5): registered buffers the primary writes
 * into, and the handlers for the primary's control messages, run strictly one at a time in arrival
 * order (so "segment sealed" is persisted before an index segment that points into it is
 * translated, §8.6).
 *
 * - OpenBackup: open (or recover) the backup store, register K log buffers and two index buffers
 *   of one segment each, answer BackupReady with their handles and the persisted position.
 * - SegmentSealed: check epoch and the CRC of the buffer's used prefix, persist it as a local
 *   segment and record it in the segment map (one manifest write), answer SegmentPersisted.
 * - IndexSegment: verify and translate in one pass (index-translate.ts: each block's CRC checked
 *   once on a private copy, every value pointer rewritten through the segment map — a missing
 *   mapping is refused, never guessed), persist, answer IndexSegmentPersisted.
 * - CompactionCommit: install the level change atomically, answer CompactionCommitted.
 * - Re-sync (§7): InstallLevels replaces every level at once (LevelsInstalled); Rebase re-keys the
 *   maps to a promoted primary's offsets and truncates what lies past its log (Rebased).
 * - Build-Index mode (OpenBackup.mode, PROTOCOL §5): SegmentSealed also indexes the segment's newly
 *   persisted records into the backup store's own L0 (which flushes and compacts by itself or
 *   through the owner's actors); IndexSegment and CompactionCommit are refused with MODE_MISMATCH.
 * - A message with an epoch below this region's gets Refused{STALE_EPOCH}; a failure to apply one
 *   gets Refused with the error's code, and the region stops accepting (fail-stop).
 */
import { assert } from '../assert.js';
import { translateIndexSegment } from '../engine/index-segment.js';
import type { Store } from '../engine/store.js';
import { TalosError } from '../errors.js';
import type { Connection, LocalRegion } from '../fabric/types.js';
import { defective, NO_PROBE, type Probe } from '../probe.js';
import { backupStore } from './backup-store.js';
import {
  type CompactionCommit,
  decodeMessage,
  encodeMessage,
  type IndexSegmentShipped,
  type InstallLevels,
  type OpenBackup,
  type ReplicationMessage,
  type ReplicationMode,
  type SegmentSealed,
} from './messages.js';

/** A message that does not belong to the region's replication mode (or a re-open changing it). */
export class ModeMismatchError extends TalosError {
  constructor(detail: string) {
    super('MODE_MISMATCH', detail);
  }
}

/** Handlers that write to the device (a slow-device fault delays these). */
const PERSISTING: ReadonlySet<ReplicationMessage['type']> = new Set([
  'SegmentSealed',
  'IndexSegment',
  'CompactionCommit',
  'InstallLevels',
]);

export interface BackupRegionOptions {
  nodeId: string;
  /**
   * Opens (or recovers) this node's backup store for a region. In Build-Index mode the store must
   * rebuild its L0 at open (StoreOptions.rebuildL0) so a restart loses nothing it indexed.
   */
  openStore: (
    regionId: string,
    segmentBytes: number,
    mode: ReplicationMode,
    /** Map owners the opening primary can rebase from; a store keyed by another must be reset (§7). */
    acceptedOwners: readonly string[],
  ) => Promise<Store>;
  /** After each persisted seal (full or partial): the backup's position, for promotion ranking. */
  onPersisted?: (regionId: string, epoch: number, seq: number, usedBytes: number) => void;
  /**
   * Failure injection (a slow disk): awaited before each handler that persists (seal, index
   * segment, commit, levels install). The Device port is synchronous, so a simulated slow device
   * shows as virtual time before the persist. Production passes none.
   */
  persistDelay?: () => Promise<void> | undefined;
  /** CPU time source in µs (process.cpuUsage in production); with `onWork`, accounts each handler. */
  cpuMicros?: () => number;
  onWork?: (kind: ReplicationMessage['type'], cpuMicros: number) => void;
  /** The simulator's trace and defects (`no-revoke`, `stale-map`; src/probe.ts). Default none. */
  probe?: Probe;
}

export interface BackupRegionStats {
  sealedSegments: number;
  shippedIndexSegments: number;
  commits: number;
  refused: number;
}

export class BackupRegion {
  regionId: string | undefined;
  epoch = 0;
  /** The first log segment the primary streams (OpenBackup.fromSegmentSeq). */
  private fromSegmentSeq = 0;
  /** The replication mode OpenBackup named; fixed for the life of the region. */
  mode: ReplicationMode | undefined;
  store: Store | undefined;
  private logBuffers: LocalRegion[] = [];
  private indexBuffers: LocalRegion[] = [];
  private queue: Promise<void> = Promise.resolve();
  private stopped: unknown;
  readonly stats: BackupRegionStats = { sealedSegments: 0, shippedIndexSegments: 0, commits: 0, refused: 0 };
  private readonly closeListeners: (() => void)[] = [];
  private readonly probe: Probe;

  constructor(
    private readonly connection: Connection,
    private readonly options: BackupRegionOptions,
  ) {
    this.probe = options.probe ?? NO_PROBE;
    connection.onMessage((bytes) => {
      this.queue = this.queue.then(() => this.handle(bytes));
    });
    connection.onClose(() => this.release());
  }

  onClose(listener: () => void): void {
    this.closeListeners.push(listener);
  }

  /**
   * Whether this epoch's primary persisted its active prefix here (its open's handshake): an epoch
   * that never did never served, so a promotion takes the tail from an older epoch's buffers.
   */
  tookOver = false;

  /** Revokes every buffer (fencing, §1) and stops handling messages. */
  fence(reason: string): void {
    const buffers = [...this.logBuffers, ...this.indexBuffers];
    // Skipping the revocation is a simulator-only defect (the `no-revoke` mutant).
    if (!defective(this.probe, 'no-revoke')) for (const region of buffers) this.connection.revoke(region);
    this.probe.trace?.({
      kind: 'fenced',
      node: this.options.nodeId,
      regionId: this.regionId ?? '',
      epoch: this.epoch,
      regionKeys: buffers.map((r) => r.handle.regionKey),
    });
    this.stopped ??= new TalosError('FENCED', reason);
  }

  /** The primary whose OpenBackup this region follows. */
  private primaryNodeId = '';

  /** Traces the segment map's keys (after an open, a rebase or a levels install). */
  private traceSegmentMap(): void {
    const store = this.store;
    if (store === undefined || this.probe.trace === undefined) return;
    this.probe.trace?.({
      kind: 'segment-map',
      backup: this.options.nodeId,
      regionId: this.regionId ?? '',
      primarySegments: store.replica.segmentMapEntries().map(([primary]) => primary),
    });
  }

  /**
   * Promotion (PROTOCOL §6): this region's log buffers as candidates for the tail after what the
   * store persisted. With S the last persisted segment (or the first the primary streamed), the
   * unpersisted segments are S (when its persist was partial) or S + 1 … S + K (when it was full:
   * the buffer of S may already hold S + K), so each seq from S to S + K is offered with buffer
   * `seq mod K`; the buffers of S and S + K are the same one, and the promotion's LSN continuity
   * check keeps whichever segment it really holds. (Offering only S … S + K − 1 lost the tail of
   * S + K — found by the simulator with K = 1 and a slow backup disk.) Call after `fence` and
   * `idle`: the bytes no longer move.
   */
  tailCandidates(): { seq: number; bytes: Uint8Array }[] {
    const k = this.logBuffers.length;
    if (k === 0 || this.store === undefined) return [];
    const first = this.store.logSegments().at(-1)?.seq ?? this.fromSegmentSeq;
    return Array.from({ length: k + 1 }, (_, i) => ({
      seq: first + i,
      bytes: this.logBuffers[(first + i) % k]!.bytes,
    }));
  }

  /** Waits until every message received so far was handled. */
  async idle(): Promise<void> {
    await this.queue;
  }

  private async handle(bytes: Uint8Array): Promise<void> {
    let message: ReplicationMessage;
    try {
      message = decodeMessage(bytes);
    } catch (err) {
      this.refuse(this.regionId ?? '', err);
      return;
    }
    if (this.stopped !== undefined) {
      this.refuse(message.regionId, this.stopped);
      return;
    }
    if (message.type !== 'OpenBackup' && message.regionId !== this.regionId) {
      this.refuse(
        message.regionId,
        new TalosError('UNKNOWN_REGION', `region ${message.regionId} is not open here`),
      );
      return;
    }
    if (message.epoch < this.epoch) {
      this.stats.refused++;
      this.reply({
        type: 'Refused',
        regionId: message.regionId,
        epoch: message.epoch,
        currentEpoch: this.epoch,
        code: 'STALE_EPOCH',
        reason: `epoch ${message.epoch} < ${this.epoch}`,
      });
      return;
    }
    if (PERSISTING.has(message.type)) {
      const delay = this.options.persistDelay?.();
      if (delay !== undefined) {
        await delay;
        if (this.stopped !== undefined) {
          this.refuse(message.regionId, this.stopped); // fenced or failed meanwhile
          return;
        }
      }
    }
    const started = this.options.cpuMicros?.() ?? 0;
    try {
      switch (message.type) {
        case 'OpenBackup':
          await this.open(message);
          break;
        case 'SegmentSealed':
          await this.sealed(message);
          break;
        case 'IndexSegment':
          this.indexSegment(message);
          break;
        case 'CompactionCommit':
          await this.commit(message);
          break;
        case 'InstallLevels':
          await this.installLevels(message);
          break;
        case 'Rebase': {
          const result = await backupStore(this.requireStore()).rebaseMaps({
            owner: message.owner,
            newOwner: message.newOwner,
            segments: message.segments,
            indexMap: message.indexMap,
            probe: this.probe,
          });
          this.traceSegmentMap();
          this.reply({
            type: 'Rebased',
            regionId: message.regionId,
            epoch: this.epoch,
            truncatedSegments: result.truncatedSegments,
          });
          break;
        }
        case 'CloseRegion':
          await this.close();
          break;
        default:
          throw new TalosError('UNEXPECTED', `unexpected ${message.type} at a backup`);
      }
    } catch (err) {
      this.stopped = err;
      this.refuse(message.regionId, err);
    } finally {
      if (this.options.cpuMicros !== undefined) {
        this.options.onWork?.(message.type, this.options.cpuMicros() - started);
      }
    }
  }

  private async open(message: OpenBackup): Promise<void> {
    assert(this.regionId === undefined || this.regionId === message.regionId, 'one region per link');
    if (this.mode !== undefined && this.mode !== message.mode) {
      throw new ModeMismatchError(
        `region ${message.regionId} is open in ${this.mode} mode, not ${message.mode}`,
      );
    }
    this.regionId = message.regionId;
    this.epoch = message.epoch;
    this.primaryNodeId = message.primaryNodeId;
    this.mode = message.mode;
    this.fromSegmentSeq = message.fromSegmentSeq;
    this.store ??= await this.options.openStore(message.regionId, message.segmentBytes, message.mode, [
      message.primaryNodeId,
      ...(message.rebaseFrom === '' ? [] : [message.rebaseFrom]),
    ]);
    assert(this.store.segmentBytes === message.segmentBytes, 'backup and primary share the segment size');
    if (this.logBuffers.length === 0) {
      this.logBuffers = Array.from({ length: message.logBufferCount }, () =>
        this.connection.registerRegion(message.segmentBytes),
      );
      this.indexBuffers =
        message.mode === 'send-index'
          ? [
              this.connection.registerRegion(message.segmentBytes),
              this.connection.registerRegion(message.segmentBytes),
            ]
          : [];
    }
    // The first primary to open a fresh store keys its maps; another one must rebase them (§7).
    if (this.store.replica.mapOwner() === undefined)
      await backupStore(this.store).setMapOwner(message.primaryNodeId);
    const persisted = this.store.logSegments().filter((e) => e.usedBytes !== null);
    this.traceSegmentMap();
    this.reply({
      type: 'BackupReady',
      regionId: message.regionId,
      epoch: message.epoch,
      logBuffers: this.logBuffers.map((r) => r.handle),
      indexBuffers: this.indexBuffers.map((r) => r.handle),
      persistedThrough: persisted.length === 0 ? -1 : Math.max(...persisted.map((e) => e.seq)),
      lastCompactionId: this.store.replica.lastCompactionId(),
      mapOwner: this.store.replica.mapOwner() ?? '',
    });
  }

  private async sealed(message: SegmentSealed): Promise<void> {
    const store = this.requireStore();
    const buffer = this.logBuffers[message.seq % this.logBuffers.length]!;
    if (message.usedBytes > buffer.bytes.length)
      throw new TalosError('BAD_SEAL', 'usedBytes beyond the buffer');
    const bytes = Buffer.from(buffer.bytes.subarray(0, message.usedBytes));
    await backupStore(store).writeShippedLogSegment({
      seq: message.seq,
      primarySegmentOffset: message.primarySegment,
      bytes,
      crc32c: message.crc32c,
    });
    // Build-Index: the persisted records go into this backup's own L0 (PROTOCOL §5, last paragraph).
    if (this.mode === 'build-index') backupStore(store).indexShippedLogSegment({ seq: message.seq, bytes });
    this.stats.sealedSegments++;
    this.probe.trace?.({
      kind: 'log-persisted',
      backup: this.options.nodeId,
      primary: this.primaryNodeId,
      regionId: message.regionId,
      epoch: this.epoch,
      seq: message.seq,
      primarySegment: message.primarySegment,
      partial: message.partial,
    });
    // The first partial seal of an epoch is its primary's active-prefix handshake (sent at every
    // open, even empty, before it serves; tail syncs come only later): from here on this region's
    // buffers, not an older epoch's, hold the log's tail.
    if (message.partial) this.tookOver = true;
    this.reply({
      type: 'SegmentPersisted',
      regionId: message.regionId,
      epoch: this.epoch,
      seq: message.seq,
      usedBytes: message.usedBytes,
      partial: message.partial,
    });
    this.options.onPersisted?.(message.regionId, this.epoch, message.seq, message.usedBytes);
  }

  private indexSegment(message: IndexSegmentShipped): void {
    const store = this.requireStore();
    this.requireSendIndex(message.type);
    const buffer = this.indexBuffers[message.slot];
    if (buffer === undefined) throw new TalosError('BAD_SLOT', `no index buffer ${message.slot}`);
    if (message.usedBytes > buffer.bytes.length)
      throw new TalosError('BAD_INDEX', 'usedBytes beyond the buffer');
    // No copy and no whole-segment CRC here: the translation copies the bytes first and checks
    // every block's CRC and the metadata CRC on its copy (one pass, index-translate.ts), which
    // covers every byte the shipping CRC covers.
    const bytes = Buffer.from(buffer.bytes.buffer, buffer.bytes.byteOffset, message.usedBytes);
    if (this.probe.trace !== undefined) {
      const pointedInto = new Set<number>();
      translateIndexSegment(bytes, store.segmentBytes, (primary) => {
        pointedInto.add(primary);
        return primary;
      });
      this.probe.trace?.({
        kind: 'index-received',
        backup: this.options.nodeId,
        regionId: message.regionId,
        epoch: this.epoch,
        primarySegments: [...pointedInto],
      });
    }
    backupStore(store).writeShippedIndexSegment({ primarySegmentOffset: message.primarySegment, bytes });
    this.stats.shippedIndexSegments++;
    this.reply({
      type: 'IndexSegmentPersisted',
      regionId: message.regionId,
      epoch: this.epoch,
      compactionId: message.compactionId,
      ordinal: message.ordinal,
      slot: message.slot,
    });
  }

  private async commit(message: CompactionCommit): Promise<void> {
    this.probe.trace?.({
      kind: 'phase',
      phase: 'level-install',
      node: this.options.nodeId,
      regionId: this.regionId ?? '',
    });
    const store = this.requireStore();
    this.requireSendIndex(message.type);
    await backupStore(store).installShippedCompaction({
      compactionId: message.compactionId,
      srcLevel: message.srcLevel,
      dstLevel: message.dstLevel,
      newSegments: message.newSegments,
      removedSegments: message.removedSegments,
      trivialMove: message.trivialMove,
      replayFrom: message.replayFrom,
    });
    this.stats.commits++;
    this.reply({
      type: 'CompactionCommitted',
      regionId: message.regionId,
      epoch: this.epoch,
      compactionId: message.compactionId,
    });
  }

  private async close(): Promise<void> {
    this.stopped ??= new TalosError('CLOSED', 'region closed by the primary');
    this.connection.close();
  }

  private release(): void {
    this.stopped ??= new TalosError('CLOSED', 'connection closed');
    for (const listener of this.closeListeners.splice(0)) listener();
  }

  /** Re-sync (§7): every level replaced at once by segments shipped before (or already here). */
  private async installLevels(message: InstallLevels): Promise<void> {
    this.probe.trace?.({
      kind: 'phase',
      phase: 'level-install',
      node: this.options.nodeId,
      regionId: this.regionId ?? '',
    });
    const store = this.requireStore();
    this.requireSendIndex(message.type);
    await backupStore(store).installShippedLevels({
      levels: message.levels,
      replayFrom: message.replayFrom,
      compactionId: message.compactionId,
    });
    this.traceSegmentMap();
    this.reply({
      type: 'LevelsInstalled',
      regionId: message.regionId,
      epoch: this.epoch,
      compactionId: message.compactionId,
    });
  }

  /** Index segments and compaction commits exist only in Send-Index mode. */
  private requireSendIndex(type: ReplicationMessage['type']): void {
    if (this.mode !== 'send-index') {
      throw new ModeMismatchError(`${type} refused: region ${this.regionId} is in ${this.mode} mode`);
    }
  }

  private requireStore(): Store {
    if (this.store === undefined) throw new TalosError('NOT_OPEN', 'region not opened');
    return this.store;
  }

  private refuse(regionId: string, err: unknown): void {
    this.stats.refused++;
    const code = err instanceof TalosError ? err.code : 'ERROR';
    const reason = err instanceof Error ? err.message : String(err);
    this.reply({ type: 'Refused', regionId, epoch: this.epoch, currentEpoch: this.epoch, code, reason });
  }

  private reply(message: ReplicationMessage): void {
    if (this.connection.closed) return;
    this.connection.send(encodeMessage(message));
  }
}
