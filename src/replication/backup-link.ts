/**
 * The primary's side of one backup of one region (PROTOCOL §2–5): a fabric connection, the
 * backup's registered log and index buffers, and the ordering rules between one-sided writes and
 * control messages.
 *
 * - Log bytes of segment `seq` go to log buffer `seq mod K` at the same offset they have in the
 *   primary's segment. Writes are issued in log order; the fabric places them in issue order.
 * - Buffer reuse (§4.3): the first write of segment `seq` waits until the backup persisted the full
 *   seal of `seq − K`, so a slow backup back-pressures the primary instead of being overwritten.
 * - A control message that announces bytes (SegmentSealed, IndexSegment) is sent only after the
 *   write carrying them completed; messages leave in the order they were asked for (one chain), so
 *   the backup sees "sealed seq" before "index segment pointing into seq" (§8.6).
 * - Index segments alternate between two index buffers; a slot is rewritten only after the backup
 *   answered IndexSegmentPersisted for the segment it held.
 * - The first failure (a refused write, a Refused message, a closed connection) fails the link:
 *   every pending and later operation rejects with it. The owner reports the backup (§3.4).
 */
import { assert } from '../assert.js';
import { crc32c } from '../engine/crc.js';
import type { CompactionCommittedEvent, IndexSegmentWrittenEvent } from '../engine/hooks.js';
import { StaleEpochError, TalosError } from '../errors.js';
import { TransferredBytes } from '../fabric/transfer.js';
import type { Connection, RemoteRegion } from '../fabric/types.js';
import { defective, NO_PROBE, type Probe } from '../probe.js';
import {
  type BackupReady,
  decodeMessage,
  encodeMessage,
  type LogPositionWire,
  type ReplicationMessage,
  type ReplicationMode,
} from './messages.js';

export class BackupRefusedError extends TalosError {
  constructor(
    readonly backupNodeId: string,
    code: string,
    reason: string,
  ) {
    super('BACKUP_REFUSED', `backup ${backupNodeId} refused: ${code}: ${reason}`);
  }
}

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Requests that get exactly one answer, and those answers (a Refused answers too: the link fails). */
const ANSWERED = new Set<ReplicationMessage['type']>([
  'SegmentSealed',
  'IndexSegment',
  'CompactionCommit',
  'InstallLevels',
  'Rebase',
]);
const ANSWERS = new Set<ReplicationMessage['type']>([
  'SegmentPersisted',
  'IndexSegmentPersisted',
  'CompactionCommitted',
  'LevelsInstalled',
  'Rebased',
]);

export interface BackupLinkOptions {
  regionId: string;
  epoch: number;
  primaryNodeId: string;
  segmentBytes: number;
  logBufferCount: number;
  mode: ReplicationMode;
  fromSegmentSeq: number;
  /** OpenBackup.rebaseFrom: the node whose offsets this primary can rebase a backup from ('' none). */
  rebaseFrom?: string;
  /** The simulator's trace and defects (`early-buffer-reuse`, src/probe.ts). Default none. */
  probe?: Probe;
}

export class BackupLink {
  readonly backupNodeId: string;
  private logBuffers: RemoteRegion[] = [];
  private indexBuffers: RemoteRegion[] = [];
  private failure: unknown;
  private readonly failureListeners: ((err: unknown) => void)[] = [];
  /** Issue chain: writes are issued strictly in call order (after any buffer-reuse wait). */
  private issueChain: Promise<void> = Promise.resolve();
  /** Message chain: control messages leave in call order, each after the write it depends on. */
  private messageChain: Promise<void> = Promise.resolve();
  /** Highest segment seq whose full seal the backup persisted. */
  private persistedThrough = -1;
  private readonly persistWaiters = new Map<number, Waiter[]>();
  private readonly indexSlotFree: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  private readonly indexWaiters = new Map<string, Waiter>();
  private readonly commitWaiters = new Map<number, Waiter>();
  private readonly levelsWaiters = new Map<number, Waiter>();
  private rebaseWaiter: Waiter | undefined;
  private partialWaiters: (Waiter & { seq: number; usedBytes: number })[] = [];
  /** Requests sent and not yet answered (see `drained`). */
  private unanswered = 0;
  private readonly drainWaiters: (() => void)[] = [];
  private readyWaiter: { resolve: (m: BackupReady) => void; reject: (err: unknown) => void } | undefined;
  private nextIndexSlot = 0;
  private bytesWritten = 0;
  private readonly probe: Probe;

  constructor(
    private readonly connection: Connection,
    private readonly options: BackupLinkOptions,
  ) {
    this.backupNodeId = connection.peerNodeId;
    this.probe = options.probe ?? NO_PROBE;
    connection.onMessage((bytes) => this.receive(bytes));
    connection.onClose((reason) => this.fail(reason));
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  get writtenBytes(): number {
    return this.bytesWritten;
  }

  onFailure(listener: (err: unknown) => void): void {
    if (this.failure !== undefined) listener(this.failure);
    else this.failureListeners.push(listener);
  }

  /** §2: OpenBackup → BackupReady (the buffers to write into). */
  async open(): Promise<BackupReady> {
    const o = this.options;
    const ready = new Promise<BackupReady>((resolve, reject) => {
      this.readyWaiter = { resolve, reject };
    });
    ready.catch(() => {}); // the send below may throw first; the failure then surfaces from it
    this.send({
      type: 'OpenBackup',
      regionId: o.regionId,
      epoch: o.epoch,
      primaryNodeId: o.primaryNodeId,
      segmentBytes: o.segmentBytes,
      logBufferCount: o.logBufferCount,
      mode: o.mode,
      fromSegmentSeq: o.fromSegmentSeq,
      rebaseFrom: o.rebaseFrom ?? '',
    });
    const message = await ready;
    if (
      message.logBuffers.length !== o.logBufferCount ||
      message.logBuffers.some((b) => b.bytes < o.segmentBytes)
    ) {
      throw this.fail(
        new BackupRefusedError(this.backupNodeId, 'BAD_BUFFERS', 'log buffers do not match the request'),
      );
    }
    if (o.mode === 'send-index' && message.indexBuffers.length < 2) {
      throw this.fail(
        new BackupRefusedError(this.backupNodeId, 'BAD_BUFFERS', 'two index buffers are needed'),
      );
    }
    this.logBuffers = message.logBuffers.map((h) => this.connection.remoteRegion(h));
    this.indexBuffers = message.indexBuffers.map((h) => this.connection.remoteRegion(h));
    // The backup's last persisted segment may hold only a partial seal (a tail sync); the re-sync
    // sends it again, whole. Buffer reuse counts only the segments before it as persisted, so that
    // segment P + K cannot overwrite P's buffer before the backup copied P's full seal out of it
    // (found by the simulator's buffer-reuse checker, src/sim/events.ts).
    this.persistedThrough = message.persistedThrough - 1;
    this.probe.trace?.({
      kind: 'link-open',
      primary: o.primaryNodeId,
      backup: this.backupNodeId,
      regionId: o.regionId,
      epoch: o.epoch,
    });
    return message;
  }

  /** One-sided write of log bytes at `offset` of segment `seq`; resolves when placed. */
  writeLog(seq: number, offset: number, bytes: Uint8Array): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    assert(offset + bytes.length <= this.options.segmentBytes, 'log write beyond the segment');
    const buffer = this.logBuffers[seq % this.options.logBufferCount];
    assert(buffer !== undefined, 'writeLog before the backup is open');
    const reuseOf = seq - this.options.logBufferCount;
    // Buffer reuse waits for the persist of seq − K (skipped only by a simulator-only defect).
    const issued = this.issueChain.then(() =>
      defective(this.probe, 'early-buffer-reuse') ? undefined : this.persisted(reuseOf),
    );
    this.issueChain = issued.catch(() => {});
    const done = issued.then(() => {
      this.bytesWritten += bytes.length;
      this.probe.trace?.({
        kind: 'log-write',
        primary: this.options.primaryNodeId,
        backup: this.backupNodeId,
        regionId: this.options.regionId,
        epoch: this.options.epoch,
        seq,
        buffer: seq % this.options.logBufferCount,
      });
      return this.connection.write(buffer, offset, bytes);
    });
    done.catch((err: unknown) => this.fail(err));
    return done;
  }

  /** §4.1: SegmentSealed after `written` (the write that completed the segment's bytes). */
  sealed(
    event: { seq: number; segmentOffset: number; usedBytes: number; crc32c: number; partial: boolean },
    written: Promise<void>,
  ): void {
    this.sendAfter(written, {
      type: 'SegmentSealed',
      regionId: this.options.regionId,
      epoch: this.options.epoch,
      seq: event.seq,
      primarySegment: event.segmentOffset,
      usedBytes: event.usedBytes,
      crc32c: event.crc32c,
      partial: event.partial,
    });
  }

  /**
   * §5.2: write an index segment into a free index slot, then announce it. Resolves when the
   * announcement is sent; `persisted` resolves when the backup translated and persisted it.
   */
  shipIndex(event: IndexSegmentWrittenEvent): { sent: Promise<void>; persisted: Promise<void> } {
    if (this.failure !== undefined) {
      // Either may go unobserved (a re-sync awaits only `persisted`): never an unhandled rejection.
      const failed = Promise.reject(this.failure);
      failed.catch(() => {});
      return { sent: failed, persisted: failed };
    }
    const slot = this.nextIndexSlot;
    this.nextIndexSlot = (slot + 1) % this.indexBuffers.length;
    const buffer = this.indexBuffers[slot]!;
    const key = `${event.compactionId}/${event.ordinal}`;
    const persisted = new Promise<void>((resolve, reject) => this.indexWaiters.set(key, { resolve, reject }));
    persisted.catch(() => {});
    const slotFree = this.indexSlotFree[slot]!;
    this.indexSlotFree[slot] = persisted.catch(() => {});
    const bytes = TransferredBytes.copyOf(event.bytes); // one copy; the fabric sends it by reference
    const issued = this.issueChain.then(() => slotFree);
    this.issueChain = issued.catch(() => {});
    const written = issued.then(() => {
      this.bytesWritten += bytes.length;
      return this.connection.write(buffer, 0, bytes);
    });
    written.catch((err: unknown) => this.fail(err));
    const sent = this.sendAfter(written, {
      type: 'IndexSegment',
      regionId: this.options.regionId,
      epoch: this.options.epoch,
      compactionId: event.compactionId,
      dstLevel: event.level,
      ordinal: event.ordinal,
      primarySegment: event.segmentOffset,
      usedBytes: event.usedBytes,
      crc32c: event.crc32c,
      slot,
    });
    return { sent, persisted };
  }

  /** §5.4–5.5: CompactionCommit; resolves when the backup installed it. */
  commit(event: CompactionCommittedEvent): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const installed = new Promise<void>((resolve, reject) =>
      this.commitWaiters.set(event.compactionId, { resolve, reject }),
    );
    this.sendAfter(Promise.resolve(), {
      type: 'CompactionCommit',
      regionId: this.options.regionId,
      epoch: this.options.epoch,
      compactionId: event.compactionId,
      srcLevel: event.srcLevel,
      dstLevel: event.dstLevel,
      newSegments: event.newSegments,
      removedSegments: event.removedSegments,
      trivialMove: event.trivialMove,
      replayFrom: event.replayFrom,
    });
    return installed;
  }

  /**
   * Re-sync (§7): sends sealed log segment `seq` whole — one-sided write into its buffer (after the
   * usual buffer-reuse wait), then SegmentSealed — and resolves when the backup persisted it.
   */
  resyncLogSegment(seq: number, primarySegment: number, bytes: Uint8Array): Promise<void> {
    const written = this.writeLog(seq, 0, bytes);
    this.sealed(
      { seq, segmentOffset: primarySegment, usedBytes: bytes.length, crc32c: crc32c(bytes), partial: false },
      written,
    );
    return written.then(() => this.persisted(seq));
  }

  /**
   * Re-sync (§7): the active segment's current prefix, sealed partially (as a tail sync does);
   * resolves when the backup persisted at least those bytes.
   */
  resyncActivePrefix(seq: number, primarySegment: number, bytes: Uint8Array): Promise<void> {
    const written = this.writeLog(seq, 0, bytes);
    this.sealed(
      { seq, segmentOffset: primarySegment, usedBytes: bytes.length, crc32c: crc32c(bytes), partial: true },
      written,
    );
    const persisted = new Promise<void>((resolve, reject) => {
      this.partialWaiters.push({ seq, usedBytes: bytes.length, resolve, reject });
    });
    persisted.catch(() => {}); // observed through the returned chain
    return written.then(() => persisted);
  }

  /**
   * Re-sync (§7, Send-Index): InstallLevels after every message before it (the index segments
   * shipped for it); resolves when the backup installed the levels.
   */
  installLevels(compactionId: number, levels: number[][], replayFrom: LogPositionWire): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const installed = new Promise<void>((resolve, reject) =>
      this.levelsWaiters.set(compactionId, { resolve, reject }),
    );
    this.sendAfter(Promise.resolve(), {
      type: 'InstallLevels',
      regionId: this.options.regionId,
      epoch: this.options.epoch,
      compactionId,
      levels,
      replayFrom,
    });
    return installed;
  }

  /**
   * After a rebase truncated the backup's log at `seq` (its last persisted segment, perhaps only
   * partially): buffer reuse counts the segments before it as persisted, as at open.
   */
  resetPersistedThrough(seq: number): void {
    this.persistedThrough = Math.min(this.persistedThrough, seq - 1);
  }

  /** Rebase (§7) after this node's promotion; resolves when the backup re-keyed its maps. */
  rebase(owner: string, segments: [number, number][], indexMap: [number, number][]): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const rebased = new Promise<void>((resolve, reject) => {
      this.rebaseWaiter = { resolve, reject };
    });
    this.sendAfter(Promise.resolve(), {
      type: 'Rebase',
      regionId: this.options.regionId,
      epoch: this.options.epoch,
      owner,
      newOwner: this.options.primaryNodeId,
      segments,
      indexMap,
    });
    return rebased;
  }

  /** Resolves when the backup persisted the full seal of `seq` (immediately for seq < 0). */
  persisted(seq: number): Promise<void> {
    if (seq < 0 || seq <= this.persistedThrough) return Promise.resolve();
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      const list = this.persistWaiters.get(seq) ?? [];
      list.push({ resolve, reject });
      this.persistWaiters.set(seq, list);
    });
  }

  close(): void {
    if (!this.connection.closed) {
      try {
        this.send({ type: 'CloseRegion', regionId: this.options.regionId, epoch: this.options.epoch });
      } catch {}
    }
    this.fail(new TalosError('LINK_CLOSED', `link to backup ${this.backupNodeId} closed`));
    this.connection.close();
  }

  private send(message: ReplicationMessage): void {
    this.connection.send(encodeMessage(message));
    if (ANSWERED.has(message.type)) this.unanswered++;
  }

  /**
   * Resolves once every request sent so far (seals, index segments, commits, level installs,
   * rebases — each has exactly one answer) was answered, or the link failed: a barrier for "the
   * backup has applied everything this primary sent" (LocalCluster.settle, the simulator).
   */
  drained(): Promise<void> {
    if (this.unanswered === 0 || this.failure !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private answered(): void {
    this.unanswered--;
    assert(this.unanswered >= 0, 'more answers than requests');
    if (this.unanswered === 0) for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  private sendAfter(after: Promise<void>, message: ReplicationMessage): Promise<void> {
    const sent = Promise.all([this.messageChain, after]).then(() => {
      if (this.failure !== undefined) throw this.failure;
      this.send(message);
    });
    this.messageChain = sent.catch(() => {});
    sent.catch((err: unknown) => this.fail(err));
    return sent;
  }

  private receive(bytes: Uint8Array): void {
    let message: ReplicationMessage;
    try {
      message = decodeMessage(bytes);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (message.regionId !== this.options.regionId) {
      this.fail(new BackupRefusedError(this.backupNodeId, 'WRONG_REGION', `message for ${message.regionId}`));
      return;
    }
    if (ANSWERS.has(message.type)) this.answered();
    switch (message.type) {
      case 'BackupReady':
        this.readyWaiter?.resolve(message);
        this.readyWaiter = undefined;
        return;
      case 'SegmentPersisted':
        this.partialWaiters = this.partialWaiters.filter((w) => {
          const done = message.seq > w.seq || (message.seq === w.seq && message.usedBytes >= w.usedBytes);
          if (done) w.resolve();
          return !done;
        });
        if (message.partial) return;
        assert(
          message.seq > this.persistedThrough || message.seq === this.persistedThrough,
          'persist acks in order',
        );
        this.persistedThrough = Math.max(this.persistedThrough, message.seq);
        for (const [seq, waiters] of this.persistWaiters) {
          if (seq <= this.persistedThrough) {
            this.persistWaiters.delete(seq);
            for (const w of waiters) w.resolve();
          }
        }
        return;
      case 'IndexSegmentPersisted': {
        const key = `${message.compactionId}/${message.ordinal}`;
        this.indexWaiters.get(key)?.resolve();
        this.indexWaiters.delete(key);
        return;
      }
      case 'CompactionCommitted':
        this.commitWaiters.get(message.compactionId)?.resolve();
        this.commitWaiters.delete(message.compactionId);
        return;
      case 'LevelsInstalled':
        this.levelsWaiters.get(message.compactionId)?.resolve();
        this.levelsWaiters.delete(message.compactionId);
        return;
      case 'Rebased':
        this.rebaseWaiter?.resolve();
        this.rebaseWaiter = undefined;
        return;
      case 'Refused':
        this.fail(
          message.code === 'STALE_EPOCH'
            ? new StaleEpochError(message.regionId, this.options.epoch, message.currentEpoch)
            : new BackupRefusedError(this.backupNodeId, message.code, message.reason),
        );
        return;
      default:
        this.fail(
          new BackupRefusedError(this.backupNodeId, 'UNEXPECTED', `unexpected ${message.type} from a backup`),
        );
    }
  }

  private fail(err: unknown): unknown {
    if (this.failure !== undefined) return this.failure;
    this.failure = err;
    this.readyWaiter?.reject(err);
    this.readyWaiter = undefined;
    for (const waiters of this.persistWaiters.values()) for (const w of waiters) w.reject(err);
    this.persistWaiters.clear();
    for (const w of this.indexWaiters.values()) w.reject(err);
    this.indexWaiters.clear();
    for (const w of this.commitWaiters.values()) w.reject(err);
    this.commitWaiters.clear();
    for (const w of this.levelsWaiters.values()) w.reject(err);
    this.levelsWaiters.clear();
    this.rebaseWaiter?.reject(err);
    this.rebaseWaiter = undefined;
    for (const w of this.partialWaiters.splice(0)) w.reject(err);
    for (const listener of this.failureListeners.splice(0)) listener(err);
    for (const resolve of this.drainWaiters.splice(0)) resolve();
    return err;
  }
}
