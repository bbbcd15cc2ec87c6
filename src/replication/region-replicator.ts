/**
 * The primary's data plane for one region (PROTOCOL §3–5): plain code the RegionPrimary actor
 * switches on while it is `serving` — no actor event per put.
 *
 * Put path (§3): the engine appends records and hands each group's tail to the commit gate. The
 * gate writes the bytes not yet replicated — `[replicatedOffset, usedBytes)` of the active segment —
 * to every backup's log buffer at the same offsets, and resolves when every write completed; only
 * then does the engine put the group in L0 and acknowledge it. A configuration with no backup (the
 * others failed; joiners are still catching up) has no copy in another node's memory: the gate then
 * syncs the log tail to the primary's own device instead, so an acknowledged write survives the
 * primary's kill.
 *
 * Seal (§4): the engine's `segmentSealed` hook (full or partial) runs when the seal of a full
 * segment switched to the next one (or when the tail sync before a flush completed; its prefix
 * may be shorter than what commit gates already replicated, the write then has nothing to add). The replicator writes the
 * segment's remaining bytes, then — after that write completed — sends SegmentSealed; a full seal
 * moves replication to offset 0 of the next segment.
 *
 * Index shipping (§5): compaction awaits the ship gate after each index segment; the gate writes
 * the segment into a backup index slot and announces it (slots double-buffered, see BackupLink).
 * The `compactionCommitted` hook sends CompactionCommit after every earlier message.
 *
 * Any link failure fails every later gate: the engine refuses to acknowledge (§3.4) and the
 * owner is told through `onLinkFailure` so it can report the backup.
 */

import { assert } from '../assert.js';
import type {
  CompactionCommittedEvent,
  IndexSegmentWrittenEvent,
  SegmentSealedEvent,
} from '../engine/hooks.js';
import type { CommitTail, Store } from '../engine/store.js';
import { TalosError } from '../errors.js';
import { TransferredBytes } from '../fabric/transfer.js';
import { defective, NO_PROBE, type Probe } from '../probe.js';
import type { BackupLink } from './backup-link.js';
import type { ReplicationMode } from './messages.js';

export interface RegionReplicatorOptions {
  store: Store;
  links: BackupLink[];
  mode: ReplicationMode;
  /** Sequence of the active segment when replication starts (the backups' stream starts there). */
  fromSegmentSeq: number;
  onLinkFailure?: (link: BackupLink, err: unknown) => void;
  /** The simulator's defects (`ack-before-replicate`, src/probe.ts). Default none. */
  probe?: Probe;
}

export class RegionReplicator {
  private readonly store: Store;
  private readonly links: BackupLink[];
  private replicatedSeq: number;
  private replicatedOffset = 0;
  /** Completion of the latest write issued (to every backup). */
  private lastWrite: Promise<void> = Promise.resolve();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly commits: Promise<void>[] = [];
  private stopped = false;
  private readonly probe: Probe;

  constructor(private readonly options: RegionReplicatorOptions) {
    this.probe = options.probe ?? NO_PROBE;
    this.store = options.store;
    this.links = options.links;
    this.replicatedSeq = options.fromSegmentSeq;
    for (const link of this.links) link.onFailure((err) => options.onLinkFailure?.(link, err));
  }

  /** Installs the gates and hooks on the store: from now on writes are acknowledged only once replicated. */
  start(): void {
    assert(!this.stopped, 'a replicator starts once');
    const store = this.store;
    store.setCommitGate((tail) => this.commitGate(tail));
    this.unsubscribe.push(store.hooks.on('segmentSealed', (e) => this.onSealed(e)));
    if (this.options.mode === 'send-index') {
      store.setShipGate((e) => this.shipGate(e));
      this.unsubscribe.push(store.hooks.on('compactionCommitted', (e) => this.onCommitted(e)));
    }
  }

  /**
   * Stops replicating: hooks off, the ship gate removed — and the commit gate left in place,
   * refusing. A write the session admitted before it stopped may reach its commit only now (it
   * waited for room: a seal, a flush); with no gate the engine would put it in L0 and acknowledge
   * it unreplicated, and the next primary would not have it (simulator, overlapping seed
   * 923763848: an acknowledged put lost after the same primary re-opened at the next epoch and
   * then died). Refused, it is an unknown outcome. The next replicator on this store installs its
   * own gates; this one never removes a gate, so it cannot unset a successor's either. Its ship
   * gate stays too, letting compaction go on unshipped (the next session's re-sync ships the
   * levels by compaction id).
   */
  stop(): void {
    this.stopped = true;
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** Resolves when every compaction commit sent so far was installed by every backup. */
  async commitsInstalled(): Promise<void> {
    await Promise.all(this.commits.splice(0));
  }

  private commitGate(tail: CommitTail): Promise<void> {
    if (this.stopped) {
      return Promise.reject(
        new TalosError(
          'REPLICATION_STOPPED',
          'the primary session stopped replicating before this write committed',
        ),
      );
    }
    // Alone (the configuration names no backup): this node's memory would be the only copy, and a
    // kill would take acknowledged writes with it. Its device holds them before they are
    // acknowledged instead (§3.3; found with two backups cut off, then the primary killed).
    if (this.links.length === 0) return this.store.sync();
    this.replicate(tail.seq, tail.usedBytes, tail.bytes);
    if (defective(this.probe, 'ack-before-replicate')) return Promise.resolve(); // simulator-only defect
    return this.lastWrite;
  }

  /** Writes `[replicatedOffset, usedBytes)` of segment `seq` to every backup. */
  private replicate(seq: number, usedBytes: number, bytes: Uint8Array): void {
    assert(seq === this.replicatedSeq, () => `replication of segment ${seq} while at ${this.replicatedSeq}`);
    assert(usedBytes >= this.replicatedOffset, 'the log only grows');
    if (usedBytes === this.replicatedOffset) return;
    // One copy per group, however many backups: every link posts the same transferred bytes.
    const chunk = TransferredBytes.copyOf(bytes.subarray(this.replicatedOffset, usedBytes));
    const offset = this.replicatedOffset;
    const writes = this.links.map((link) => link.writeLog(seq, offset, chunk));
    this.lastWrite = Promise.all([this.lastWrite, ...writes]).then(() => {});
    this.lastWrite.catch(() => {});
    this.replicatedOffset = usedBytes;
  }

  private onSealed(event: SegmentSealedEvent): void {
    if (this.stopped) return;
    // A partial seal's prefix was captured when its tail sync started; gates may have gone further.
    if (!(event.partial && event.seq === this.replicatedSeq && event.usedBytes < this.replicatedOffset)) {
      this.replicate(event.seq, event.usedBytes, event.bytes);
    }
    const written = this.lastWrite;
    for (const link of this.links) link.sealed(event, written);
    if (!event.partial) {
      this.replicatedSeq = event.seq + 1;
      this.replicatedOffset = 0;
    }
  }

  private async shipGate(event: IndexSegmentWrittenEvent): Promise<void> {
    if (this.stopped) return;
    await Promise.all(this.links.map((link) => link.shipIndex(event).sent));
  }

  private onCommitted(event: CompactionCommittedEvent): void {
    if (this.stopped) return;
    const installed = Promise.all(this.links.map((link) => link.commit(event))).then(() => {});
    installed.catch(() => {});
    this.commits.push(installed);
  }
}
