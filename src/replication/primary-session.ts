/**
 * PrimarySession: one region's primary data plane for one epoch — the engine, a BackupLink per
 * backup of the configuration and the RegionReplicator that gates acknowledgements on them. The
 * RegionPrimary actor opens it in `opening`, turns the client path on in `serving` and closes it
 * in `stopping`; the session itself holds no lifecycle decisions.
 *
 * Open (PROTOCOL §2): for each backup, connect with the epoch in the handshake, send OpenBackup
 * from the store's active segment and wait for BackupReady (the buffer rendezvous). A backup that
 * is new or behind — it persisted less than every segment before the active one, or (Send-Index)
 * its levels are not at the primary's last compaction — is re-synced first (`resync`, §7); a
 * backup claiming segments beyond the active one cannot be reconciled and gets
 * ResyncRequiredError. Only when every backup is ready does the replicator take over the store's
 * gates; from then on nothing is acknowledged that every backup of the configuration has not
 * received.
 *
 * Outcomes: a write refused before it reached the log (validation, not serving) failed; a write
 * whose replication failed may survive in the log and reappear after recovery or promotion, so it
 * is reported as OutcomeUnknownError, never as failed.
 *
 * Client path: `put`/`delete`/`get`/`scan` check that the session is serving and the key is in the
 * region's range, then call the engine directly (no actor event per operation, DESIGN §1). Keys are
 * strings (UTF-8) or bytes. `batch` is the engine's atomic batch (every key in the region, else
 * WRONG_PRIMARY: the client splits nothing, it refuses a cross-region batch first); `snapshot` and
 * `iterator` are lease-checked once, when taken: a cursor then reads its snapshot of this store.
 */
import { assert } from '../assert.js';
import { crc32c } from '../engine/crc.js';
import {
  type BatchOperation,
  type CursorOptions,
  type KeyValue,
  type ScanOptions,
  type Store,
  type StoreCursor,
  StoreFailedError,
  type StoreSnapshot,
} from '../engine/store.js';
import {
  InvalidArgumentError,
  isDeviceError,
  KeyTooLargeError,
  OutcomeUnknownError,
  StoreClosedError,
  TalosError,
  ValueTooLargeError,
  WrongPrimaryError,
} from '../errors.js';
import type { Connection } from '../fabric/types.js';
import { describeKeyLike, type KeyLike, keyInRange } from '../keys.js';
import { defective, NO_PROBE, type Probe } from '../probe.js';
import { BackupLink } from './backup-link.js';
import type { ReplicationMode } from './messages.js';
import { RegionReplicator } from './region-replicator.js';

export class ResyncRequiredError extends TalosError {
  constructor(
    readonly backupNodeId: string,
    detail: string,
  ) {
    super('RESYNC_REQUIRED', `backup ${backupNodeId} needs re-sync: ${detail}`);
  }
}

/** The region a key falls in is `[minKey, maxKey)`; maxKey undefined = unbounded. */
export interface KeyRange {
  minKey: string;
  maxKey?: string;
}

export interface PrimarySessionOptions {
  regionId: string;
  epoch: number;
  nodeId: string;
  range: KeyRange;
  mode: ReplicationMode;
  logBufferCount: number;
  store: Store;
  /** Connects to a backup node (the handshake carries this node id and the epoch). */
  connect: (backupNodeId: string) => Promise<Connection>;
  backups: readonly string[];
  /**
   * Self-fencing (PROTOCOL §6): whether this node's lease is valid minus the safety margin. Without
   * it a session never stops acknowledging on its own (single-process use without leases).
   */
  leaseValid?: () => boolean;
  /**
   * The simulator's trace and defects (`failed-after-append`; given on to this session's links and
   * replicator; src/probe.ts). Default none.
   */
  probe?: Probe;
}

export class PrimarySession {
  readonly regionId: string;
  readonly epoch: number;
  readonly store: Store;
  private links: BackupLink[] = [];
  /** Bytes (log and index segments) sent to backups by re-sync at open. */
  resyncedBytes = 0;
  private replicator: RegionReplicator | undefined;
  private serving = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Writes acknowledged so far, for the `failed-after-append` mutant only. */
  private mutantAcks = 0;
  private readonly failureListeners: ((backupNodeId: string, err: unknown) => void)[] = [];
  private readonly probe: Probe;

  constructor(private readonly options: PrimarySessionOptions) {
    this.probe = options.probe ?? NO_PROBE;
    this.regionId = options.regionId;
    this.epoch = options.epoch;
    this.store = options.store;
  }

  /** §2: connects to every backup and waits until each is ready; installs replication. */
  async open(): Promise<void> {
    const o = this.options;
    const active = o.store.logSegments().at(-1);
    assert(active !== undefined && active.usedBytes === null, 'a primary store has an active segment');
    const fromSegmentSeq = active.seq;
    const links = await Promise.all(
      o.backups.map(async (backupNodeId) => {
        const { link, persistedThrough, lastCompactionId, rebased } = await this.openLink(backupNodeId);
        // After a rebase, equal compaction ids do not prove equal levels: they count the
        // compactions of two lineages. The levels are shipped whole (found by the simulator,
        // overlapping seed 185150896: a rebased backup refused this primary's next flush).
        await this.resync(link, persistedThrough, rebased ? -1 : lastCompactionId);
        return link;
      }),
    );
    if (this.closed) throw new TalosError('SESSION_CLOSED', `region ${o.regionId}: closed while opening`);
    // With no backup, nothing re-synced the active prefix onto another node's disk: it may hold
    // writes acknowledged in an earlier epoch whose copies were in backups that are gone now, and
    // this node's memory is the only copy left. Its device holds them before this epoch serves.
    if (links.length === 0) await o.store.sync();
    const replicator = new RegionReplicator({
      store: o.store,
      links,
      mode: o.mode,
      fromSegmentSeq,
      probe: this.probe,
      onLinkFailure: (link, err) => {
        for (const listener of this.failureListeners) listener(link.backupNodeId, err);
      },
    });
    replicator.start();
    this.replicator = replicator;
  }

  /**
   * Online catch-up of a joining backup (PROTOCOL §7) while this session serves: rounds of re-sync
   * over a link of its own — sealed log segments from where the backup is, the active segment's
   * prefix, the live levels when its compaction differs — until a round finds nothing new sealed
   * and no new compaction (or after `maxRounds`). The link then closes; the caller reports the
   * backup caught up and the controller makes it a member at the next epoch, whose open re-syncs
   * only what arrived since the last round (so the region pauses for that delta, not for the whole
   * copy). Nothing here gates acknowledgements.
   */
  async catchUp(backupNodeId: string, maxRounds = 4): Promise<void> {
    const { link, persistedThrough, lastCompactionId, rebased } = await this.openLink(backupNodeId);
    try {
      let from = persistedThrough;
      // After a rebase the levels go whole (see open).
      let compactionId = rebased ? -1 : lastCompactionId;
      for (let round = 0; round < maxRounds; round++) {
        if (this.closed) throw new TalosError('SESSION_CLOSED', `region ${this.regionId}: closed`);
        const before = this.store.logSegments().at(-1)!.seq;
        const sent = await this.resync(link, from, compactionId);
        const quiet = sent.activeSeq === before && sent.compactionId === compactionId;
        from = sent.activeSeq;
        compactionId = sent.compactionId;
        if (quiet && round > 0) break;
      }
    } finally {
      link.close();
    }
  }

  /**
   * Connects to a backup at this epoch and runs the rendezvous; rebases its maps when they are keyed
   * by the primary this node replaced. Resolves with the backup's persisted position (after a
   * rebase's truncation) and its last installed compaction.
   */
  private async openLink(
    backupNodeId: string,
  ): Promise<{ link: BackupLink; persistedThrough: number; lastCompactionId: number; rebased: boolean }> {
    const o = this.options;
    const fromSegmentSeq = o.store.logSegments().at(-1)!.seq;
    const connection = await o.connect(backupNodeId);
    const link = new BackupLink(connection, {
      regionId: o.regionId,
      epoch: o.epoch,
      primaryNodeId: o.nodeId,
      segmentBytes: o.store.segmentBytes,
      logBufferCount: o.logBufferCount,
      mode: o.mode,
      fromSegmentSeq,
      rebaseFrom: o.store.replica.mapOwner() ?? '',
      probe: this.probe,
    });
    this.links.push(link);
    if (this.closed) link.close();
    const ready = await link.open();
    let persistedThrough = ready.persistedThrough;
    const rebased = ready.mapOwner !== '' && ready.mapOwner !== o.nodeId;
    if (rebased) {
      // §7 rebase: the backup's maps are keyed by the primary this node replaced. (A backup keyed
      // by any other node reset its store when it saw OpenBackup.rebaseFrom.)
      if (o.store.replica.mapOwner() !== ready.mapOwner) {
        throw new ResyncRequiredError(
          backupNodeId,
          `its maps are keyed by ${ready.mapOwner}, this primary's lineage by ${o.store.replica.mapOwner() ?? 'nobody'}`,
        );
      }
      this.probe.trace?.({
        kind: 'phase',
        phase: 'rebase',
        node: o.nodeId,
        peer: backupNodeId,
        regionId: o.regionId,
      });
      await link.rebase(
        ready.mapOwner,
        o.store.logSegments().map((e) => [e.seq, e.offset]),
        o.store.replica.indexMapEntries(),
      );
      // What lay past this primary's log end was truncated there.
      persistedThrough = Math.min(persistedThrough, fromSegmentSeq);
      link.resetPersistedThrough(persistedThrough);
    }
    if (persistedThrough > fromSegmentSeq) {
      throw new ResyncRequiredError(
        backupNodeId,
        `it persisted through segment ${persistedThrough}, beyond the primary's active ${fromSegmentSeq}`,
      );
    }
    return { link, persistedThrough, lastCompactionId: ready.lastCompactionId, rebased };
  }

  /**
   * Re-sync (PROTOCOL §7), before the live stream starts — the region is not served meanwhile:
   * 1. every sealed log segment from the backup's last persisted one (it may hold only a partial
   *    seal of it) through the one before the active segment, whole, through the ordinary seal
   *    path (buffer reuse waits on the backup's persist acks, so a slow backup back-pressures);
   * 2. the active segment's prefix as a partial seal, persisted before the epoch serves (it may
   *    hold writes acknowledged in an earlier epoch, which the backup has only in that epoch's
   *    buffers; level entries may point into it);
   * 3. in Send-Index mode, when the backup's levels are not the primary's (its last installed
   *    compaction differs): every live index segment, then InstallLevels replacing its levels at
   *    once — each after the log bytes its entries point into (§8.6: one message chain per link).
   * The active segment's prefix follows with the live stream (the replicator rewrites it from
   * offset 0). Counts what it sent in `resyncedBytes`.
   */
  private async resync(
    link: BackupLink,
    persistedThrough: number,
    lastCompactionId: number,
  ): Promise<{ activeSeq: number; compactionId: number }> {
    const store = this.store;
    this.probe.trace?.({
      kind: 'phase',
      phase: 'resync',
      node: this.options.nodeId,
      peer: link.backupNodeId,
      regionId: this.regionId,
    });
    // The levels are taken first, in one synchronous step with the replay position and the index
    // bytes (a compaction may free those segments while this session serves); the log sent after
    // it only grows, so every entry points into bytes the backup receives first (§8.6).
    const compactionId = store.replica.lastCompactionId();
    const shipLevels = this.options.mode === 'send-index' && lastCompactionId !== compactionId;
    const levels = shipLevels ? store.levelDescriptors() : [];
    const levelBytes = levels.map((level) => level.map((d) => store.replica.readIndexSegment(d.offset)));
    const replayPosition = store.replica.replayPosition();
    const active = store.logSegments().at(-1)!;
    for (const entry of store.logSegments()) {
      if (entry.seq < Math.max(persistedThrough, 0) || entry.seq >= active.seq) continue;
      assert(entry.usedBytes !== null, 'segments before the active one are sealed');
      const bytes = store.replica.readLogSegment(entry.seq);
      this.resyncedBytes += bytes.length;
      await link.resyncLogSegment(entry.seq, entry.offset, bytes);
    }
    // The active segment's prefix, persisted (partially sealed) on the backup before the new epoch
    // serves: it may hold writes acknowledged in an earlier epoch that the backup has only in that
    // epoch's buffers — which no promotion would read any more. Level entries may point into it.
    // (While the session serves, the segment may have been sealed meanwhile: its bytes are whole.)
    // Sent even when empty: it is also the handshake that tells the backup this epoch took over
    // its log tail (BackupRegion.tookOver).
    const activeBytes = store.replica.readLogSegment(active.seq);
    this.resyncedBytes += activeBytes.length;
    await link.resyncActivePrefix(active.seq, active.offset, activeBytes);
    if (!shipLevels) return { activeSeq: active.seq, compactionId: lastCompactionId };
    const shipped: Promise<void>[] = [];
    let ordinal = 0; // unique per shipped segment: the backup's persist acks are keyed by it
    levels.forEach((level, i) => {
      level.forEach((descriptor, j) => {
        const bytes = levelBytes[i]![j]!;
        this.resyncedBytes += bytes.length;
        const { persisted } = link.shipIndex({
          compactionId,
          level: i + 1,
          ordinal: ordinal++,
          segmentOffset: descriptor.offset,
          usedBytes: bytes.length,
          crc32c: crc32c(bytes),
          descriptor,
          bytes,
        });
        shipped.push(persisted);
      });
    });
    await Promise.all(shipped);
    await link.installLevels(
      compactionId,
      levels.map((level) => level.map((d) => d.offset)),
      replayPosition,
    );
    return { activeSeq: active.seq, compactionId };
  }

  /** Called once per failed backup link (the first failure of each). */
  onLinkFailure(listener: (backupNodeId: string, err: unknown) => void): void {
    this.failureListeners.push(listener);
  }

  /** The client path is on only between `startServing` and `stopServing` (the actor's `serving`). */
  startServing(): void {
    assert(this.replicator !== undefined && !this.closed, 'serve only an open session');
    this.serving = true;
    this.probe.trace?.({ kind: 'phase', phase: 'serve', node: this.options.nodeId, regionId: this.regionId });
  }

  stopServing(): void {
    this.serving = false;
  }

  get isServing(): boolean {
    return this.serving;
  }

  /** Bytes written into backups' registered memory by this session. */
  replicatedBytes(): number {
    let total = 0;
    for (const link of this.links) total += link.writtenBytes;
    return total;
  }

  async put(key: KeyLike, value: Uint8Array | string): Promise<void> {
    this.checkServing(key);
    await this.replicated(key, this.store.put(key, value));
  }

  async delete(key: KeyLike): Promise<void> {
    this.checkServing(key);
    await this.replicated(key, this.store.delete(key));
  }

  /** An atomic batch (src/engine/write-batch.ts); every key must lie in this region. */
  async batch(operations: readonly BatchOperation[]): Promise<void> {
    for (const op of operations) this.checkServing(op.key);
    if (operations.length === 0) return;
    await this.replicated(operations[0]!.key, this.store.batch(operations));
  }

  async has(key: KeyLike): Promise<boolean> {
    this.checkServing(key);
    const found = await this.store.has(key);
    this.answerRead();
    return found;
  }

  /** A snapshot of this region's store (the caller releases it); lease-checked when taken. */
  snapshot(): StoreSnapshot {
    this.checkServingRead();
    return this.store.snapshot();
  }

  /** A streaming cursor over this region's store (the caller clips to the range and closes it). */
  iterator(options: CursorOptions): StoreCursor {
    this.checkServingRead();
    return this.store.iterator(options);
  }

  private checkServingRead(): void {
    if (!this.serving || !this.leaseHolds()) {
      throw new WrongPrimaryError(this.regionId, this.options.nodeId, undefined);
    }
  }

  /** True while the lease allows acknowledging and serving (always, without a lease check). */
  private leaseHolds(): boolean {
    return this.options.leaseValid?.() ?? true;
  }

  /**
   * Reads are lease-checked when they start and again when they are answered (PROTOCOL §6): the
   * answer must not leave after the lease ran out — a node stalled between the two (its store read
   * waiting on a device, say) may by then have been replaced, and a new primary may have
   * acknowledged a newer value. A read refused there changed nothing, so it is WRONG_PRIMARY (the
   * client retries on the new primary).
   */
  async get(key: KeyLike): Promise<Buffer | undefined> {
    this.checkServing(key);
    const value = await this.store.get(key);
    this.answerRead();
    return value;
  }

  /** Scans within the region's range (the caller clips to it); lease-checked as `get`. */
  async scan(options: ScanOptions): Promise<KeyValue[]> {
    if (!this.serving || !this.leaseHolds()) {
      throw new WrongPrimaryError(this.regionId, this.options.nodeId, undefined);
    }
    const rows = await this.store.scan(options);
    this.answerRead();
    return rows;
  }

  /** The check at a read's answer: still serving, lease still held. */
  private answerRead(): void {
    if (!this.serving || !this.leaseHolds()) {
      throw new WrongPrimaryError(this.regionId, this.options.nodeId, undefined);
    }
    this.probe.trace?.({
      kind: 'read',
      node: this.options.nodeId,
      regionId: this.regionId,
      epoch: this.epoch,
    });
  }

  /**
   * Waits until every compaction commit sent so far was installed by every backup, and every
   * request sent to a backup (seals, tail syncs, index segments) was applied there.
   */
  async settle(): Promise<void> {
    await this.store.settleCommits();
    await this.replicator?.commitsInstalled();
    await Promise.all(this.links.map((link) => link.drained()));
  }

  /**
   * Stops serving, removes the gates, tells the backups and closes the links (not the store).
   * Idempotent and ordered: a second close (a STOP while the actor was already closing to re-open)
   * waits for the first, so the owner closes the store only after the commit chain drained.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.serving = false;
    this.closed = true;
    await this.store.settleCommits().catch(() => {});
    this.replicator?.stop();
    for (const link of this.links) link.close();
  }

  /** A write's promise, with failures after the append reported as unknown outcomes. */
  private async replicated(key: KeyLike, write: Promise<void>): Promise<void> {
    try {
      await write;
    } catch (err) {
      // The engine reports a write that reached its log as an unknown outcome itself; the classes
      // below it raises only before the append.
      if (definiteFailure(err)) throw err;
      throw new OutcomeUnknownError(
        `region ${this.regionId}: write of ${describeKeyLike(key)} may or may not have been applied`,
        { cause: err },
      );
    }
    if (defective(this.probe, 'failed-after-append') && ++this.mutantAcks % 4 === 0)
      throw new StoreClosedError();
    // Replicated, but the lease ran out meanwhile: a new epoch may have begun without this write
    // (or with it), so it is not acknowledged — its outcome is unknown (PROTOCOL §6).
    if (!this.leaseHolds()) {
      throw new OutcomeUnknownError(
        `region ${this.regionId}: the lease of ${this.options.nodeId} ran out before ${describeKeyLike(key)} was acknowledged`,
      );
    }
    this.probe.trace?.({
      kind: 'ack',
      node: this.options.nodeId,
      regionId: this.regionId,
      epoch: this.epoch,
      // The simulator's keys are strings; a binary key is traced as its bytes in latin1.
      key: typeof key === 'string' ? key : Buffer.from(key).toString('latin1'),
    });
  }

  private checkServing(key: KeyLike): void {
    if (!this.serving || !this.leaseHolds()) {
      throw new WrongPrimaryError(this.regionId, this.options.nodeId, undefined);
    }
    const { minKey, maxKey } = this.options.range;
    if (!keyInRange(key, minKey, maxKey)) {
      throw new WrongPrimaryError(this.regionId, this.options.nodeId, undefined);
    }
  }
}

/**
 * Errors raised before a record is appended: the write certainly did not happen. (After the append
 * the engine rejects with OutcomeUnknownError, whatever the cause: see Store's rejectAppended.)
 */
function definiteFailure(err: unknown): boolean {
  return (
    (!(err instanceof OutcomeUnknownError) && err instanceof KeyTooLargeError) ||
    err instanceof ValueTooLargeError ||
    err instanceof InvalidArgumentError ||
    err instanceof StoreClosedError ||
    err instanceof StoreFailedError ||
    // The store's device failed while it made room for the record (a seal), before the append.
    isDeviceError(err) ||
    err instanceof WrongPrimaryError
  );
}
